"""TrainConfig: everything a run needs (model, losses, optimiser, stages, densification, data), saved as
RUN/config.json next to every checkpoint. Two presets: `cpu_config()` (small, CI-sized) and
`gpu_config()` (512 px, ~10 min on one H100)."""
from __future__ import annotations

from dataclasses import dataclass, field

from emogs.model.config import ModelConfig


@dataclass
class LossConfig:
    l1: float = 1.0
    dssim: float = 0.2
    lpips: float = 0.05  # perceptual (emogs.eval.lpips, AlexNet); fine stage only
    lpips_net: str = "alex"
    lip: float = 0.5  # L1 on the mouth-zone crop (coarse stage); fine stage uses lip * fine_lip_boost
    fine_lip_boost: float = 2.0
    alpha: float = 0.1  # rendered alpha vs the soft head mask (clean silhouette, no seam at the neck)
    raar: float = 0.01  # region-aware attention regularisation; 0 in variants without SZ-PAB (variant_losses)
    raar_margin: float = 0.2
    mouth_depth: float = 0.1  # fine stage: mouth-interior Gaussians stay behind the lip surface
    offset_reg: float = 0.001  # small L2 on position offsets (keeps the canonical head meaningful)
    # expert losses (emogs.train.experts): the frozen lip-sync expert and AUNet of emogs.experts judge renders.
    # Off by default, by measurement (docs/training.md, session 5: at equal GPU time they cost 0.5-0.9 dB of
    # face PSNR and raised no independent mouth measure); the paper's objective is sync 0.1, au 0.05.
    sync: float = 0.0  # L_sync: 1 - cos(expert video embedding of 5 rendered mouths, its Whisper audio window)
    sync_every: int = 4  # a sync step every `sync_every` iterations: its batch is sync_windows x 5 consecutive frames
    sync_windows: int = 1  # 5-frame windows per sync step
    sync_start: int = -1  # first iteration with sync steps; -1: the fine stage's start (a face to judge)
    sync_mode: str = "cosine"  # cosine: mean(1 - cos) | bce: mean(-log((1 + cos) / 2))
    au: float = 0.0  # L_AU: mean |AUNet(face crop of the render) - the frame's tracked AUs| (tracks.npz aus)
    au_start: int = -1  # first iteration with L_AU; -1: the fine stage's start
    # Whether the expert losses may change the head's appearance. False (default): on the steps that carry
    # them the rendered colours and opacities are detached, so L_sync / L_AU move geometry and motion only,
    # and L_AU rides the sync steps (or, with L_sync off, every `sync_every`-th step). True: the first GPU
    # runs; there the experts painted purple blotches on the cheeks and jaw (docs/training.md, session 5).
    expert_appearance: bool = False


@dataclass
class OptimConfig:
    lr_net: float = 1e-4  # -> lr_net_final, exponential
    lr_net_final: float = 1e-5
    lr_encoding: float = 1e-3  # tri-plane features -> lr_encoding_final
    lr_encoding_final: float = 1e-4
    lr_means: float = 1.6e-4  # x scene extent -> lr_means_final x extent
    lr_means_final: float = 1.6e-6
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 5e-2
    lr_colors: float = 2.5e-3


@dataclass
class DensifyConfig:
    start: int = 1000
    stop: int = 7000
    every: int = 100
    grad_threshold: float = 2e-4  # mean view-space (NDC) positional gradient
    percent_dense: float = 0.01  # clone if max scale <= percent_dense * extent, else split
    min_opacity: float = 0.005
    max_scale: float = 0.1  # prune if max scale > max_scale * extent
    max_gaussians: int = 200_000
    max_grow: float = 0.05  # at most this fraction of N added per densification step (strongest grads)
    # > 0: Gaussians whose mean screen radius (largest scale axis, px at the training resolution, over the views that
    # saw them) exceeds this are split candidates whatever their gradient (fine detail: skin, irises; session 7
    # measured the face painted by 1.8 px-sigma blobs). 0 = off
    max_screen_px: float = 0.0
    # > 0: once N is within max_grow of the cap, Gaussians below this opacity are pruned and their room goes to the
    # candidates of the same step (without it a head at the cap stops densifying). 0 = off
    cap_prune_opacity: float = 0.0
    # mesh heads (issue 13): at initialisation and after every densification step, Gaussians bound to an eyeball
    # triangle that lie within this many cm of an eyelid triangle, or outside the eyeball, are re-bound to the
    # nearest eyelid triangle (render unchanged at the default face), so the lash line follows the lids.
    # 0 = off (runs from before it: emogs.run.migrate)
    eyelid_margin: float = 0.15


