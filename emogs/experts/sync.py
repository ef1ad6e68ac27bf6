"""The lip-sync expert: a contrastive audio-visual model (SyncNet-like) trained here, and its uses.

    expert = load_sync_expert()                       # shipped weights (emogs/experts/weights/)
    v = expert.embed_video(mouth)                     # (B, T, 48, 96) gray [0, 1] -> (B, E), unit length
    a = expert.embed_audio(rows)                      # (B, R, D) audio feature rows -> (B, E), unit length
    score = (v * a).sum(-1)                           # cosine: high = in sync

Time layout: a video window is T = `frames` consecutive frames centred on frame t (t - T//2 .. t + T//2);
its audio window is the `audio_rows` feature rows centred on the centre time of frame t. The shipped expert
uses Whisper-base encoder rows (50 Hz: frame t <-> rows [2t, 2t + 2)), 20 rows = 400 ms around the 200 ms
of its 5 frames; the code also takes log-mel rows (100 Hz x 80). `audio_windows` cuts them the way the
training loader does (`emogs.data.dataset.feature_windows`); `audio_features` computes the rows from audio. An offset s pairs the video window
at t with the audio window at t + s; s > 0 = the audio is late (the matching sound comes s frames after the
mouth), the convention of `emogs.eval.sync`.

Pure: tensors in, tensors out; weights are read only by `load_sync_expert`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from emogs.experts.crops import MOUTH, CropRegion, sample_crops, to_gray


@dataclass
class SyncExpertConfig:
    frames: int = 5  # T video frames per window
    crop_height: int = MOUTH.height
    crop_width: int = MOUTH.width
    audio_feature: str = "mel"  # "mel" (audio_mel.npy, 100 Hz x 80) | "whisper" (audio_whisper.npy, 50 Hz x 512)
    audio_rows: int = 20  # feature rows per window (mel 20 = 200 ms; whisper 20 = 400 ms)
    audio_dim: int = 80
    rows_per_frame: int = 4  # feature rows per 25 fps video frame (mel 4, whisper 2)
    embed_dim: int = 256
    frame_dim: int = 128  # per-frame feature size
    width: int = 16  # base channel count of both encoders
    audio_mean: float = 0.0  # feature normalisation (set from the training data)
    audio_std: float = 1.0
    crop_region: dict = field(default_factory=lambda: {"x0": MOUTH.x0, "x1": MOUTH.x1, "y0": MOUTH.y0,
                                                        "y1": MOUTH.y1})

    @property
    def region(self) -> CropRegion:
        r = self.crop_region
        return CropRegion(r["x0"], r["x1"], r["y0"], r["y1"], self.crop_height, self.crop_width)


def _block(cin: int, cout: int, stride: int | tuple[int, int] = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _block1d(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm1d(cout), nn.ReLU(inplace=True))


class FrameEncoder(nn.Module):
    """(N, h, w) gray mouth crops -> (N, frame_dim) per-frame features. Each frame is standardised first
    (zero mean, unit sd over its pixels; the sd floored at 0.02, below every real crop's (>= 0.05), so a flat
    render early in training cannot blow up the loss's gradient)."""

    def __init__(self, c: SyncExpertConfig):
        super().__init__()
        w = c.width
        self.net = nn.Sequential(
            _block(1, w, 2),  # 24 x 48
            _block(w, 2 * w, 2), _block(2 * w, 2 * w),  # 12 x 24
            _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w),  # 6 x 12
            _block(4 * w, 8 * w, 2),  # 3 x 6
            _block(8 * w, 8 * w, 2),  # 2 x 3
        )
        hh, ww = c.crop_height, c.crop_width
        for _ in range(5):
            hh, ww = (hh + 1) // 2, (ww + 1) // 2
        self.fc = nn.Sequential(nn.Linear(8 * w * hh * ww, c.frame_dim), nn.BatchNorm1d(c.frame_dim), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, None]
        m = x.mean(dim=(2, 3), keepdim=True)
        s = x.std(dim=(2, 3), keepdim=True).clamp_min(0.02)
        return self.fc(self.net((x - m) / s).flatten(1))


