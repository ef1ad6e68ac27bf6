"""Natural blinks for AU45 when the track has none (neutral base, constant default expression, presets).

Inter-blink intervals ~ Gamma(k=8, theta=0.5 s): mean 4 s, sd 1.4 s, clipped to [2, 8] s (spontaneous blink
rates in conversation are ~10-25 per minute). Each blink lasts 150-250 ms: a raised-cosine close (40 %) and
a slower open (60 %), peak 0.8-1.0, sampled at frame times (the peak falls on a frame).
"""
from __future__ import annotations

import numpy as np

BLINK_THRESHOLD = 0.5      # AU45 at or above this on some frame = "the track already blinks"
INTERVAL_SHAPE, INTERVAL_SCALE = 8.0, 0.5
INTERVAL_RANGE = (2.0, 8.0)
DURATION_RANGE = (0.15, 0.25)


def has_blinks(au45: np.ndarray) -> bool:
    """(F,) AU45 track -> True if it has at least one blink-strength frame."""
    return bool(len(au45) and np.max(au45) >= BLINK_THRESHOLD)


def blink_track(num_frames: int, fps: float = 25.0, seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """-> AU45 pulses (F,) in [0, 1] and the blinks as (peak time s, duration s)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(num_frames)
    events: list[tuple[float, float]] = []
    dur_clip = num_frames / fps
    t = rng.uniform(0.5, 3.0)  # peak time of the first blink
    while True:
        dur = rng.uniform(*DURATION_RANGE)
        peak = rng.uniform(0.8, 1.0)
        close, open_ = 0.4 * dur, 0.6 * dur
        t_peak = round(t * fps) / fps                     # snap the peak to a frame
        if t_peak + open_ > dur_clip:
            break
        i0 = max(0, int(np.floor((t_peak - close) * fps)))
        i1 = min(num_frames, int(np.ceil((t_peak + open_) * fps)) + 1)
        ts = np.arange(i0, i1) / fps
        x = np.where(ts <= t_peak, (ts - (t_peak - close)) / close, ((t_peak + open_) - ts) / open_)
        pulse = peak * 0.5 * (1 - np.cos(np.pi * np.clip(x, 0, 1)))
        out[i0:i1] = np.maximum(out[i0:i1], pulse)
        events.append((t_peak, dur))
        t = t_peak + float(np.clip(rng.gamma(INTERVAL_SHAPE, INTERVAL_SCALE), *INTERVAL_RANGE))  # peak to peak
    return out, events