@dataclass
class SpeechConfig:
    """The speech -> mesh-motion prior (emogs.model.speech_motion) fine-tuned at the end of a mesh run on its
    training split (emogs.train.speech); free heads ignore it."""
    enabled: bool = True
    fine_tune_steps: int = 200  # Adam steps on the training split minus its tail, at most ...
    max_epochs: float = 60.0  # ... this many passes over those frames (short clips take fewer steps; 0 = no cap)
    lr: float = 3e-4
    batch: int = 32  # sequences per step
    seq: int = 8  # consecutive frames per sequence (the velocity loss needs more than one)
    tail: float = 0.2  # last share of the training split held out to decide whether fine-tuning helps
    anchor: float = 1e-3  # L2 pull toward the pretrained weights
    eval_every: int = 25  # steps between checks on the tail (the best state is kept)
    match_spread: bool = True  # rescale each coefficient's output so its spread on the tail matches the fit's


@dataclass
class PoseRefineConfig:
    """Per-frame rigid head-pose refinement of the training frames (emogs.train.refine): a learnable SE(3)
    delta per training frame (rotation vector in rad about the head's centre, translation in world units, cm),
    zero at the start, applied to the head pose the frame is rendered with (world_to_cam @ delta), as 3DGS
    trainers refine camera poses. Test frames and new audio keep the tracked pose. Off by default."""
    enabled: bool = False
    start: int = -1  # first iteration with refinement; -1: densify.start (after the coarse warm-up); scaled with iters
    lr_rotation: float = 1e-4  # Adam, rad
    lr_translation: float = 1e-3  # Adam, world units (cm)
    reg_rotation: float = 1.0  # L2: weight of |rotation vector|^2 (rad^2), mean over the batch's frames
    reg_translation: float = 0.1  # L2: weight of |translation|^2 (cm^2)


@dataclass
class AppearanceConfig:
    """A per-frame appearance code of the training frames (emogs.train.refine): a latent of `dim` per frame,
    decoded linearly (no bias) to a colour affine of the head (3x3 + offset, applied to every Gaussian's
    colour, i.e. to the premultiplied head render), zero at the start; code 0 is the identity, and test frames
    and new audio render with code 0 (the model without it). For lighting/exposure drift. Off by default."""
    enabled: bool = False
    dim: int = 8
    start: int = 0  # first iteration with codes; scaled with iters
    lr: float = 1e-3  # Adam, the codes
    lr_decoder: float = 1e-3  # Adam, the code -> affine map
    decoder_init: float = 0.1  # std of the decoder's initial weights (codes start at 0; the decoder must not)
    reg: float = 1e-2  # L2: weight of |code|^2, mean over the batch's frames


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    pose_refine: PoseRefineConfig = field(default_factory=PoseRefineConfig)
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    iters: int = 10_000
    fine_start: int = 6000  # iteration at which the "fine" stage (lips, LPIPS, depth) begins
    batch_size: int = 1
    resolution: int = 512  # training/render size (images and K downscaled from the dataset size)
    device: str = "auto"  # auto | cpu | cuda
    backend: str = "auto"  # rasteriser backend: auto | gsplat | torch
    seed: int = 0
    log_every: int = 50
    preview_every: int = 1000
    checkpoint_every: int = 1000
    num_init_views: int = 4  # frames back-projected for the hair/neck shell
    num_vote_views: int = 40  # frames whose label maps vote the zones
    neck_soft_px: float = 6.0  # blur (at 512 px) of the head-mask target near the neck/torso
    # >= 0: the head ends this many face heights below the jaw line, the lower neck is the frame's (torso) and the
    # run's plate gets the frames' neck there (emogs.train.data.trim_neck / neck_plate; docs/training.md session 7);
    # < 0: the dataset's labels (neck down to 0.3 face heights below the chin, into the collar)
    neck_keep: float = 0.15
    eval_lpips: bool = True
    time_budget_s: float = 0.0  # >0: after `calib_iters`, shrink `iters` (schedule rescaled) to fit this wall time
    calib_iters: int = 300

    def scaled(self, iters: int) -> "TrainConfig":
        """Copy with `iters` total and the stage/densification/log schedule scaled proportionally."""
        from emogs.config import override

        f = iters / self.iters
        d = self.densify
        return override(self, {
            "iters": iters, "fine_start": int(round(self.fine_start * f)),
            "densify": dict(start=int(round(d.start * f)), stop=int(round(d.stop * f)),
                            every=max(1, int(round(d.every * f)))),
            "preview_every": max(1, int(round(self.preview_every * f))),
            "loss": {k: int(round(getattr(self.loss, k) * f)) for k in ("sync_start", "au_start")
                     if getattr(self.loss, k) >= 0},
            **{f"{k}.start": int(round(getattr(self, k).start * f)) for k in ("pose_refine", "appearance")
               if getattr(self, k).start >= 0},
            "checkpoint_every": max(1, int(round(self.checkpoint_every * f)))})