class VideoEncoder(nn.Module):
    """(B, T, h, w) gray mouth windows -> (B, E): one FrameEncoder shared by the T frames, then temporal
    convolutions over them (weight sharing across time: fewer parameters to learn from little data)."""

    def __init__(self, c: SyncExpertConfig):
        super().__init__()
        self.frame = FrameEncoder(c)
        d = c.frame_dim
        k2 = c.frames - 2
        self.temporal = nn.Sequential(nn.Conv1d(d, d, 3, bias=False), nn.BatchNorm1d(d), nn.ReLU(inplace=True),
                                      nn.Conv1d(d, c.embed_dim, k2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        f = self.frame(x.reshape(b * t, *x.shape[2:])).reshape(b, t, -1)
        return self.temporal(f.transpose(1, 2))[:, :, 0]

    def sequence(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(G, L, h, w) runs of consecutive frames -> window embeddings (G, L - T + 1, E) (window j covers
        frames j..j+T-1) and the per-frame features (G, L, frame_dim)."""
        g, n = frames.shape[:2]
        f = self.frame(frames.reshape(g * n, *frames.shape[2:])).reshape(g, n, -1)
        return self.temporal(f.transpose(1, 2)).transpose(1, 2), f


class AudioEncoder(nn.Module):
    """(B, R, D) feature rows -> (B, E): 1D convolutions over time, the D features as channels."""

    def __init__(self, c: SyncExpertConfig):
        super().__init__()
        w = c.width
        self.mean, self.std = c.audio_mean, c.audio_std
        self.net = nn.Sequential(
            _block1d(c.audio_dim, 4 * w), _block1d(4 * w, 8 * w),
            _block1d(8 * w, 8 * w, 2), _block1d(8 * w, 8 * w),
            _block1d(8 * w, 8 * w, 2),
        )
        r = c.audio_rows
        for _ in range(2):
            r = (r + 1) // 2
        self.fc = nn.Linear(8 * w * r, c.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.fc(self.net(x.transpose(1, 2)).flatten(1))


class SyncExpert(nn.Module):
    """Video and audio encoders into one embedding space; `logit_scale` is the InfoNCE temperature."""

    def __init__(self, cfg: SyncExpertConfig | None = None):
        super().__init__()
        self.cfg = c = cfg or SyncExpertConfig()
        self.video = VideoEncoder(c)
        self.audio = AudioEncoder(c)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(10.0))))

    def embed_video(self, mouth: torch.Tensor) -> torch.Tensor:
        """(B, T, h, w) gray in [0, 1] -> (B, E) unit vectors."""
        return F.normalize(self.video(mouth), dim=-1)

    def embed_video_rgb(self, mouth_rgb: torch.Tensor) -> torch.Tensor:
        """(B, T, h, w, 3) RGB in [0, 1] -> (B, E) unit vectors (differentiable w.r.t. the pixels)."""
        return self.embed_video(to_gray(mouth_rgb))

    def embed_audio(self, rows: torch.Tensor) -> torch.Tensor:
        """(B, R, D) audio feature rows -> (B, E) unit vectors."""
        return F.normalize(self.audio(rows), dim=-1)

    def forward(self, mouth: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Cosine similarity (B,) of gray mouth windows and audio windows."""
        return (self.embed_video(mouth) * self.embed_audio(rows)).sum(-1)


# --- windows -----------------------------------------------------------------------------------------
def audio_windows(rows: np.ndarray, cfg: SyncExpertConfig, centres: np.ndarray) -> np.ndarray:
    """(R_total, D) feature rows of a clip -> (len(centres), audio_rows, D): the window of each centre
    frame (edge rows repeated), the layout of `emogs.data.dataset.feature_windows`."""
    from emogs.data.dataset import feature_windows

    return feature_windows(rows, cfg.rows_per_frame, np.asarray(centres), cfg.audio_rows // 2)


def audio_features(wav: np.ndarray, num_frames: int, cfg: SyncExpertConfig) -> np.ndarray:
    """The expert's feature rows (rows_per_frame per frame) of 16 kHz mono audio for `num_frames` video
    frames (the audio cut or zero-padded to num_frames / 25 s), as `emogs prepare` computes them: log-mel
    (`emogs.audio.features`) or Whisper-base encoder rows (`emogs.audio.whisper`). For a prepared dataset
    the same rows are in DATASET/audio_mel.npy or audio_whisper.npy."""
    need = num_frames * 640
    w = np.zeros(need, np.float32)
    w[: min(need, len(wav))] = np.asarray(wav, np.float32)[:need]
    if cfg.audio_feature == "mel":
        from emogs.audio.features import log_mel

        return log_mel(w)
    from emogs.audio.whisper import whisper_features

    return whisper_features(w)


def video_window_index(num_frames: int, centres: np.ndarray, frames: int) -> np.ndarray:
    """(len(centres), frames) frame indices of each video window (clipped to the clip: edges repeat)."""
    h = frames // 2
    return np.clip(np.asarray(centres)[:, None] + np.arange(-h, frames - h)[None], 0, num_frames - 1)


def mouth_windows(frames: torch.Tensor, affines: torch.Tensor | np.ndarray,
                  region: CropRegion = MOUTH) -> torch.Tensor:
    """Mouth crops of rendered windows: frames (B, T, H, W, 3) float [0, 1] and per-frame crop affines
    (B, T, 2, 3) (`emogs.experts.crops.crop_affines` of the ground-truth landmarks) -> (B, T, h, w, 3),
    differentiable w.r.t. the frames (bilinear `grid_sample`)."""
    b, t = frames.shape[:2]
    a = torch.as_tensor(affines, dtype=frames.dtype, device=frames.device).reshape(b * t, 2, 3)
    c = sample_crops(frames.reshape(b * t, *frames.shape[2:]), a, region)
    return c.reshape(b, t, *c.shape[1:])


# --- training loss -----------------------------------------------------------------------------------
def sync_loss(expert: SyncExpert, mouth_rgb: torch.Tensor, audio: torch.Tensor, mode: str = "cosine") -> torch.Tensor:
    """Lip-sync loss of rendered mouth windows against their audio: scalar, differentiable w.r.t. the pixels.

    mouth_rgb (B, T, h, w, 3) float in [0, 1]: T = expert.cfg.frames consecutive frames centred on frame t
    (`mouth_windows` of the renders); audio (B, audio_rows, audio_dim): the expert's audio window of frame t
    (`audio_windows`). mode "cosine": mean(1 - cos); "bce": mean(-log((1 + cos) / 2)) (Wav2Lip-style BCE on
    the score mapped to [0, 1]). The expert's own parameters get gradients too unless frozen: call
    `expert.requires_grad_(False).eval()` once (`load_sync_expert` does)."""
    c = expert.cfg
    if mouth_rgb.shape[1] != c.frames or mouth_rgb.shape[2:4] != (c.crop_height, c.crop_width):
        raise ValueError(f"mouth windows must be (B, {c.frames}, {c.crop_height}, {c.crop_width}, 3), "
                         f"got {tuple(mouth_rgb.shape)}")
    cos = (expert.embed_video_rgb(mouth_rgb) * expert.embed_audio(audio.to(mouth_rgb.dtype))).sum(-1)
    if mode == "cosine":
        return (1 - cos).mean()
    if mode == "bce":
        return -torch.log(((1 + cos) / 2).clamp_min(1e-6)).mean()
    raise ValueError(f"mode must be 'cosine' or 'bce', got {mode!r}")


# --- scoring a clip ------------------------------------------------------------------------------------
@torch.no_grad()
def clip_embeddings(expert: SyncExpert, mouth: np.ndarray | torch.Tensor, rows: np.ndarray, max_offset: int,
                    batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of every window of a clip: mouth (N, h, w) gray crops (uint8 or float [0, 1]) and its
    feature rows -> video (N, E) at centres 0..N-1, audio (N + 2 max_offset, E) at centres
    -max_offset..N-1+max_offset (rows beyond the clip repeat the edge)."""
    c = expert.cfg
    m = torch.as_tensor(np.asarray(mouth))
    m = m.float() / 255.0 if m.dtype == torch.uint8 else m.float()
    n = len(m)
    h = c.frames // 2  # each frame encoded once; the windows from the per-frame features
    idx = torch.from_numpy(np.clip(np.arange(-h, n + c.frames - 1 - h), 0, n - 1))
    feats = torch.cat([expert.video.frame(m[idx[s:s + batch]]) for s in range(0, len(idx), batch)])
    vs = [F.normalize(expert.video.temporal(feats.T[None])[0].T, dim=-1)]
    centres = np.arange(-max_offset, n + max_offset)
    aw = audio_windows(rows, c, centres)
    aa = [expert.embed_audio(torch.from_numpy(np.asarray(aw[s:s + batch], np.float32)))
          for s in range(0, len(centres), batch)]
    return torch.cat(vs).numpy(), torch.cat(aa).numpy()


def offset_distances(video: np.ndarray, audio: np.ndarray, max_offset: int) -> np.ndarray:
    """(N, E) video and (N + 2 max_offset, E) audio embeddings (from `clip_embeddings`) -> (N, 2 max_offset + 1)
    distances d[t, k] = |v_t - a_{t + s}| for s = k - max_offset (unit vectors: d = sqrt(2 - 2 cos), in [0, 2])."""
    n = len(video)
    idx = np.arange(n)[:, None] + np.arange(2 * max_offset + 1)[None]  # audio index of centre t + s
    cos = np.einsum("te,tke->tk", video, audio[idx])
    return np.sqrt(np.clip(2 - 2 * cos, 0, 4))


# --- shipped weights -----------------------------------------------------------------------------------
SYNC_WEIGHTS = "sync_expert"


def load_sync_expert(path=None, device: str | torch.device = "cpu") -> SyncExpert:
    """The shipped lip-sync expert (or the weight file `path`), in eval mode with frozen parameters."""
    import dataclasses

    from emogs.config import from_dict
    from emogs.experts.weights import load_info, load_state, weights_path

    p = weights_path(SYNC_WEIGHTS) if path is None else path
    info = load_info(p)
    names = {f.name for f in dataclasses.fields(SyncExpertConfig)}
    cfg = from_dict(SyncExpertConfig, {k: v for k, v in info["config"].items() if k in names})
    model = SyncExpert(cfg)
    model.load_state_dict(load_state(p))
    return model.to(device).eval().requires_grad_(False)
