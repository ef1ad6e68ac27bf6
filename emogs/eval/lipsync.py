"""Lip-sync confidence and offset from our own lip-sync expert (`emogs.experts.sync`), SyncNet-style.

What it computes, exactly (one clip: frames at 25 fps and its 16 kHz audio):
  1. MediaPipe landmarks per frame (given, or tracked here); per frame the mouth-window crop
     (`emogs.experts.crops.MOUTH`, 48 x 96 gray, similarity-aligned to 15 rigid landmarks, smoothed over
     5 frames), the same crops the expert was trained on.
  2. Video embedding v_t of the 5-frame window centred on every frame t; audio embedding a_t of the audio
     window centred on frame t (200 ms of the expert's audio features: Whisper-base encoder rows,
     `emogs.audio.whisper`, computed here from the audio).
  3. d[t, s] = |v_t - a_{t+s}| (unit vectors: sqrt(2 - 2 cos), in [0, 2]) for offsets s = -15..15 frames,
     over the frames t whose face was tracked and whose t + s lies inside the clip.
  4. curve[s] = mean over t of d[t, s]  (SyncNet's averaged distance curve).
Reported:
  lipsync_offset_frames  argmin_s curve[s]; > 0 = the audio is late (as `sync_offset_frames`).
  lipsync_dist           curve at that offset (like LSE-D: lower = closer).
  lipsync_conf           median_s curve[s] - min_s curve[s] (like LSE-C: higher = the match at the best
                         offset stands out more).
  lipsync_score          mean over t of cos(v_t, a_t) at offset 0 (higher = in sync as rendered).
Numbers are on this expert's own scale, NOT comparable with SyncNet's LSE-C / LSE-D.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

MAX_OFFSET = 15
MIN_FRAMES = 25  # 1 s


class MouthCollector:
    """Collects mouth crops from a stream of frames (one in memory at a time): per frame a margin crop with
    that frame's own alignment; `crops()` re-samples them with the alignment smoothed over the clip."""

    def __init__(self, region=None, margin: float = 1.25):
        from emogs.experts.crops import MOUTH

        self.region = region or MOUTH
        self.margin = self.region.scaled(margin)
        self._crops: list[np.ndarray] = []
        self._lms: list[np.ndarray] = []
        self._aff: list[np.ndarray] = []

    def add(self, frame: np.ndarray, landmarks: np.ndarray | None) -> None:
        """An RGB uint8 (H, W, 3) frame and its (478, >=2) landmarks (None: no face)."""
        from emogs.experts.crops import crop_affines, sample_crops, to_gray

        if landmarks is None or not np.isfinite(landmarks[:, :2]).all():
            self._crops.append(np.zeros((self.margin.height, self.margin.width), np.uint8))
            self._lms.append(np.full((478, 2), np.nan, np.float32))
            self._aff.append(np.full((2, 3), np.nan, np.float32))
            return
        a = crop_affines(landmarks[None, :, :2], self.margin, smooth=1)
        with torch.no_grad():
            c = sample_crops(torch.from_numpy(np.ascontiguousarray(frame))[None].float() / 255.0, a, self.margin)
        self._crops.append(to_gray(c)[0].mul(255).round().clamp(0, 255).to(torch.uint8).numpy())  # 7 kB / frame
        self._lms.append(np.asarray(landmarks[:, :2], np.float32))
        self._aff.append(a[0])

    def __len__(self) -> int:
        return len(self._crops)

    def crops(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, h, w) float32 gray crops in [0, 1] and (N,) bool: face tracked."""
        from emogs.experts.crops import crop_affines, recrop

        ok = np.array([np.isfinite(a).all() for a in self._aff], bool)
        n = len(ok)
        out = np.zeros((n, self.region.height, self.region.width), np.float32)
        if ok.sum() == 0:
            return out, ok
        target = crop_affines(np.stack(self._lms), self.region)  # smoothed; gaps filled from neighbours
        idx = np.flatnonzero(ok)
        with torch.no_grad():
            m = torch.from_numpy(np.stack([self._crops[i] for i in idx])).float().div_(255.0)[..., None]
            out[idx] = recrop(m, np.stack([self._aff[i] for i in idx]), target[idx], self.margin,
                              self.region)[..., 0].numpy()
        return out, ok


def lipsync_from_crops(crops: np.ndarray, tracked: np.ndarray, wav: np.ndarray | None, expert=None,
                       sample_rate: int = 16000, max_offset: int = MAX_OFFSET) -> tuple[dict[str, float], np.ndarray]:
    """Metrics (module doc) and the distance curve (2 max_offset + 1,) from gray mouth crops (N, 48, 96)
    in [0, 1], the tracked mask (N,) and 16 kHz mono audio (frame i <-> samples [640 i, 640 (i + 1)))."""
    keys = ("lipsync_conf", "lipsync_dist", "lipsync_offset_frames", "lipsync_score")
    nan = {k: float("nan") for k in keys}
    curve = np.full(2 * max_offset + 1, np.nan)
    n = len(crops)
    if wav is None or n < MIN_FRAMES or tracked.sum() < MIN_FRAMES:
        return nan, curve
    from emogs.experts.sync import audio_features, clip_embeddings, load_sync_expert, offset_distances

    if sample_rate != 16000:
        raise ValueError("lipsync expects 16 kHz audio")
    expert = expert or load_sync_expert()
    rows = audio_features(np.asarray(wav, np.float32), n, expert.cfg)
    v, a = clip_embeddings(expert, crops, rows, max_offset)
    d = offset_distances(v, a, max_offset)  # (N, 2 o + 1)
    t = np.arange(n)[:, None] + np.arange(-max_offset, max_offset + 1)[None]
    ok = tracked[:, None] & (t >= 0) & (t < n)
    for k in range(d.shape[1]):
        if ok[:, k].any():
            curve[k] = d[ok[:, k], k].mean()
    k = int(np.nanargmin(curve))
    cos0 = 1 - d[tracked, max_offset] ** 2 / 2
    return {"lipsync_conf": float(np.nanmedian(curve) - curve[k]), "lipsync_dist": float(curve[k]),
            "lipsync_offset_frames": float(k - max_offset), "lipsync_score": float(cos0.mean())}, curve


def lipsync_scores(frames: Iterable[np.ndarray], wav: np.ndarray | None, landmarks: np.ndarray | None = None,
                   expert=None, sample_rate: int = 16000, max_offset: int = MAX_OFFSET) -> tuple[dict[str, float], np.ndarray]:
    """Lip-sync metrics of any talking-face video: frames (F, H, W, 3) uint8 at 25 fps (an array or an
    iterable), its 16 kHz audio, optionally the (F, 478, >=2) landmarks (else MediaPipe tracks the frames).
    Returns (metrics, curve); NaN metrics when there is no audio, under 1 s of frames or of tracked faces."""
    from emogs.experts.sync import load_sync_expert

    expert = expert or load_sync_expert()
    col = MouthCollector(expert.cfg.region)
    tracker = None
    if landmarks is None:
        from emogs.face.tracker import FaceTracker

        tracker = FaceTracker(video_mode=True)
    try:
        for i, f in enumerate(frames):
            if tracker is not None:
                res = tracker.track(f, int(round(i * 40.0)))
                lm = res.landmarks if res is not None else None
            else:
                lm = landmarks[i] if i < len(landmarks) else None
            col.add(f, lm)
    finally:
        if tracker is not None:
            tracker.close()
    crops, ok = col.crops()
    return lipsync_from_crops(crops, ok, wav, expert, sample_rate, max_offset)