def gpu_config() -> TrainConfig:
    """One H100, 512 px, ~10 k iterations in a few minutes."""
    return TrainConfig(model=ModelConfig(num_face=30000, num_shell=20000, num_mouth=3000),
                       iters=10_000, fine_start=6000, resolution=512, batch_size=1, log_every=200,
                       densify=DensifyConfig(max_gaussians=150_000))


def cpu_config() -> TrainConfig:
    """Small enough for CI on 2 cores: 128 px, ~11 k Gaussians, 600 iterations."""
    return TrainConfig(
        model=ModelConfig(num_face=6000, num_shell=4000, num_mouth=600, token_dim=32, hidden=64,
                          triplane_channels=8, triplane_res=32, citae_hidden=16),
        iters=600, fine_start=400, resolution=128, log_every=25, preview_every=200, checkpoint_every=200,
        num_vote_views=20,
        densify=DensifyConfig(start=100, stop=450, every=50, max_gaussians=20_000),
        loss=LossConfig(lpips=0.0, sync=0.0, au=0.0), eval_lpips=True)


# loss settings that go with each ablation variant (the paper's RAAR regularises SZ-PAB's attention);
# the paper's full model adds L_sync and L_AU: PAPER_LOSSES on top of "full" (issue 14: (A)-(D), then full with both)
PAPER_LOSSES = {"loss.sync": 0.1, "loss.au": 0.05}
_NO_EXPERTS = {"sync": 0.0, "au": 0.0}
VARIANT_LOSSES: dict[str, dict] = {"audio": {"raar": 0.0, **_NO_EXPERTS}, "au": {"raar": 0.0, **_NO_EXPERTS},
                                   "au_citae": {"raar": 0.0, **_NO_EXPERTS}, "au_szpab": dict(_NO_EXPERTS),
                                   "full": {}}


