"""Speech -> face-mesh motion: a window of audio feature rows around a frame -> the speech-driven ICT-FaceKit
expression coefficients of that frame, as deviations from the person's own mean expression.

Pretrained on the fitted tracks of every speaking clip available (scripts/train_speech_motion.py,
docs/speech_motion.md) so that any voice moves the jaw and lips; `fine_tune` adapts it to one person.

Input: the window the talking head sees per frame (`feature_windows(rows, rows_per_frame, frames, half)`,
`2 * half` rows of log-mel (100 Hz x 80) or Whisper-base encoder features (50 Hz x 512)), any batch shape.
Output: `forward` -> the predicted deviation (..., K) of the K coefficients in `cfg.coeffs` from the
person's mean (the mean mouth shape of a face is identity, not speech); `predict(windows, mean)` -> the
coefficients mean + deviation clipped to [0, 1]. `predict_rows` runs a whole clip in chunks and smooths the
result over time; `expand` writes the K coefficients into a full 53-coefficient expression.

Network: per-dimension standardisation (training-set statistics, buffers), a 1x1 projection, strided 1-D
convolutions over the window's rows, attention pooling over time, a linear head and a per-coefficient gain
(calibrated on identities the network did not train on, so the predicted spread matches real speech
instead of shrinking toward the mean). Pure: tensors in, tensors out; the loader at the end is the only
part that reads a file (the shipped weights).
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The ICT-FaceKit coefficients that speech drives: jaw opening and its fore/aft and sideways motion, the
# lips' closing, rounding, rolling, pressing, stretching and raising/lowering, and the cheeks' puff. Left out:
# brows, eyes, nose sneer and cheek squint (upper face: emotion and blinks, not articulation), and mouthSmile,
# mouthFrown, mouthDimple (expression of emotion; docs/speech_motion.md measures how little speech predicts
# them on other speakers).
SPEECH_COEFFS = (
    "jawOpen", "jawForward", "jawLeft", "jawRight",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPress_L", "mouthPress_R", "mouthLowerDown_L", "mouthLowerDown_R", "mouthUpperUp_L", "mouthUpperUp_R",
    "mouthStretch_L", "mouthStretch_R", "cheekPuff_L", "cheekPuff_R",
)
FEATURES = {"mel": dict(dim=80, rows_per_frame=4, half=20), "whisper": dict(dim=512, rows_per_frame=2, half=10)}
# The feature the shipped prior reads. Whisper-base rows beat log-mel on held-out identities in every
# comparison made (docs/speech_motion.md), so only the Whisper prior is shipped; a mel network can still be
# trained (scripts/train_speech_motion.py --feature mel) and loaded from its own path.
PRIOR_FEATURE = "whisper"
WEIGHTS_DIR = Path(__file__).with_name("weights")


@dataclass
class SpeechMotionConfig:
    feature: str = "mel"                  # "mel" (log-mel, 100 Hz x 80) | "whisper" (Whisper-base, 50 Hz x 512)
    dim: int = 80                         # feature dimension D
    rows_per_frame: int = 4               # feature rows per 25 fps video frame
    half: int = 20                        # window = 2 * half rows centred on the frame
    coeffs: tuple[str, ...] = SPEECH_COEFFS
    width: int = 32                       # channels of the convolutions (per member)
    layers: int = 3                       # strided (2x) convolutions over the window's rows
    kernel: int = 5
    members: int = 4                      # independently initialised networks averaged (an ensemble)
    dropout: float = 0.3
    smooth_sigma: float = 1.0             # Gaussian smoothing (frames) of `predict_rows` output; 0 = none
    person_norm: bool = False             # outputs in units of the person's own spread (see `SpeechMotion`)
    row_norm: bool = True                 # standardise each feature row over its D values first (level-free)

    @classmethod
    def for_feature(cls, feature: str, **kw) -> "SpeechMotionConfig":
        if feature not in FEATURES:
            raise ValueError(f"feature must be one of {sorted(FEATURES)}, got {feature!r}")
        return cls(feature=feature, **{**FEATURES[feature], **kw})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["coeffs"] = list(self.coeffs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SpeechMotionConfig":
        d = dict(d)
        d["coeffs"] = tuple(d.get("coeffs", SPEECH_COEFFS))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class SpeechMotion(nn.Module):
    """(..., 2*half, D) audio feature windows -> (..., K) deviation of the speech coefficients from the
    person's mean: in coefficient units, or with `cfg.person_norm` in units of the person's own standard
    deviation of each coefficient (`scale`; the amplitude of a person's articulation in the fit is theirs,
    not the audio's), `ref_scale` (the median person's) standing in when the person's is not known."""

    def __init__(self, cfg: SpeechMotionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, W, K, M = cfg.dim, cfg.width, len(cfg.coeffs), cfg.members
        self.register_buffer("feat_mean", torch.zeros(D))
        self.register_buffer("feat_std", torch.ones(D))
        self.register_buffer("gain", torch.ones(K))
        self.register_buffer("ref_scale", torch.ones(K))
        # M independent members side by side (grouped convolutions), averaged at the output
        self.proj = nn.Conv1d(D, M * W, 1)
        self.convs = nn.ModuleList(nn.Conv1d(M * W, M * W, cfg.kernel, stride=2, padding=cfg.kernel // 2, groups=M)
                                   for _ in range(cfg.layers))
        self.norms = nn.ModuleList(nn.GroupNorm(8 * M, M * W) for _ in range(cfg.layers))
        self.pool = nn.Conv1d(M * W, M, 1, groups=M)  # attention weights over the remaining time steps
        self.head = nn.Sequential(nn.Conv1d(M * W, M * W, 1, groups=M), nn.GELU(), nn.Dropout(cfg.dropout),
                                  nn.Conv1d(M * W, M * K, 1, groups=M))
        self.drop = nn.Dropout(cfg.dropout)

    @property
    def window_rows(self) -> int:
        return 2 * self.cfg.half

    def normalise(self, rows: torch.Tensor) -> torch.Tensor:
        """(..., D) feature rows -> the network's standardised input (`feat_mean` / `feat_std` are statistics
        of the rows after the optional per-row standardisation)."""
        if self.cfg.row_norm:
            rows = (rows - rows.mean(-1, keepdim=True)) / (rows.std(-1, keepdim=True) + 1e-5)
        return (rows - self.feat_mean) / self.feat_std

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if windows.shape[-2:] != (2 * cfg.half, cfg.dim):
            raise ValueError(f"expected windows (..., {2 * cfg.half}, {cfg.dim}) of {cfg.feature} features, "
                             f"got {tuple(windows.shape)}")
        lead = windows.shape[:-2]
        x = self.normalise(windows.reshape(-1, 2 * cfg.half, cfg.dim).float()).transpose(1, 2)  # (B, D, R)
        h = self.drop(self.proj(x))
        for conv, norm in zip(self.convs, self.norms):
            h = F.gelu(norm(conv(h)))
        B, T = h.shape[0], h.shape[-1]
        a = torch.softmax(self.pool(h), dim=-1)              # (B, M, T)
        M = a.shape[1]
        h = (h.reshape(B, M, -1, T) * a[:, :, None]).sum(-1)  # (B, M, W)
        out = self.head(h.reshape(B, -1, 1)).reshape(B, M, -1).mean(1) * self.gain
        return out.reshape(*lead, -1)

    def scale_of(self, scale=None) -> torch.Tensor:
        """Per-coefficient factor from the network's output to coefficient units."""
        if not self.cfg.person_norm:
            return torch.ones_like(self.ref_scale)
        return self.ref_scale if scale is None else torch.as_tensor(scale, dtype=torch.float32)

    def deviation(self, windows: torch.Tensor, scale=None) -> torch.Tensor:
        """Predicted deviation from the person's mean in coefficient units; `scale` (K,) or (..., K): the
        person's standard deviation of each coefficient (used with `cfg.person_norm`; default `ref_scale`)."""
        out = self(windows)
        return out * self.scale_of(scale).to(out.device, out.dtype)

    def predict(self, windows: torch.Tensor, mean, scale=None) -> torch.Tensor:
        """Coefficients in [0, 1]: the person's mean (K,) or (..., K) plus the predicted deviation."""
        dev = self.deviation(windows, scale)
        mean = torch.as_tensor(mean, dtype=dev.dtype, device=dev.device)
        return (mean + dev).clamp(0.0, 1.0)


def merge_members(nets: list["SpeechMotion"]) -> "SpeechMotion":
    """One SpeechMotion whose members are all the members of `nets` (independently trained networks of one
    config and the same input statistics, e.g. different seeds), so its output is their average: an ensemble
    that loads, fine-tunes and runs like any prior. Gains and statistics are taken from the first net."""
    base = nets[0]
    for n in nets[1:]:
        if {**n.cfg.to_dict(), "members": 0} != {**base.cfg.to_dict(), "members": 0}:
            raise ValueError("merge_members: the nets' configs differ")
        for b in ("feat_mean", "feat_std", "ref_scale"):
            if not torch.equal(getattr(n, b), getattr(base, b)):
                raise ValueError(f"merge_members: the nets' {b} differ (trained on other data)")
    cfg = SpeechMotionConfig.from_dict({**base.cfg.to_dict(), "members": sum(n.cfg.members for n in nets)})
    out = SpeechMotion(cfg)
    states = [n.state_dict() for n in nets]
    merged = {}
    for k, v in out.state_dict().items():
        if k in ("feat_mean", "feat_std", "gain", "ref_scale"):
            merged[k] = states[0][k].clone()
        else:  # every parameter is member-major along its first dimension (grouped convolutions, group norms)
            merged[k] = torch.cat([s[k] for s in states], 0)
        if merged[k].shape != v.shape:
            raise ValueError(f"merge_members: {k} {tuple(merged[k].shape)} != {tuple(v.shape)}")
    out.load_state_dict(merged)
    return out.eval()


def smooth_time(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of (F, K) along time (frames), edges held."""
    if sigma <= 0 or len(x) < 2:
        return x
    r = int(math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    p = np.pad(x, ((r, r), (0, 0)), mode="edge")
    return np.stack([np.convolve(p[:, j], k, mode="valid") for j in range(x.shape[1])], 1).astype(x.dtype)


def _feature_windows(rows, rows_per_frame, frames, half):
    try:
        from emogs.data.windows import feature_windows
    except ImportError:  # older trees keep it beside the dataset loader
        from emogs.data.dataset import feature_windows
    return feature_windows(rows, rows_per_frame, frames, half)


@torch.no_grad()
def predict_rows(module: SpeechMotion, rows: np.ndarray, num_frames: int, mean=None, scale=None,
                 chunk: int = 512, smooth: float | None = None, lag: int = 0) -> np.ndarray:
    """A whole clip: (R, D) feature rows -> (num_frames, K), `chunk` frames at a time, smoothed over time
    (`smooth` frames sigma, default the config's). With `mean` (K,): coefficients in [0, 1]; without: the
    deviations (coefficient units; `scale` as in `SpeechMotion.deviation`). `lag`: frame t reads the audio
    window of frame t + lag (audio-video offset)."""
    cfg = module.cfg
    was = module.training
    module.eval()
    out = np.zeros((num_frames, len(cfg.coeffs)), np.float32)
    for s in range(0, num_frames, chunk):
        ids = np.arange(s, min(num_frames, s + chunk))
        src = np.clip(ids + lag, 0, num_frames - 1)
        w = torch.from_numpy(np.asarray(_feature_windows(rows, cfg.rows_per_frame, src, cfg.half), np.float32))
        out[ids] = module.deviation(w, scale).numpy()
    module.train(was)
    out = smooth_time(out, cfg.smooth_sigma if smooth is None else smooth)
    if mean is not None:
        out = np.clip(out + np.asarray(mean, np.float32), 0.0, 1.0)
    return out


def coeff_index(names, coeffs=SPEECH_COEFFS) -> np.ndarray:
    """Indices of `coeffs` in the expression name list `names` (e.g. the ICT model's 53)."""
    names = list(names)
    missing = [c for c in coeffs if c not in names]
    if missing:
        raise ValueError(f"expression names lack {missing}")
    return np.array([names.index(c) for c in coeffs])


def expand(pred: np.ndarray, base: np.ndarray, names, coeffs=SPEECH_COEFFS) -> np.ndarray:
    """(F, K) predicted coefficients -> (F, E) full expression: `base` (E,) or (F, E) (e.g. the person's mean
    expression) with the K speech coefficients replaced."""
    base = np.asarray(base, np.float32)
    out = np.broadcast_to(base, (len(pred), base.shape[-1])).copy()
    out[:, coeff_index(names, coeffs)] = pred
    return out


SCALE_FLOOR = 0.01  # floor of a person's per-coefficient standard deviation (coefficient units)


def person_stats(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A person's (mean (K,), scale (K,)) from their fitted coefficients (N, K): what `predict` adds to and
    multiplies the network's output by (the scale is floored at `SCALE_FLOOR`)."""
    t = np.asarray(targets, np.float32)
    return t.mean(0), t.std(0) + SCALE_FLOOR


def fine_tune(module: SpeechMotion, windows, targets, mean=None, scale=None, steps: int = 300, lr: float = 3e-4,
              batch: int = 32, seq: int = 8, tail: float = 0.2, anchor: float = 1e-3, eval_every: int = 25,
              seed: int = 0, progress=None) -> SpeechMotion:
    """Fine-tune a copy of `module` on one person: `windows` (N, 2*half, D) of consecutive frames (the training
    split), `targets` (N, K) their fitted coefficients (`cfg.coeffs` order). `mean`, `scale` (K,): the person's
    statistics (default `person_stats` of the part trained on). The last `tail` of the frames is held out:
    the copy is trained on the rest with MSE on the deviation and on its frame-to-frame velocity plus an L2
    pull toward the pretrained weights (`anchor`), evaluated on the tail every `eval_every` steps, and the
    state best on the tail is kept (the pretrained one if no step beats it). Returns the copy; its
    `fine_tune_report` holds the tail MSE (coefficient units) and jawOpen r before (the pretrained weights),
    after (the kept state) and of the best fine-tuned step (`*_fine_tuned`, kept or not), `choice`
    ("fine_tuned" | "pretrained"), and the person's mean and scale to predict with."""
    g = torch.Generator().manual_seed(seed)
    w = torch.as_tensor(np.asarray(windows), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
    n = len(w)
    if n != len(y) or y.shape[-1] != len(module.cfg.coeffs):
        raise ValueError(f"windows ({n}) and targets {tuple(y.shape)} do not match {len(module.cfg.coeffs)} coeffs")
    n_tail = int(round(n * tail)) if tail > 0 else 0
    n_fit = n - n_tail
    if n_fit < seq + 1:
        raise ValueError(f"{n} frames is too short to fine-tune on (need more than {seq + 1} outside the tail)")
    m0, s0 = person_stats(y[:n_fit].numpy())
    m = torch.as_tensor(m0 if mean is None else mean, dtype=torch.float32)
    sc = module.scale_of(s0 if scale is None else scale).float()
    dev = y - m
    ft = copy.deepcopy(module)
    ref = {k: v.detach().clone() for k, v in ft.named_parameters()}
    opt = torch.optim.Adam(ft.parameters(), lr=lr)
    jaw = list(module.cfg.coeffs).index("jawOpen") if "jawOpen" in module.cfg.coeffs else 0

    @torch.no_grad()
    def evaluate(net):
        if n_tail < 2:
            return None, None
        net.eval()
        p = torch.cat([net.deviation(w[n_fit + s:min(n, n_fit + s + 512)], sc) for s in range(0, n_tail, 512)])
        net.train()
        p = torch.as_tensor(smooth_time(p.numpy(), net.cfg.smooth_sigma))
        t = dev[n_fit:]
        mse = float(((p - t) ** 2).mean())
        a, b = p[:, jaw] - p[:, jaw].mean(), t[:, jaw] - t[:, jaw].mean()
        r = float((a * b).sum() / (a.norm() * b.norm() + 1e-9))
        return mse, r

    before = evaluate(ft)
    best = (before[0] if before[0] is not None else float("inf"), copy.deepcopy(ft.state_dict()), 0)
    tuned = (float("inf"), None, 0)  # the best fine-tuned step on the tail, chosen or not
    ft.train()
    seq = min(seq, n_fit)
    z = dev / sc  # targets in the network's output units
    for step in range(1, steps + 1):
        starts = torch.randint(0, n_fit - seq + 1, (batch,), generator=g)
        idx = starts[:, None] + torch.arange(seq)[None]
        p = ft(w[idx])                    # (B, T, K)
        t = z[idx]
        loss = F.mse_loss(p, t) + F.mse_loss(p[:, 1:] - p[:, :-1], t[:, 1:] - t[:, :-1])
        loss = loss + anchor * sum(((v - ref[k]) ** 2).sum() for k, v in ft.named_parameters())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if n_tail >= 2 and (step % eval_every == 0 or step == steps):
            mse, r = evaluate(ft)
            if mse < tuned[0]:
                tuned = (mse, r, step)
            if mse < best[0]:
                best = (mse, copy.deepcopy(ft.state_dict()), step)
        if progress:
            progress(step, steps)
    if n_tail >= 2:
        ft.load_state_dict(best[1])
    ft.eval()
    after = evaluate(ft)
    ft.fine_tune_report = {"frames_fit": n_fit, "frames_tail": n_tail, "steps": steps, "best_step": best[2],
                           "tail_mse_before": before[0], "tail_mse_after": after[0],
                           "tail_jaw_r_before": before[1], "tail_jaw_r_after": after[1],
                           "tail_mse_fine_tuned": tuned[0] if tuned[1] is not None else None,
                           "tail_jaw_r_fine_tuned": tuned[1], "fine_tuned_step": tuned[2],
                           "choice": "fine_tuned" if best[2] > 0 else "pretrained",
                           "mean": m.tolist(), "scale": sc.tolist()}
    return ft


# ----------------------------------------------------------------------------------------------- weights
def weights_path(feature: str) -> Path:
    return WEIGHTS_DIR / f"speech_motion_{feature}.safetensors"


def save_speech_motion(module: SpeechMotion, path: str | Path, info: dict | None = None) -> None:
    """Weights (float32 safetensors, no pickle) with the config in the metadata; `info` also as JSON beside."""
    from safetensors.torch import save_file

    from emogs.io.atomic import atomic_path

    path = Path(path)
    state = {k: v.detach().contiguous().float() for k, v in module.state_dict().items()}
    meta = {"config": json.dumps(module.cfg.to_dict()), "format": "emogs.speech_motion/1"}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    if info is not None:
        with atomic_path(path.with_suffix(".json")) as tmp:
            Path(tmp).write_text(json.dumps(info, indent=1) + "\n")


def load_speech_motion(feature_kind: str = PRIOR_FEATURE, path: str | Path | None = None) -> SpeechMotion:
    """The shipped pretrained prior (it reads `PRIOR_FEATURE` rows: Whisper-base), or the weights at `path`
    (any feature kind); in eval mode. InputError when the weights are missing or damaged, or when a feature
    kind without shipped weights (mel) is asked for without a path."""
    from safetensors import safe_open

    from emogs.errors import InputError

    if path is None and feature_kind not in FEATURES:
        raise InputError(f"speech motion: feature kind must be one of {sorted(FEATURES)}, got {feature_kind!r}")
    if path is None and feature_kind != PRIOR_FEATURE:
        raise InputError(f"speech motion: no '{feature_kind}' prior is shipped; the prior reads {PRIOR_FEATURE} "
                         f"features (better on held-out speakers, docs/speech_motion.md). Train one with "
                         f"scripts/train_speech_motion.py --feature {feature_kind} and pass its path")
    p = Path(path) if path is not None else weights_path(feature_kind)
    if not p.is_file():
        raise InputError(f"speech motion weights for '{feature_kind}' not found at {p} (train them with "
                         f"scripts/train_speech_motion.py, or reinstall emogs with its package data)")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        cfg = SpeechMotionConfig.from_dict(json.loads(meta["config"]))
        module = SpeechMotion(cfg)
        module.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - any damage reads as one clear user error
        raise InputError(f"speech motion weights {p} are damaged or incompatible ({type(e).__name__}: {e})") from e
    if path is None and cfg.feature != feature_kind:
        raise InputError(f"{p} holds a '{cfg.feature}' model, not '{feature_kind}'")
    return module.eval()
