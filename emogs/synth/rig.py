"""Our own expression rig on the MediaPipe canonical face mesh: ARKit/MediaPipe-named blendshapes built
from control-point displacements spread over the mesh with a Gaussian (Shepard) falloff, plus a jaw
rotation for `jawOpen`.

Names follow MediaPipe's 52 blendshapes ("Left" = the subject's left = x > 0 in the canonical frame).
Shapes we do not model (eye gaze, jawLeft/Right/Forward, cheekPuff, lip rolls) have zero deltas.
"""
from __future__ import annotations

import functools

import numpy as np

from emogs.face.aus import BLENDSHAPE_NAMES  # MediaPipe order, 52 incl. "_neutral"
from emogs.synth import mesh as M

BS_INDEX = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}
JAW_OPEN_DEG = 20.0  # jaw rotation at jawOpen = 1

RIGHT_UPPER1 = [247, 30, 29, 27, 28, 56, 190]
RIGHT_UPPER2 = [113, 225, 224, 223, 222, 221, 189]
LEFT_UPPER1 = [467, 260, 259, 257, 258, 286, 414]
LEFT_UPPER2 = [342, 445, 444, 443, 442, 441, 413]
RIGHT_LOWER1 = [25, 110, 24, 23, 22, 26, 112]
LEFT_LOWER1 = [255, 339, 254, 253, 252, 256, 341]
NOSE = [1, 2, 4, 5, 6, 168, 197, 195, 98, 327]


def shepard(v: np.ndarray, ctrl: dict[int, np.ndarray], anchors: list[int], sigma: float) -> np.ndarray:
    """Displacement field (V, 3): control vertices move exactly by their vector, anchors stay, the rest
    follow a Gaussian-weighted average that fades to zero about 2.5 sigma away from every control."""
    idx = list(ctrl) + [a for a in anchors if a not in ctrl]
    d = np.zeros((len(idx), 3), np.float32)
    d[: len(ctrl)] = np.asarray([ctrl[i] for i in ctrl], np.float32)
    p = v[idx]  # (K, 3)
    w = np.exp(-((v[:, None] - p[None]) ** 2).sum(-1) / (2 * sigma ** 2))  # (V, K)
    w0 = np.exp(-(2.5 ** 2) / 2)
    out = (w @ d) / (w.sum(1, keepdims=True) + w0)
    out[list(ctrl)] = d[: len(ctrl)]
    out[[a for a in anchors if a not in ctrl]] = 0
    return out.astype(np.float32)


def _blob(v: np.ndarray, center: np.ndarray, disp: np.ndarray, sigma: float) -> np.ndarray:
    w = np.exp(-((v - center) ** 2).sum(-1) / (2 * sigma ** 2))
    return (w[:, None] * np.asarray(disp, np.float32)).astype(np.float32)


def close_lips(v: np.ndarray) -> np.ndarray:
    """The canonical mesh has slightly parted lips; our neutral subject has them closed."""
    ctrl = {}
    for u, l in zip(M.UPPER_INNER, M.LOWER_INNER):
        mid = 0.5 * (v[u] + v[l])
        ctrl[u] = (mid - v[u]) * np.array([0, 0.97, 0.5])
        ctrl[l] = (mid - v[l]) * np.array([0, 0.97, 0.5])
    anchors = M.LIPS_OUTER[1:10] + M.LIPS_OUTER[11:] + [61, 291]
    return (v + shepard(v, ctrl, anchors, 0.3)).astype(np.float32)


