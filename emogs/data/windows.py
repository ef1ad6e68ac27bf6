"""Per-frame windows of time series, as the model sees them: audio feature rows around a frame's centre time
and AU tracks around a frame. Pure array functions shared by the dataset loader, training and rendering."""
from __future__ import annotations

import numpy as np


def window(n: int, centre2: int, half: int) -> np.ndarray:
    """Row indices [c - half, c + half) with c = centre2 / 2 (centre given doubled, so it may fall
    between rows), clipped to [0, n) (edge rows repeat)."""
    start = (centre2 - 2 * half) // 2
    return np.clip(np.arange(start, start + 2 * half), 0, n - 1)


def feature_windows(rows: np.ndarray, rows_per_frame: int, frames, half: int) -> np.ndarray:
    """(R, D) feature rows -> (len(frames), 2*half, D) windows centred on each frame's centre time (frame i
    covers rows [r i, r (i + 1)), r = rows_per_frame). Gathers only those rows."""
    idx = np.stack([window(len(rows), 2 * rows_per_frame * int(f) + rows_per_frame, half) for f in frames])
    return rows[idx]


def frame_windows(track: np.ndarray, frames: np.ndarray, T: int) -> np.ndarray:
    """(F, K) per-frame track -> (len(frames), T, K) windows centred on each frame (T // 2 before it),
    edge-padded."""
    h = T // 2
    idx = np.clip(np.asarray(frames)[:, None] - h + np.arange(T)[None, :], 0, len(track) - 1)
    return track[idx]
