"""Action-Unit error and smoothness from per-frame AU tracks (17 OpenFace AUs, intensities in [0, 1]).

- `aue_upper` / `aue_lower`: mean |AU_pred - AU_gt| over frames and over the upper-face AUs
  (AU01 02 04 05 06 07 09 45) / lower-face AUs (the other 9), AUs from `emogs.face.aus`.
- `au_jerk`: mean over frames and all 17 AUs of |a[t+1] - 2 a[t] + a[t-1]|, the second finite difference
  of the AU track: AU intensity units per frame^2 at 25 fps (multiply by 625 for units per s^2).
  Reported for the render and, as the natural-motion reference, for the ground truth (`au_jerk_gt`).
"""
from __future__ import annotations

import numpy as np


def aue(pred: np.ndarray, gt: np.ndarray, names: list[str], group: list[str]) -> float:
    """Mean |pred - gt| over frames (rows without NaN) and the AUs in `group`: (N, 17) x2 -> float."""
    cols = [names.index(a) for a in group]
    d = np.abs(pred[:, cols] - gt[:, cols])
    ok = ~np.isnan(d).any(axis=1)
    return float(d[ok].mean()) if ok.any() else float("nan")


def au_jerk(aus: np.ndarray) -> float:
    """Mean |second difference| of (N, 17) AU tracks, per frame^2; NaN rows are skipped (their triples)."""
    if len(aus) < 3:
        return float("nan")
    j = np.abs(aus[2:] - 2 * aus[1:-1] + aus[:-2])
    ok = ~np.isnan(j).any(axis=1)
    return float(j[ok].mean()) if ok.any() else float("nan")


def au_jerk_per_au(aus: np.ndarray) -> np.ndarray:
    """(17,) `au_jerk` of each AU column separately (NaN rows skipped; NaN where fewer than 3 frames)."""
    if len(aus) < 3:
        return np.full(aus.shape[1], np.nan)
    j = np.abs(aus[2:] - 2 * aus[1:-1] + aus[:-2])
    ok = ~np.isnan(j).any(axis=1)
    return j[ok].mean(0) if ok.any() else np.full(aus.shape[1], np.nan)