def _regions(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> upper lip (V,) bool, lower lip (V,) bool, jaw weight (V,) in [0, 1]."""
    import cv2

    poly = v[M.LIPS_OUTER, :2].astype(np.float32)
    inside = np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), True) for x, y in v[:, :2]]) >= -0.05
    mx = 0.5 * (v[M.UPPER_INNER, 0] + v[M.LOWER_INNER, 0])
    my = 0.5 * (v[M.UPPER_INNER, 1] + v[M.LOWER_INNER, 1])
    xs = np.r_[v[61, 0], mx, v[291, 0]]
    ys = np.r_[v[61, 1], my, v[291, 1]]
    line = np.interp(v[:, 0], xs, ys)
    line = line + 0.35 * np.clip(np.abs(v[:, 0]) - abs(v[61, 0]), 0, None)
    upper = inside & (v[:, 1] > line - 1e-3)
    lower = inside & ~upper
    upper[M.UPPER_INNER] = True
    lower[M.UPPER_INNER] = False
    lower[M.LOWER_INNER] = True
    upper[M.LOWER_INNER] = False
    t = np.clip((line - v[:, 1]) / 1.3, 0, 1)
    jaw = t * t * (3 - 2 * t)
    jaw[upper] = 0
    jaw[lower] = 1
    jaw[[61, 291, 78, 308]] = 0.35
    return upper, lower, jaw.astype(np.float32)


@functools.lru_cache(maxsize=2)
def build_rig(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """-> deltas (52, 468, 3) cm per unit blendshape weight, jaw weights (468,) for the jawOpen rotation."""
    v = M.head_geometry(seed).face_verts
    upper, lower, jaw = _regions(v)
    D = np.zeros((len(BLENDSHAPE_NAMES), len(v), 3), np.float32)
    lips = np.where(upper | lower)[0]
    lid_anchor_r = [33, 133] + M.RIGHT_LOWER_LID + RIGHT_LOWER1
    lid_anchor_l = [263, 362] + M.LEFT_LOWER_LID + LEFT_LOWER1
    face_anchor = NOSE + [152, 175, 199, 10, 151, 9]

    def put(name: str, delta: np.ndarray) -> None:
        D[BS_INDEX[name]] += delta

    for side, s in (("Left", 1.0), ("Right", -1.0)):
        L = side == "Left"
        up0 = M.LEFT_UPPER_LID if L else M.RIGHT_UPPER_LID
        lo0 = M.LEFT_LOWER_LID if L else M.RIGHT_LOWER_LID
        up1 = LEFT_UPPER1 if L else RIGHT_UPPER1
        up2 = LEFT_UPPER2 if L else RIGHT_UPPER2
        lo1 = LEFT_LOWER1 if L else RIGHT_LOWER1
        corners = [263, 362] if L else [33, 133]
        brow_u = M.LEFT_BROW_UPPER if L else M.RIGHT_BROW_UPPER
        brow_l = M.LEFT_BROW_LOWER if L else M.RIGHT_BROW_LOWER
        outer_brow = [brow_u[0], brow_u[1], brow_l[0], brow_l[1]]
        mid_brow = [brow_u[2], brow_l[2]]
        inner_brow = [brow_u[3], brow_u[4], brow_l[3], brow_l[4]]
        lid_anchor = lid_anchor_l if L else lid_anchor_r
        # eyes
        ctrl = {}
        for u, lo, u1, u2 in zip(up0, lo0, up1, up2):
            d = v[lo] - v[u] + np.array([0, 0.03, 0.06])
            ctrl[u], ctrl[u1], ctrl[u2] = d, 0.55 * d, 0.2 * d
        put(f"eyeBlink{side}", shepard(v, ctrl, corners + lo0 + lo1 + brow_l, 0.35))
        ctrl = {u: np.array([0, 0.22, 0.04]) for u in up0} | {u: np.array([0, 0.12, 0.02]) for u in up1}
        put(f"eyeWide{side}", shepard(v, ctrl, corners + lo0 + brow_l, 0.35))
        ctrl = {lo: np.array([0, 0.16, 0.03]) for lo in lo0} | {lo: np.array([0, 0.1, 0.03]) for lo in lo1}
        ctrl |= {u: np.array([0, -0.08, 0]) for u in up0}
        put(f"eyeSquint{side}", shepard(v, ctrl, corners + brow_l, 0.4))
        # brows
        ctrl = {i: np.array([0, 0.8, 0.05]) for i in outer_brow} | {i: np.array([0, 0.45, 0.03]) for i in mid_brow}
        put(f"browOuterUp{side}", shepard(v, ctrl, lid_anchor + list(up0) + inner_brow + NOSE, 1.0)
            + shepard(v, {i: np.array([0, 0.12, 0]) for i in up1 + up2}, lid_anchor + list(up0), 0.4) * 0.5)
        ctrl = {i: np.array([-s * 0.45, -0.9, 0.15]) for i in inner_brow}
        ctrl |= {i: np.array([-s * 0.25, -0.7, 0.08]) for i in mid_brow}
        ctrl |= {i: np.array([-s * 0.1, -0.45, 0]) for i in outer_brow}
        put(f"browDown{side}", shepard(v, ctrl, lid_anchor + list(up0) + NOSE + [151, 10], 0.9)
            + shepard(v, {u: np.array([0, -0.12, 0]) for u in up0}, lid_anchor, 0.3))
        # cheeks and nose
        cheek = v[425 if L else 205]
        put(f"cheekSquint{side}", _blob(v, cheek + np.array([0, 0.8, 0]), [0, 0.35, 0.15], 1.2)
            + shepard(v, {lo: np.array([0, 0.1, 0.02]) for lo in lo0}, corners, 0.3))
        nose = v[327 if L else 98]
        put(f"noseSneer{side}", _blob(v, nose + np.array([0, 0.6, 0]), [0, 0.35, 0.05], 0.7)
            + _blob(v, v[0] + np.array([s * 1.0, 0, 0]), [0, 0.1, 0], 0.7))
        # mouth corners
        half = lips[v[lips, 0] * s > 0.2]
        corner = [291, 308] if L else [61, 78]
        mid = [0, 13, 14, 17]
        anch = mid + face_anchor + lid_anchor

        def corner_shape(d: np.ndarray, sigma: float = 1.1) -> np.ndarray:
            return shepard(v, {c: d for c in corner}, anch, sigma)
        put(f"mouthSmile{side}", corner_shape(np.array([s * 0.55, 0.6, -0.3]))
            + _blob(v, v[corner[0]] + np.array([s * 1.2, 1.0, 0]), [s * 0.1, 0.25, 0.25], 1.0))
        put(f"mouthFrown{side}", corner_shape(np.array([s * 0.05, -0.5, -0.05])))
        put(f"mouthStretch{side}", corner_shape(np.array([s * 0.6, -0.15, -0.25]))
            + shepard(v, {i: np.array([0, -0.15, 0]) for i in half if lower[i]}, anch, 0.6) * 0.5)
        put(f"mouthDimple{side}", corner_shape(np.array([s * 0.25, 0.0, -0.35])))
        put(f"mouthUpperUp{side}", shepard(v, {i: np.array([0, 0.35, 0.05]) for i in half if upper[i]}, anch, 0.6))
        put(f"mouthLowerDown{side}", shepard(v, {i: np.array([0, -0.35, 0.05]) for i in half if lower[i]}, anch, 0.6))
        put(f"mouthPress{side}", shepard(v, {i: np.array([0, -0.1 if upper[i] else 0.1, -0.05]) for i in half},
                                         anch, 0.5))
    # symmetric mouth shapes
    ctr = v[lips].mean(0)
    face_a = face_anchor + lid_anchor_l + lid_anchor_r
    ctrl = {}
    for i in lips:
        k = 1.0 - 0.4 * min(abs(v[i, 0] - ctr[0]) / 2.5, 1.0)
        ctrl[i] = np.array([-(v[i, 0] - ctr[0]) * 0.2, 0.0, 0.55 * k])
    for i in M.UPPER_INNER:
        ctrl[i] = ctrl[i] + np.array([0, 0.22, 0])
    for i in M.LOWER_INNER:
        ctrl[i] = ctrl[i] + np.array([0, -0.3, 0])
    put("mouthFunnel", shepard(v, ctrl, face_a, 0.6))
    ctrl = {i: np.array([-(v[i, 0] - ctr[0]) * 0.35, -(v[i, 1] - ctr[1]) * 0.1,
                         0.7 * (1.0 - 0.5 * min(abs(v[i, 0]) / 2.5, 1.0))]) for i in lips}
    put("mouthPucker", shepard(v, ctrl, face_a, 0.6))
    ctrl = {i: np.array([0, 0.6, 0]) for i in lips if lower[i]} | {i: np.array([0, -0.25, 0]) for i in lips if upper[i]}
    put("mouthClose", shepard(v, ctrl, face_a, 0.5))
    ctrl = {i: np.array([0, 0.25, 0.1]) for i in lips if lower[i]}
    put("mouthShrugLower", shepard(v, ctrl, face_a, 0.6) + _blob(v, v[199], [0, 0.3, 0.2], 1.2))
    put("mouthShrugUpper", shepard(v, {i: np.array([0, 0.15, 0.05]) for i in lips if upper[i]}, face_a, 0.6))
    D[BS_INDEX["browInnerUp"]] = shepard(
        v, {i: np.array([0, 0.75, 0.05]) for i in [107, 66, 55, 65, 336, 296, 285, 295]}
        | {i: np.array([0, 0.35, 0.03]) for i in [105, 52, 334, 282, 9, 151]},
        lid_anchor_l + lid_anchor_r + M.LEFT_UPPER_LID + M.RIGHT_UPPER_LID + [70, 46, 300, 276, 6, 168, 197], 0.9)
    return D, jaw


def rotation_x(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)


def apply_jaw(v: np.ndarray, weights: np.ndarray, jaw_open: float) -> np.ndarray:
    """Rotate points (N, 3) about the jaw hinge (opening = chin down and back), blended per point by
    `weights` (N,): each point is rotated by weight * angle."""
    if jaw_open == 0:
        return v
    ang = np.radians(JAW_OPEN_DEG * jaw_open) * weights  # (N,)
    p = v - M.JAW_PIVOT
    c, s = np.cos(ang), np.sin(ang)
    # opening rotates the chin (negative y, positive z) towards negative z: positive rotation about +x
    y = c * p[:, 1] - s * p[:, 2]
    z = s * p[:, 1] + c * p[:, 2]
    return np.stack([p[:, 0], y, z], 1) + M.JAW_PIVOT


def deform_face(bs: np.ndarray, seed: int = 0) -> np.ndarray:
    """Blendshape weights (52,) MediaPipe order -> face vertices (468, 3)."""
    D, jaw = build_rig(seed)
    v = M.head_geometry(seed).face_verts
    w = np.clip(np.asarray(bs, np.float32), 0, 1)
    w[0] = 0
    out = v + np.tensordot(w, D, axes=(0, 0))
    return apply_jaw(out, jaw, float(w[BS_INDEX["jawOpen"]])).astype(np.float32)
