"""`Avatar`: drive a trained head with any speech and explicit AU / emotion / pose controls.

    from emogs import Avatar
    av = Avatar.load("runs/macron")
    av.render("speech.wav", "out.mp4", au={"AU01": (1.0, 2.0, 4.0)}, emotion="happy:0.7")
    frames = av.render("speech.wav")          # (F, H, W, 3) uint8, F = audio length at 25 fps

Pipeline per chunk of frames: audio features (the run's kind: log-mel or Whisper) -> feature windows,
AU windows from the ControlPlan -> deformation -> rasterisation -> compositing on the run's plate.
Frames are produced chunk by chunk and streamed to the encoder, so memory stays bounded for long audio.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from emogs.constants import FPS, SAMPLE_RATE
from emogs.errors import InputError

SILENCE_PEAK = 1e-3  # peak |amplitude| below which the audio counts as silent (-60 dBFS)
CLAMP_MARGIN = 0.1  # requested AUs may exceed the training range by this much


def clamp_to_range(au: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float = CLAMP_MARGIN) -> np.ndarray:
    """(F, 17) AUs clipped to [lo - margin, hi + margin] per AU (and to [0, 1])."""
    return np.clip(au, np.clip(lo - margin, 0, 1), np.clip(hi + margin, 0, 1))


RESIDUAL_BEYOND = ("fade", "hold")
AU_DRIVES = ("auto", "table", "person")
# EmoTaG (kind "emotag") heads: how emotion / upper-face AU requests reach the mesh. "both": the AU -> ICT table
# and the motion network's gated residual branch (its change under the requested emotion and upper-face AUs,
# EmoTagHead.residual_motion); "table": the table only (as the mesh head); "branch": the branch only for the
# upper face (the table keeps the lower-face AUs)
UPPER_DRIVES = ("both", "table", "branch")


def residual_aus(au: np.ndarray, lo: np.ndarray, hi: np.ndarray, default: np.ndarray, mode: str = "hold",
                 fade: float = 0.3, margin: float = CLAMP_MARGIN) -> np.ndarray:
    """(F, 17) requested AUs -> what a head's learned part (AU tokens, AU basis) receives. "hold": clipped to the
    training range [lo - margin, hi + margin] (`clamp_to_range`). "fade" (mesh-rigged heads, whose mesh takes the
    request as asked): inside that range the same; beyond its edge the value goes linearly from the edge back to
    the `default` (17,) (the training mean, clipped to the range) over `fade` of further request, so that far
    beyond the clip the learned residual shows nothing of the AU and the mesh alone moves the face."""
    if mode not in RESIDUAL_BEYOND:
        raise ValueError(f"unknown residual_beyond '{mode}' (choose from {', '.join(RESIDUAL_BEYOND)})")
    c = clamp_to_range(au, lo, hi, margin)
    if mode == "hold":
        return c
    if not fade > 0:
        raise ValueError(f"residual_fade must be positive, got {fade}")
    lo_e, hi_e = np.clip(lo - margin, 0, 1), np.clip(hi + margin, 0, 1)
    over = np.maximum(np.maximum(au - hi_e, lo_e - au), 0.0)
    w = np.clip(1.0 - over / fade, 0.0, 1.0)
    d = np.clip(np.asarray(default, np.float32), lo_e, hi_e)
    return (d + (c - d) * w).astype(np.float32)


def speech_driven_aus(plan, rows: np.ndarray, rows_per_frame: int, speech, half: int) -> np.ndarray:
    """(F, 17) the plan's AUs plus the speech AUs' predicted deviation (from the audio feature rows) where the
    user did not set them; the plan's AUs when `speech` (emogs.model.speech_aus.SpeechAUs) is None."""
    au = plan.au.astype(np.float32)
    if speech is None:
        return au
    from emogs.data.windows import feature_windows

    dev = speech.deviation(lambda ids: feature_windows(rows, rows_per_frame, ids, half), plan.num_frames)
    return speech.add_deviation(au, plan.mask, dev)


