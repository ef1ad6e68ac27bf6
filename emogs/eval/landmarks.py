"""Landmark-based measures on MediaPipe FaceLandmarker output (478 points, x/y in pixels).

LMD (landmark distance) is the mean 2D Euclidean distance between corresponding predicted and
ground-truth landmarks, in pixels of a frame rescaled to `LMD_REF_WIDTH` (512 px wide), averaged over
the landmark set and then over frames:
  - `lmd_mouth`: the 40 lip landmarks of MediaPipe's FACEMESH_LIPS (20 outer + 20 inner contour), `LIPS`.
  - `lmd_face`: all 468 face-mesh landmarks (the 10 iris points 468-477 are left out), `FACE`.
No alignment (no Procrustes): head pose errors count, as in the talking-head papers' LMD.
"""
from __future__ import annotations

import numpy as np

LMD_REF_WIDTH = 512
LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
LIPS_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]
LIPS: list[int] = LIPS_OUTER + LIPS_INNER
FACE: list[int] = list(range(468))
# inner-lip (upper, lower) pairs at the centre and either side, and the outer eye corners (face scale)
INNER_LIP_PAIRS = [(13, 14), (82, 87), (312, 317)]
EYE_OUTER = (33, 263)


def lmd(pred: np.ndarray, gt: np.ndarray, idx: list[int], width: int) -> np.ndarray:
    """Per-frame mean landmark distance at LMD_REF_WIDTH: (N, 478, >=2) x2 -> (N,) (NaN where a face is missing)."""
    d = np.linalg.norm(pred[:, idx, :2] - gt[:, idx, :2], axis=-1)  # (N, K)
    return d.mean(axis=1) * (LMD_REF_WIDTH / width)


def face_box(lm: np.ndarray, width: int, height: int, margin: float = 0.05) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1), half-open, of the 468 face-mesh points of one (478, >=2) frame,
    grown by `margin` of its size on each side and clipped to the image."""
    xy = lm[:468, :2]
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return (max(0, int(np.floor(x0 - mx))), max(0, int(np.floor(y0 - my))),
            min(width, int(np.ceil(x1 + mx))), min(height, int(np.ceil(y1 + my))))


def mouth_opening(lm: np.ndarray) -> np.ndarray:
    """Inner-lip gap normalised by face size: (N, 478, >=2) -> (N,). Mean 2D distance of the three
    upper/lower inner-lip pairs `INNER_LIP_PAIRS`, divided by the outer-eye-corner distance."""
    gap = np.mean([np.linalg.norm(lm[:, a, :2] - lm[:, b, :2], axis=-1) for a, b in INNER_LIP_PAIRS], axis=0)
    scale = np.linalg.norm(lm[:, EYE_OUTER[0], :2] - lm[:, EYE_OUTER[1], :2], axis=-1)
    return gap / np.maximum(scale, 1e-6)
