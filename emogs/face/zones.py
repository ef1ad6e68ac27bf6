"""Per-frame face-zone label maps from the 478 MediaPipe landmarks (cv2.fillPoly, ~0.2 ms at 512 px).

Label ids (`LABEL_NAMES[i]` names id i): 0 background, 1 torso, 2 head-other (these two come from a
person mask in `emogs.data.prepare`, not from here), 3 synergy (cheeks, nasolabial folds, chin, jaw
and temple transitions: the face oval minus the zones below), 4 expression (forehead, brows, eyes and
their sockets, nose), 5 audio (lips and the skin just around them), 6 mouth interior (inside the inner
lip contour: teeth, tongue). Polygons are painted in that order, later ones on top.
"""
from __future__ import annotations

import numpy as np

BACKGROUND, TORSO, HEAD_OTHER, SYNERGY, EXPRESSION, AUDIO, MOUTH_INTERIOR = range(7)
LABEL_NAMES: list[str] = ["background", "torso", "head_other", "synergy", "expression", "audio", "mouth_interior"]

# Closed landmark loops (MediaPipe face-mesh indices, the ones of its FACEMESH_* connection sets).
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
LIPS_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]
# Brow tops (subject's right then left, outer to inner) and the under-eye socket line (outer to inner).
BROW_TOP_R = [156, 70, 63, 105, 66, 107]
BROW_TOP_L = [383, 300, 293, 334, 296, 336]
UNDER_EYE_R = [226, 31, 228, 229, 230, 231, 232, 233, 244]
UNDER_EYE_L = [446, 261, 448, 449, 450, 451, 452, 453, 464]
# Nose: bridge between the eyes, down the right side, around the nostrils, up the left side.
NOSE = [168, 193, 245, 188, 174, 217, 126, 142, 129, 98, 97, 2, 326, 327, 358, 371, 355, 437, 399, 412, 465, 417]
GLABELLA = [107, 55, 193, 245, 122, 6, 351, 465, 417, 285, 336, 9]  # between the brows, down to the nose bridge
FOREHEAD_BASE = BROW_TOP_R + BROW_TOP_L[::-1]  # right outer -> right inner, left inner -> left outer


def zone_polygons(landmarks: np.ndarray, forehead: float = 0.22, lip_margin: float = 0.15) -> dict[int, list[np.ndarray]]:
    """label id -> polygons (K, 2) float in pixels, in painting order.

    forehead: how far above the brows the forehead reaches, as a fraction of the face height (forehead
    landmark 10 to chin 152), along the face's up direction. lip_margin: the audio zone is the outer lip
    contour scaled about its centre by 1 + lip_margin (the skin that moves with speech)."""
    p = np.asarray(landmarks, np.float64)[:, :2]  # (478, 2)
    up = p[10] - p[152]  # chin -> forehead
    base = p[FOREHEAD_BASE]
    top = base + forehead * up
    lips = p[LIPS_OUTER]
    c = lips.mean(0)
    eye_r = np.concatenate([p[BROW_TOP_R], p[UNDER_EYE_R][::-1]])
    eye_l = np.concatenate([p[BROW_TOP_L], p[UNDER_EYE_L][::-1]])
    return {
        SYNERGY: [p[FACE_OVAL]],
        EXPRESSION: [np.concatenate([base, top[::-1]]), eye_r, eye_l, p[GLABELLA], p[NOSE]],
        AUDIO: [c + (lips - c) * (1 + lip_margin)],
        MOUTH_INTERIOR: [p[LIPS_INNER]],
    }


def label_map(landmarks: np.ndarray, height: int, width: int, out: np.ndarray | None = None,
              forehead: float = 0.22, lip_margin: float = 0.15) -> np.ndarray:
    """Landmarks (478, 3) or (478, 2) in pixels -> uint8 (H, W) zone labels (0 where no face zone).

    `out` (H, W) uint8, if given, is painted in place (e.g. a map already holding torso / head-other)."""
    import cv2

    lab = np.zeros((height, width), np.uint8) if out is None else out
    for label, polys in zone_polygons(landmarks, forehead, lip_margin).items():
        for q in polys:  # one at a time: fillPoly leaves overlaps of polygons in one call unfilled
            cv2.fillPoly(lab, [np.round(q * 16).astype(np.int32)], int(label), lineType=cv2.LINE_8, shift=4)
    return lab