def settings_kind(run) -> str:
    return getattr(run.model_config(), "kind", "free")


@dataclass(frozen=True)
class RenderSettings:
    resolution: int  # the run's training resolution (K is in its pixels)
    backend: str  # rasteriser: auto | gsplat | torch


# Files of RUN/ that rendering reads: an output path may not be one of them.
RUN_INPUT_FILES = ("run.json", "config.json", "model.safetensors", "dataset.json", "background.png", "train_cameras.npz",
                   "speech_aus.safetensors", "speech_motion.safetensors", "au_drive.json")


def check_speech(wav: np.ndarray, allow_silent: bool = False) -> None:
    """InputError for audio that cannot drive a render: not mono, shorter than a frame, silent."""
    if wav.ndim != 1:
        raise InputError("audio samples must be mono (1-D) at 16 kHz")
    if len(wav) < SAMPLE_RATE // 25:
        raise InputError("the audio is shorter than one frame (40 ms)")
    peak = float(np.abs(wav).max())
    if peak < SILENCE_PEAK and not allow_silent:
        raise InputError(f"the audio is silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS); "
                         "pass allow_silent=True / --allow-silent to render an idle head")


def check_render_output(out: str | Path, run_dir: str | Path, inputs: list = (), overwrite: bool = True) -> Path:
    """Check the output MP4 before any work: not a folder, not an input (the speech, control files, the
    run's own files), writable; an existing file only with `overwrite` (the CLI's --force)."""
    from emogs.io.paths import output_file

    run_inputs = [Path(run_dir) / f for f in RUN_INPUT_FILES]
    return output_file(out, inputs=[*(i for i in inputs if isinstance(i, (str, Path))), *run_inputs],
                       force=overwrite, what="output video")


@dataclass
class RenderResult:
    frames: int
    seconds: float  # wall time
    path: Path | None
    plan_summary: str
    au_requested: np.ndarray  # (F, 17)