def build_config(device: str = "auto", iters: int | None = None, variant: str | None = None,
                 overrides: dict | None = None) -> TrainConfig:
    """The preset for the device (CUDA: `gpu_config`, else `cpu_config`), then the variant (with its loss
    settings), then the overrides (nested or dotted keys, `emogs.config.override`), then `iters` (which
    rescales the stage/densification schedule). ValueError for unknown keys, bad types or values."""
    import torch

    from emogs import config as cfgio

    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    cfg = cfgio.override(gpu_config() if cuda else cpu_config(), device=device)
    v = variant or (cfgio.override(cfg, overrides).model.variant if overrides else cfg.model.variant)
    if v not in VARIANT_LOSSES:
        raise ValueError(f"unknown variant '{v}' (choose from {', '.join(VARIANT_LOSSES)})")
    cfg = cfgio.override(cfg, {"model.variant": v, "loss": VARIANT_LOSSES[v]})
    if overrides:  # explicit settings win over the variant's loss defaults ...
        cfg = cfgio.override(cfg, overrides)
    if variant is not None:  # ... and --variant over a variant in the overrides
        cfg = cfgio.override(cfg, {"model.variant": variant})
    validate(cfg)
    if iters is not None and iters != cfg.iters:
        if iters < 1:
            raise ValueError(f"--iters must be at least 1, got {iters}")
        cfg = cfg.scaled(iters)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """ValueError naming the first setting out of its range."""
    cfg.model.flags()  # the variant
    m, d = cfg.model, cfg.densify
    checks = [("iters", cfg.iters, cfg.iters >= 1), ("resolution", cfg.resolution, 16 <= cfg.resolution <= 4096),
              ("batch_size", cfg.batch_size, cfg.batch_size >= 1), ("fine_start", cfg.fine_start, cfg.fine_start >= 0),
              ("device", cfg.device, cfg.device in ("auto", "cpu", "cuda")),
              ("backend", cfg.backend, cfg.backend in ("auto", "gsplat", "torch")),
              ("time_budget_s", cfg.time_budget_s, cfg.time_budget_s >= 0),
              ("log_every", cfg.log_every, cfg.log_every >= 1),
              ("preview_every", cfg.preview_every, cfg.preview_every >= 1),
              ("checkpoint_every", cfg.checkpoint_every, cfg.checkpoint_every >= 1),
              ("num_init_views", cfg.num_init_views, cfg.num_init_views >= 1),
              ("num_vote_views", cfg.num_vote_views, cfg.num_vote_views >= 1),
              ("neck_keep", cfg.neck_keep, cfg.neck_keep <= 2),
              ("densify.every", d.every, d.every >= 1), ("densify.max_gaussians", d.max_gaussians, d.max_gaussians >= 1),
              ("densify.eyelid_margin", d.eyelid_margin, d.eyelid_margin >= 0),
              ("densify.max_screen_px", d.max_screen_px, d.max_screen_px >= 0),
              ("densify.cap_prune_opacity", d.cap_prune_opacity, 0 <= d.cap_prune_opacity < 1),
              ("model.eyeball_init", m.eyeball_init, m.eyeball_init in ("sphere", "front")),
              ("model.num_face", m.num_face, m.num_face >= 1), ("model.num_shell", m.num_shell, m.num_shell >= 0),
              ("model.num_mouth", m.num_mouth, m.num_mouth >= 0), ("model.heads", m.heads, m.heads >= 1),
              ("model.token_dim", m.token_dim, m.token_dim >= 1 and m.token_dim % max(m.heads, 1) == 0),
              ("model.audio_feature", m.audio_feature, m.audio_feature in ("mel", "whisper")),
              ("loss.sync", cfg.loss.sync, cfg.loss.sync >= 0), ("loss.au", cfg.loss.au, cfg.loss.au >= 0),
              ("loss.sync_every", cfg.loss.sync_every, cfg.loss.sync_every >= 1),
              ("loss.sync_windows", cfg.loss.sync_windows, cfg.loss.sync_windows >= 1),
              ("loss.sync_start", cfg.loss.sync_start, cfg.loss.sync_start >= -1),
              ("loss.au_start", cfg.loss.au_start, cfg.loss.au_start >= -1),
              ("loss.sync_mode", cfg.loss.sync_mode, cfg.loss.sync_mode in ("cosine", "bce")),
              ("speech.fine_tune_steps", cfg.speech.fine_tune_steps, cfg.speech.fine_tune_steps >= 0),
              ("speech.lr", cfg.speech.lr, cfg.speech.lr > 0), ("speech.batch", cfg.speech.batch, cfg.speech.batch >= 1),
              ("speech.seq", cfg.speech.seq, cfg.speech.seq >= 2),
              ("speech.tail", cfg.speech.tail, 0.05 <= cfg.speech.tail <= 0.5),
              ("speech.anchor", cfg.speech.anchor, cfg.speech.anchor >= 0),
              ("speech.max_epochs", cfg.speech.max_epochs, cfg.speech.max_epochs >= 0),
              ("speech.eval_every", cfg.speech.eval_every, cfg.speech.eval_every >= 1)]
    pr, ap = cfg.pose_refine, cfg.appearance
    checks += [("pose_refine.start", pr.start, pr.start >= -1),
               ("pose_refine.lr_rotation", pr.lr_rotation, pr.lr_rotation >= 0),
               ("pose_refine.lr_translation", pr.lr_translation, pr.lr_translation >= 0),
               ("pose_refine.reg_rotation", pr.reg_rotation, pr.reg_rotation >= 0),
               ("pose_refine.reg_translation", pr.reg_translation, pr.reg_translation >= 0),
               ("appearance.dim", ap.dim, 1 <= ap.dim <= 256), ("appearance.start", ap.start, ap.start >= 0),
               ("appearance.lr", ap.lr, ap.lr >= 0), ("appearance.lr_decoder", ap.lr_decoder, ap.lr_decoder >= 0),
               ("appearance.decoder_init", ap.decoder_init, ap.decoder_init > 0), ("appearance.reg", ap.reg, ap.reg >= 0)]
    for name, value, ok in checks:
        if not ok:
            raise ValueError(f"{name} = {value!r} is out of range")


def config_from_run(d: dict) -> TrainConfig:
    """A run's (migrated, `emogs.run.RunFolder.config_dict`) config dict -> TrainConfig."""
    from emogs import config as cfgio

    return cfgio.from_dict(TrainConfig, d)