class Avatar:
    """A trained run, ready to render."""

    def __init__(self, run_dir: Path, cfg: RenderSettings, model: Any, info: dict, background: np.ndarray,
                 train_w2c: np.ndarray, device: torch.device, size: int | None = None,
                 inference: str = "auto", speech: Any = None, drive: dict | None = None,
                 upper_drive: str = "both") -> None:
        import cv2

        from emogs.model.infer import PipelinedRenderer

        self.run_dir, self.cfg, self.model, self.info = run_dir, cfg, model, info
        self.train_w2c = train_w2c  # (N, 4, 4) training cameras
        self.device = device
        self.size = int(size or cfg.resolution)  # output frames are size x size
        s = self.size / int(cfg.resolution)
        self.K = np.asarray(info["K"], np.float32).copy()  # (3, 3) at the training resolution ...
        self.K[:2] *= s  # ... scaled to the output size
        self.background = cv2.resize(background, (self.size, self.size), interpolation=cv2.INTER_AREA)  # (S, S, 3)
        self.renderer = PipelinedRenderer(model, inference)  # CUDA-graph replay of the deformation on CUDA
        self.speech = speech  # emogs.model.speech_aus.SpeechAUs: lower-face AUs from the audio (or None)
        self.motion = None  # mesh runs: (SpeechMotion, person mean, scale): the mouth's mesh motion from the audio
        # mesh runs: the person-calibrated AU drive (RUN/au_drive.json, emogs.mesh.drive_calibration) or None (the
        # AU table's gains)
        self.drive = drive
        if upper_drive not in UPPER_DRIVES:
            raise InputError(f"unknown --upper-drive '{upper_drive}'; choose from {', '.join(UPPER_DRIVES)}")
        self.upper_drive = upper_drive  # emotag heads only (UPPER_DRIVES)

    # -- loading -----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", size: int | None = None,
             inference: str = "auto", threads: int | None = None, au_drive: str = "auto",
             upper_drive: str = "both") -> "Avatar":
        """Load a trained RUN (through `emogs.run`). `size`: output resolution (default: the training
        resolution; other sizes rescale the camera intrinsics). `inference`: eager | graph | graph-bf16 | auto
        (graph on CUDA, eager on CPU; emogs.model.infer). `threads`: CPU threads for PyTorch; None picks them
        for the machine's current load (emogs.runtime.configure_threads; EMOGS_THREADS / OMP_NUM_THREADS
        override). `au_drive` (mesh runs): "auto" = the run's
        person-calibrated drive gains (RUN/au_drive.json, `emogs calibrate-drive`) when it has them, else the AU
        table's; "table" = always the table's; "person" = the run's (an InputError when it has none).
        `upper_drive` (EmoTaG heads): both | table | branch, how emotion and upper-face AU requests reach the
        mesh (UPPER_DRIVES)."""
        import cv2

        from emogs.run import open_run
        from emogs.runtime import resolve_device

        from emogs.runtime import apply_threads, configure_threads

        if threads is None:
            configure_threads()  # threads that do not oversubscribe a busy machine
        elif threads < 1:
            raise InputError(f"threads must be at least 1, got {threads}")
        else:
            apply_threads(int(threads))
        if Path(run_dir).is_file():
            raise InputError(f"{run_dir}: is a file; give the run folder made by `emogs train`")
        if size is not None and not 16 <= size <= 4096:
            raise InputError(f"render size {size} out of range (16-4096)")
        run = open_run(run_dir)
        if not run.has_model():
            raise InputError(f"{run.path}: no model.safetensors (training not finished? run `emogs train` again)")
        settings = RenderSettings(**run.render_settings())
        info = run.dataset_info()
        w2c = run.train_cameras()
        speech = run.speech_aus()
        motion = run.speech_motion() if settings_kind(run) == "mesh" else None
        bg = run.background()
        dev = resolve_device(device)
        _, model = run.load_model(dev, checkpoint_ok=False)
        S = settings.resolution
        bg = cv2.resize(bg, (S, S), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        if au_drive not in AU_DRIVES:
            raise InputError(f"unknown --au-drive '{au_drive}'; choose from {', '.join(AU_DRIVES)}")
        drive = run.au_drive() if au_drive != "table" and settings_kind(run) in ("mesh", "emotag") else None
        if au_drive == "person" and drive is None:
            raise InputError(f"{run.path}: no person-calibrated AU drive (au_drive.json); make it with "
                             "`emogs calibrate-drive RUN`, or use --au-drive table")
        av = cls(run.path, settings, model, info, bg, w2c, dev, size, inference, speech, drive, upper_drive)
        av.motion = motion
        return av

    @property
    def default_au(self) -> np.ndarray:
        """(17,) the model's default expression: mean AUs of the training frames."""
        return np.asarray(self.info["au_mean"], np.float32)

    # -- rendering ---------------------------------------------------------------------------------------
    def plan(self, num_frames: int, **controls: Any):
        """ControlPlan for `num_frames` (see emogs.control.build_plan for the keywords)."""
        from emogs.control.plan import build_plan

        controls.setdefault("default_au", self.default_au)
        return build_plan(num_frames, FPS, **controls)

    def training_range(self) -> tuple[np.ndarray, np.ndarray]:
        """(17,), (17,): the lowest and highest value of each AU in the training frames."""
        return np.asarray(self.info["au_min"], np.float32), np.asarray(self.info["au_max"], np.float32)

    @property
    def is_mesh(self) -> bool:
        """A mesh-rigged head (emogs.model.mesh_head, or the few-shot emogs.model.emotag): expressions act on its
        ICT-FaceKit mesh."""
        return getattr(self.model.cfg, "kind", "free") in ("mesh", "emotag")

    def speech_expression(self, wav: np.ndarray, num_frames: int, rows: np.ndarray | None = None) -> np.ndarray | None:
        """(F, E) the default face per frame of a mesh-rigged head with a speech-motion model: the training
        clip's mean expression with the mouth's speech coefficients (the person's mean + the deviation the
        run's fine-tuned emogs.model.speech_motion prior predicts from the 16 kHz audio `wav`); None otherwise.
        The prior reads its own feature kind (Whisper-base rows); `rows`, the head's feature rows of `wav`,
        are reused when the head reads the same kind, else the prior's rows are computed here."""
        if getattr(self.model.cfg, "kind", "free") == "emotag":
            if rows is None:
                from emogs.audio import feature_rows

                rows, _ = feature_rows(np.asarray(wav, np.float32), self.model.cfg.audio_feature)
            return self._emotag_speech_expression(rows, num_frames)
        if not self.is_mesh or self.motion is None:
            return None
        from emogs.audio import feature_rows
        from emogs.model.speech_motion import expand, predict_rows

        module, mean, scale = self.motion
        wav = np.asarray(wav, np.float32)
        if not len(wav) or float(np.abs(wav).max()) < 1e-4:
            return None  # silence: the mouth rests at the person's mean (the studio's idle clip)
        if rows is None or module.cfg.feature != self.model.cfg.audio_feature:
            try:
                rows, _ = feature_rows(wav, module.cfg.feature)
            except (ImportError, InputError) as e:  # no faster-whisper or its model on this machine
                if not getattr(self, "_warned_no_prior_rows", False):
                    print(f"warning: the speech-motion prior needs {module.cfg.feature} features, which cannot be "
                          f"computed here ({e}); the mouth follows the speech AUs instead", file=sys.stderr)
                    self._warned_no_prior_rows = True
                return None
        base = self.model.expr_mean.detach().cpu().numpy()
        return expand(predict_rows(module, rows, num_frames, mean, scale), base, self.info["expression_names"],
                      module.cfg.coeffs)

    @torch.no_grad()
    def _emotag_speech_expression(self, rows: np.ndarray, num_frames: int, chunk: int = 256) -> np.ndarray:
        """(F, E) an EmoTaG head's audio-driven default face: its motion network's base branch
        (emogs.model.emotag.EmoTagHead.speech_expression) on each frame's audio window."""
        from emogs.data.windows import feature_windows

        rpf = max(1, int(round(len(rows) / max(num_frames, 1))))
        out = []
        for a in range(0, num_frames, chunk):
            w = feature_windows(rows, rpf, np.arange(a, min(num_frames, a + chunk)), self.model.cfg.audio_window)
            out.append(self.model.speech_expression(torch.as_tensor(np.asarray(w, np.float32), device=self.device)).cpu())
        return np.clip(torch.cat(out).numpy(), 0.0, 1.0).astype(np.float32)

    @property
    def is_emotag(self) -> bool:
        return getattr(self.model.cfg, "kind", "free") == "emotag"

    def emotion_rows(self, spec, n: int) -> np.ndarray | None:
        """(n, 8) an EmoTaG head's emotion conditioning for a request (EmotionSpec or None): the preset's FER2013
        class scaled by its intensity (e = intensity; emogs.face.fer.preset_condition), as training saw the
        frames' FER2013 scores; no request: the person's mean. None for heads without the emotion latent."""
        if not self.is_emotag or not getattr(self.model, "has_emotion", False):
            return None
        if spec is None:
            c = self.model.fer_mean.detach().cpu().numpy()
        else:
            from emogs.face.fer import preset_condition

            c, _ = preset_condition(spec.name, spec.intensity)
        return np.broadcast_to(np.asarray(c, np.float32), (n, len(c))).copy()

    @torch.no_grad()
    def branch_residual(self, audio: torch.Tensor, au_window: torch.Tensor, emotion: np.ndarray | None
                        ) -> np.ndarray | None:
        """(n, R, D) audio windows, (n, T, 17) AU windows (what the learned parts receive), (n, 8) emotion rows ->
        (n, E) the residual branch's change (EmoTagHead.residual_motion); None unless an EmoTaG head with
        upper_drive both / branch."""
        if not self.is_emotag or self.upper_drive == "table":
            return None
        em = None if emotion is None else torch.as_tensor(emotion, dtype=torch.float32, device=self.device)
        return self.model.residual_motion(audio.float(), au_window.float(), em).cpu().numpy().astype(np.float32)

    def residual_expression(self, rows: np.ndarray, rows_per_frame: int, au: np.ndarray, emotion_spec,
                            chunk: int = 256) -> np.ndarray | None:
        """(F, E) `branch_residual` over a clip: feature rows, the (F, 17) AUs the learned parts receive, the
        plan's emotion request."""
        if not self.is_emotag or self.upper_drive == "table":
            return None
        from emogs.data.windows import feature_windows, frame_windows

        mc, F = self.model.cfg, len(au)
        cond = self.emotion_rows(emotion_spec, F)
        out = []
        for a in range(0, F, chunk):
            ids = np.arange(a, min(F, a + chunk))
            aud = torch.as_tensor(feature_windows(rows, rows_per_frame, ids, mc.audio_window), dtype=torch.float32,
                                  device=self.device)
            auw = torch.as_tensor(frame_windows(np.asarray(au, np.float32), ids, mc.au_window), device=self.device)
            out.append(self.branch_residual(aud, auw, None if cond is None else cond[ids]))
        return np.concatenate(out)

    def expressions(self, au: np.ndarray, base: np.ndarray | None = None,
                    residual: np.ndarray | None = None) -> np.ndarray | None:
        """(F, 17) AUs -> (F, E) mesh expression coefficients for a mesh-rigged head (None for a free one): the
        default face (`base` (F, E) from `speech_expression`, else the training clip's mean expression) moved by
        the AUs' change from the training mean through the AU -> ICT blendshape table (emogs.mesh.au_table, with
        its measured gains, docs/mesh.md), in [0, 1] (shapes with a gain: up to the gain). With a speech `base`,
        `au` should be the plan's AUs without the speech AUs' audio-driven deviation (or the jaw moves twice).
        The mesh takes the AUs as asked, also beyond what the training clip showed. `residual` (F, E): an EmoTaG
        head's residual-branch change (`residual_expression`), added; with upper_drive "branch" the table moves
        only the lower face."""
        if not self.is_mesh:
            return None
        from emogs.face.aus import AU_NAMES
        from emogs.mesh.au_table import drive_matrix

        names = self.info.get("expression_names")
        if not names:
            raise InputError(f"{self.run_dir}: a mesh run without expression names in dataset.json; retrain it")
        M = drive_matrix(names, list(AU_NAMES), calibrated=True,
                         gains=None if self.drive is None else self.drive["gains"])  # (17, E)
        if base is None:
            base = self.model.expr_mean.detach().cpu().numpy()
        if self.is_emotag and self.upper_drive == "branch":
            from emogs.face.aus import UPPER_AUS

            M = M.copy()
            M[[AU_NAMES.index(a) for a in UPPER_AUS]] = 0.0
        e = base + (np.asarray(au, np.float32) - self.default_au) @ M
        if residual is not None:
            e = e + residual
        return np.clip(e, 0.0, np.maximum(1.0, M.max(0))).astype(np.float32)  # past 1 only for gained shapes

    def clamp_to_training(self, au: np.ndarray, warn: Callable[[str], None] | None = None) -> np.ndarray:
        """(F, 17) requested AUs -> clamped to what the training clip showed (+ CLAMP_MARGIN). A per-person
        model has never seen an AU beyond that range and extrapolates badly (a broken face: see
        docs/control_proof.md); `warn` gets one line per AU that was cut. On a mesh-rigged head only the
        learned detail is limited: the mesh moves as asked (`expressions`), and beyond the range the learned
        residual's input fades back to the default (`residual_aus`, ModelConfig.residual_beyond)."""
        lo0, hi0 = self.training_range()
        mode = getattr(self.model.cfg, "residual_beyond", "hold") if self.is_mesh else "hold"
        out = residual_aus(au, lo0, hi0, self.default_au, mode, getattr(self.model.cfg, "residual_fade", 0.3))
        lo, hi = np.clip(lo0 - CLAMP_MARGIN, 0, 1), np.clip(hi0 + CLAMP_MARGIN, 0, 1)
        if warn is not None:
            from emogs.face.aus import AU_NAMES

            for k in np.flatnonzero(np.abs(out - au).max(0) > 0.02):
                if self.is_mesh:
                    detail = ("stays at that range" if mode == "hold" else
                              f"fades out beyond it (gone from {min(1.0, hi[k] + self.model.cfg.residual_fade):.2f})")
                    warn(f"{AU_NAMES[k]} requested up to {au[:, k].max():.2f}, beyond the training clip's "
                         f"{lo[k]:.2f}-{hi[k]:.2f}: the face mesh shows it as asked; the person-specific detail "
                         f"learned from the clip {detail}")
                    continue
                warn(f"{AU_NAMES[k]} requested up to {au[:, k].max():.2f}, but the training clip only shows "
                     f"{lo[k]:.2f}-{hi[k]:.2f}: clamped (the model cannot show what it never saw; "
                     "--allow-extrapolation to try anyway)")
        return out

    def effective_au(self, plan, rows: np.ndarray, rows_per_frame: int, speech_aus: bool = True) -> np.ndarray:
        """(F, 17) the AUs the model is driven with: the plan's, plus the speech AUs' predicted deviation
        from the audio feature rows where the user did not set them."""
        return speech_driven_aus(plan, rows, rows_per_frame, self.speech if speech_aus else None,
                                 self.model.cfg.audio_window)

    def frames(self, wav: np.ndarray, plan, batch: int = 8, chunk: int = 256,
               progress: Callable[[int, int], None] | None = None, clamp: bool = True,
               speech_aus: bool = True) -> Iterator[np.ndarray]:
        """Yield uint8 (H, W, 3) frames for 16 kHz audio `wav` under `plan`, chunk by chunk. AUs are
        clamped to the training range unless `clamp` is False. With `speech_aus` (and a run that has
        them) the speech AUs the user did not set follow the audio (emogs.model.speech_aus)."""
        F = plan.num_frames
        mc = self.model.cfg
        from emogs.audio import feature_rows
        from emogs.data.windows import feature_windows, frame_windows

        rows, rpf = feature_rows(wav, mc.audio_feature)
        au_req = self.effective_au(plan, rows, rpf, speech_aus)
        # mesh-rigged heads: the mesh follows the request (None otherwise); with a speech-motion model the
        # mouth's mesh motion comes from the audio and the speech AUs drive only the learned detail
        sbase = self.speech_expression(wav, F, rows) if speech_aus else None
        au = self.clamp_to_training(au_req) if clamp else au_req
        res = self.residual_expression(rows, rpf, au, getattr(plan, "emotion", None)) if self.is_mesh else None
        expr = self.expressions(plan.au, sbase, res) if sbase is not None else self.expressions(au_req, None, res)
        dev, S = self.device, self.size
        w2c = torch.as_tensor(plan.resolve_pose(self.train_w2c).world_to_cam, dtype=torch.float32, device=dev)
        K = torch.as_tensor(self.K, device=dev)
        bg = torch.as_tensor(self.background, device=dev)
        backend = self.cfg.backend
        for s in range(0, F, chunk):
            ids = np.arange(s, min(F, s + chunk))
            aud = torch.as_tensor(feature_windows(rows, rpf, ids, mc.audio_window), dtype=torch.float32,
                                  device=dev)  # (C, R, D)
            auw = torch.as_tensor(frame_windows(au, ids, mc.au_window), device=dev)  # (C, T, 17)
            ex = None if expr is None else torch.as_tensor(expr[ids], device=dev)  # (C, E)
            calls = ((w2c[ids[j]], K.expand(len(ids[j]), 3, 3), aud[j], auw[j], bg.expand(len(ids[j]), -1, -1, -1),
                      *(() if ex is None else (ex[j],)))
                     for j in (slice(i, min(len(ids), i + batch)) for i in range(0, len(ids), batch)))
            outs = list(self.renderer.run(calls, S, S, backend))  # uint8 (b, S, S, 3) on the device
            for fr in torch.cat(outs).cpu().numpy():
                yield fr
            if progress:
                progress(int(ids[-1]) + 1, F)

    def render(self, audio: str | Path | np.ndarray, out: str | Path | None = None, *, au: Any = None,
               emotion: str | None = None, au_timeline: str | Path | None = None,
               au_from: str | Path | None = None, pose: str = "training", pose_from: str | Path | None = None,
               base: str = "default", blinks: bool = True, blink_seed: int = 0, allow_silent: bool = False,
               side_by_side: bool = False, plan=None, batch: int = 8, quiet: bool = False,
               allow_extrapolation: bool = False, speech_aus: bool = True, overwrite: bool = True
               ) -> np.ndarray | RenderResult:
        """Render speech with controls. `audio`: a file (any format FFmpeg reads, a video's audio track
        too) or 16 kHz mono float32 samples. Returns frames (F, H, W, 3) uint8 when `out` is None, else
        writes an H.264 MP4 with the audio muxed in and returns a RenderResult. `out` is checked before
        any work (check_render_output); an existing file is replaced only with `overwrite`."""
        from emogs.io.media import frames_for_audio, load_audio, write_video

        t0 = time.time()
        log = (lambda *a: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
        if batch < 1:
            raise InputError(f"batch must be at least 1, got {batch}")
        if out is not None:
            check_render_output(out, self.run_dir, [audio, au_timeline, au_from, pose_from], overwrite)
        wav = load_audio(audio, SAMPLE_RATE, warn=lambda m: log(f"warning: {m}")) \
            if isinstance(audio, (str, Path)) else np.asarray(audio, np.float32)
        check_speech(wav, allow_silent)
        F = frames_for_audio(len(wav), SAMPLE_RATE, FPS)
        if plan is None:
            plan = self.plan(F, au=au, emotion=emotion, timeline=au_timeline, au_from=au_from, pose=pose,
                             pose_from=pose_from, base=base, blinks=blinks, blink_seed=blink_seed)
        elif plan.num_frames != F:
            raise InputError(f"the control plan has {plan.num_frames} frames, the audio needs {F}")
        if allow_extrapolation:
            log(plan.summary())
        else:  # the table shows what the model receives: the plan clamped to the training range
            sent = self.clamp_to_training(plan.au, warn=lambda m: log(f"warning: {m}"))
            what = None  # "hold": the table's own wording (clamped to the training range)
            if self.is_mesh and getattr(self.model.cfg, "residual_beyond", "hold") == "fade":
                what = ("AUs sent to the learned residual (faded out beyond the training range; the face mesh "
                        "gets the requested values)")
            log(plan.summary(sent=sent, sent_what=what))
        if self.drive is not None:
            log("  AU drive of the face mesh: person-calibrated gains (RUN/au_drive.json): "
                + ", ".join(f"{k} x{v:g}" for k, v in sorted(self.drive["gains"].items()) if abs(v - 1) > 1e-6))
        if self.is_emotag and self.upper_drive != "table":
            what = "the motion network's residual branch" + (" (and the AU table)" if self.upper_drive == "both" else
                                                             " (the AU table: lower face only)")
            emo = getattr(plan, "emotion", None)
            if getattr(self.model, "has_emotion", False):
                from emogs.face.fer import preset_condition

                if emo is None:
                    cond = "the person's mean FER2013 scores"
                else:
                    c, cls = preset_condition(emo.name, emo.intensity)
                    cond = (f"FER2013 '{cls}' x{emo.intensity:g} (e = {float(c[-1]):.2f})" if cls not in (None, "neutral")
                            else f"neutral (e = 0{'; ' + emo.name + ' has no FER2013 class' if cls is None else ''})")
                log(f"  upper-face AUs and emotion reach the mesh through {what}; its emotion latent reads {cond}")
            else:
                log(f"  upper-face AUs reach the mesh through {what} (this head has no emotion latent)")
        if speech_aus and self.is_mesh and self.motion is not None:
            log("  the mouth's mesh motion follows the audio (the run's speech-motion model); mouth AU edits add to it")
        if speech_aus and self.speech is not None:
            log(f"  speech AUs ({', '.join(self.speech.info.get('driven', [])) or 'none'}) follow the audio where "
                "not set by the user (added to the values above, then clamped)")

        def progress(done: int, total: int) -> None:
            el = time.time() - t0
            log(f"[render] {done}/{total} frames ({done / max(el, 1e-9):.1f} fps)")

        gen = self.frames(wav, plan, batch=batch, progress=progress, clamp=not allow_extrapolation,
                          speech_aus=speech_aus)
        if out is None:
            return np.stack(list(gen))
        out = Path(out)
        if side_by_side:
            frames = np.stack(list(gen))
            from emogs.control.plot import side_by_side_frames

            gen = side_by_side_frames(frames, plan.au, plan.au_names, FPS)
        n = write_video(out, gen, FPS, audio=wav, sample_rate=SAMPLE_RATE)
        if n != F:
            raise RuntimeError(f"wrote {n} frames, expected {F}")
        dt = time.time() - t0
        log(f"[render] wrote {out}: {n} frames, {n / FPS:.2f} s, in {dt:.1f} s")
        return RenderResult(n, dt, out, plan.summary(), plan.au)

    @torch.no_grad()
    def export_ply(self, path: str | Path, *, au: Any = None, emotion: str | None = None,
                   audio: str | Path | np.ndarray | None = None, time: float = 0.0,
                   canonical: bool = False) -> Path:
        """Write the head's Gaussians as a standard 3DGS .ply: deformed to the expression of `au` / `emotion`
        (the model's default expression otherwise, AUs clamped to the training range) with the mouth of
        `audio` at `time` seconds (silence when None), or the canonical Gaussians with `canonical`."""
        from emogs.audio import feature_rows
        from emogs.data.windows import feature_windows, frame_windows
        from emogs.io.media import load_audio
        from emogs.render.ply import save_ply
        from emogs.render.sh import rgb_to_sh0

        path = Path(path)
        if path.suffix.lower() != ".ply":
            raise InputError(f"{path}: the export is a .ply file")
        if canonical:
            d = self.model.canonical_gaussians()
        else:
            if audio is None:
                wav = np.zeros(SAMPLE_RATE, np.float32)
            else:
                wav = load_audio(audio, SAMPLE_RATE) if isinstance(audio, (str, Path)) else np.asarray(audio, np.float32)
            F = max(1, int(np.ceil(len(wav) * FPS / SAMPLE_RATE - 1e-9)))
            if not 0 <= time < F / FPS:
                raise InputError(f"--time {time} is outside the audio (0-{F / FPS:.2f} s)")
            i = np.array([min(F - 1, int(time * FPS))])
            plan = self.plan(F, au=au, emotion=emotion, blinks=False)
            mc = self.model.cfg
            rows, rpf = feature_rows(wav, mc.audio_feature)
            req = self.effective_au(plan, rows, rpf)
            aus = self.clamp_to_training(req)
            sbase = self.speech_expression(wav, F, rows)
            res = self.residual_expression(rows, rpf, aus, plan.emotion) if self.is_mesh else None
            expr = self.expressions(plan.au, sbase, res) if sbase is not None else self.expressions(req, None, res)
            dev = self.device
            d = self.model.deformed(torch.as_tensor(feature_windows(rows, rpf, i, mc.audio_window), dtype=torch.float32,
                                                    device=dev),
                                    torch.as_tensor(frame_windows(aus, i, mc.au_window), device=dev),
                                    None if expr is None else torch.as_tensor(expr[i], device=dev))
            d = {k: d[k][0] for k in ("means", "quats", "scales", "opacities", "colors")}
        save_ply(path, d["means"].cpu(), d["quats"].cpu(), d["scales"].cpu(), d["opacities"].cpu(),
                 rgb_to_sh0(d["colors"].cpu())[:, None, :])
        return path
