"""Prepare stage "masks": per-frame person / head / torso masks, face zones, and the background plate.

No segmentation network is available offline, so the person mask combines three cheap cues:
1. GrabCut on keyframes (about one per second, at <= 256 px), seeded from the landmarks: the face hull
   and a neck column are sure foreground, a head ellipse and a torso trapezoid below the chin probable
   foreground, the frame away from the head and above the shoulders sure background.
2. Between keyframes the nearest keyframe mask is moved with the face (head part by the face-centre
   displacement, torso part unmoved).
3. When the camera is static (checked: keyframe background pixels agree with their median), the
   background plate (per-pixel median over keyframes where the pixel was background) re-decides a
   band of pixels around the mask edge by colour difference, so the edge follows hair and shoulders.
Head-other (2) = person above mouth level; between the chin and mouth level within 0.62 face widths of
the face axis (shoulders may rise that high at the sides); below the chin a neck column down to a
neck line `neck_drop` face heights below the chin (perpendicular to the face's vertical axis);
torso (1) = the rest of the person. Face zones 3-6 from `emogs.face.zones.label_map` overwrite both.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

BACKGROUND, TORSO, HEAD_OTHER = 0, 1, 2
CHIN, FOREHEAD = 152, 10  # MediaPipe face-mesh landmark ids
LABEL_NAMES = ["background", "torso", "head_other", "synergy", "expression", "audio", "mouth_interior"]


@dataclass(frozen=True)
class MaskConfig:
    work_size: int = 256         # masks are computed at this resolution (<= S) then upsampled
    keyframe_seconds: float = 1.0
    max_keyframes: int = 64
    grabcut_iters: int = 3
    band_px: int = 5             # edge band (work px) re-decided by background difference
    diff_threshold: float = 28.0  # colour distance (0-255 scale) meaning "not the background"
    static_tolerance: float = 10.0  # median keyframe-vs-plate difference on background for "static camera"
    neck_drop: float = 0.3       # neck line: face heights below the chin


@dataclass
class FaceGeom:
    """Per-frame face frame in pixels: centre, up axis (unit, towards forehead), height, width."""

    centre: np.ndarray  # (2,)
    up: np.ndarray      # (2,)
    height: float
    width: float
    chin: np.ndarray    # (2,)


def face_geom(lm: np.ndarray) -> FaceGeom:
    """(478, 3) landmarks (px) -> FaceGeom."""
    chin, top = lm[CHIN, :2].astype(np.float64), lm[FOREHEAD, :2].astype(np.float64)
    up = top - chin
    h = float(np.linalg.norm(up)) + 1e-6
    xs = lm[:, :2] @ np.array([-up[1], up[0]]) / h  # coordinate across the face
    return FaceGeom((chin + top) / 2, up / h, h, float(np.ptp(xs)), chin)


def _poly(img: np.ndarray, pts: np.ndarray, value: int) -> None:
    cv2.fillConvexPoly(img, np.round(pts).astype(np.int32), value)


def _frame_pts(g: FaceGeom, coords: list[tuple[float, float]]) -> np.ndarray:
    """Points given as (across, along-up) in units of face width/height, relative to the face centre."""
    side = np.array([-g.up[1], g.up[0]])
    # image y points down; `up` already points towards the forehead in image coordinates
    return np.array([g.centre + a * g.width * side + b * g.height * g.up for a, b in coords])


def grabcut_seeds(lm: np.ndarray, h: int, w: int) -> np.ndarray:
    """GrabCut initial mask (h, w) uint8 in GC_* values from landmarks (478, 3) in the same pixels."""
    g = face_geom(lm)
    m = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    # sure background: far from the head and above the shoulders
    far = np.zeros((h, w), np.uint8)
    cv2.ellipse(far, tuple(int(v) for v in g.centre + 0.25 * g.height * g.up),
                (int(1.25 * g.width), int(1.2 * g.height)), float(np.degrees(np.arctan2(g.up[0], -g.up[1]))),
                0, 360, 1, -1)
    yy = np.arange(h)[:, None]
    above_shoulders = np.broadcast_to(yy < g.chin[1] - 0.1 * g.height, (h, w))  # shoulders sit lower
    m[(far == 0) & above_shoulders] = cv2.GC_BGD
    # probable foreground: head ellipse (hair, ears) and torso trapezoid down to the bottom edge
    cv2.ellipse(m, tuple(int(v) for v in g.centre + 0.15 * g.height * g.up),
                (int(0.7 * g.width), int(0.75 * g.height)), float(np.degrees(np.arctan2(g.up[0], -g.up[1]))),
                0, 360, cv2.GC_PR_FGD, -1)
    down = max(4.0, (h - g.centre[1]) / g.height + 1)
    torso = [(-0.45, -0.5), (0.45, -0.5), (1.3, -0.95), (2.5, -down), (-2.5, -down), (-1.3, -0.95)]
    cv2.fillPoly(m, [np.round(_frame_pts(g, torso)).astype(np.int32)], cv2.GC_PR_FGD)
    # below the shoulder line the frame is mostly body: start it as probable foreground, so the
    # foreground model learns the clothes and GrabCut carves the background out from above
    low = m[int(max(0, g.chin[1] - 0.1 * g.height)):]
    low[low != cv2.GC_FGD] = cv2.GC_PR_FGD
    # sure foreground: the face hull and a neck column down to the bottom
    hull = cv2.convexHull(np.round(lm[:468, :2]).astype(np.int32))
    cv2.fillConvexPoly(m, hull, cv2.GC_FGD)
    _poly(m, _frame_pts(g, [(-0.2, -0.45), (0.2, -0.45), (0.25, -down), (-0.25, -down)]), cv2.GC_FGD)
    # the chest / shoulders: the bottom rows across about two face widths, below the chin
    y0 = int(max(g.chin[1] + 0.1 * g.height, h - 0.06 * h))
    if y0 < h:
        x0, x1 = int(g.chin[0] - 1.0 * g.width), int(g.chin[0] + 1.0 * g.width)
        m[y0:, max(0, x0):max(0, x1)] = cv2.GC_FGD
    return m


def grabcut_person(rgb: np.ndarray, lm: np.ndarray, iters: int = 3) -> np.ndarray:
    """One frame (h, w, 3) + landmarks in its pixels -> person mask (h, w) bool."""
    m = grabcut_seeds(lm, *rgb.shape[:2])
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    # GrabCut's k-means start draws from OpenCV's (per-thread) RNG: seed it, so a keyframe's mask does not
    # depend on what ran before it in that thread (keyframes are cut in parallel threads)
    cv2.setRNGSeed(0x5eed)
    try:
        cv2.grabCut(np.ascontiguousarray(rgb), m, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate seeds (e.g. no background seen): keep the seeds
        pass
    return clean_mask((m == cv2.GC_FGD) | (m == cv2.GC_PR_FGD), lm)


def clean_mask(mask: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Keep the component holding the face and large ones touching the bottom edge (torso), fill holes,
    smooth the edge. (h, w) bool -> bool."""
    m = mask.astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    m = cv2.morphologyEx(cv2.morphologyEx(m, cv2.MORPH_OPEN, k), cv2.MORPH_CLOSE, k)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(m)
    if n > 2:
        c = np.clip(np.round(lm[1, :2]).astype(int), 0, [m.shape[1] - 1, m.shape[0] - 1])  # nose tip
        face = comp[c[1], c[0]]
        h, w = m.shape
        bottom = set(np.unique(comp[-1]).tolist())
        keep = [j for j in range(1, n) if j == face or (j in bottom and stats[j, cv2.CC_STAT_AREA] > 0.01 * h * w)]
        if not keep:
            keep = [1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
        lut = np.zeros(n, np.uint8)  # component id -> kept (a table lookup instead of np.isin)
        lut[keep] = 1
        m = lut[comp]
    # fill holes: background not reachable from the border. Components of the background; label 0 of
    # `comp` is the person itself (kept), and so are background components that touch the border
    n, comp = cv2.connectedComponents(1 - m)
    if n <= 2:  # the background is one piece (or there is none): no holes
        return m.astype(bool)
    fill = np.ones(n, bool)
    fill[np.concatenate([comp[0], comp[-1], comp[:, 0], comp[:, -1]])] = False
    fill[0] = True
    return fill[comp]


def keyframe_indices(n: int, fps: float, cfg: MaskConfig) -> np.ndarray:
    k = int(np.clip(round(n / (cfg.keyframe_seconds * fps)), 2, cfg.max_keyframes))
    k = min(k, n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))


def masked_median(vals: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (lower) median over axis 0 of `vals` (K, h, w, C) where `valid` (K, h, w) -> (median (h, w, C)
    f32, count (h, w)). Pixels with no valid sample get 0. (One sort; no NaN warnings.)

    uint8 values are sorted as uint16 with 256 marking invalid samples, along a contiguous last axis
    (4-5x faster than float32 with inf along axis 0; the same result)."""
    count = valid.sum(0)
    idx = np.maximum(count - 1, 0) // 2  # (h, w)
    if vals.dtype == np.uint8:
        v = np.where(valid[..., None], vals.astype(np.uint16), np.uint16(256))
        v = np.ascontiguousarray(np.moveaxis(v, 0, -1))  # (h, w, C, K)
        v.sort(axis=-1)
        med = np.take_along_axis(v, np.broadcast_to(idx[..., None, None], (*v.shape[:-1], 1)), -1)[..., 0]
        med = med.astype(np.float32)
    else:
        v = np.where(valid[..., None], vals.astype(np.float32), np.inf)
        v.sort(axis=0)
        med = np.take_along_axis(v, np.broadcast_to(idx[None, ..., None], (1, *v.shape[1:])), 0)[0]
    med[count == 0] = 0
    return med, count


def background_from_keyframes(frames: np.ndarray, person: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Keyframes (K, h, w, 3) u8 + person masks (K, h, w) bool -> (plate (h, w, 3) f32, seen (h, w) bool,
    median background difference of keyframes against the plate (camera-motion score))."""
    grow = np.stack([cv2.dilate(p.astype(np.uint8), np.ones((13, 13), np.uint8)) > 0 for p in person])
    plate, count = masked_median(frames, ~grow)  # (h, w, 3), (h, w)
    seen = count >= max(3, int(np.ceil(0.25 * len(frames))))
    diff = np.abs(frames.astype(np.float32) - plate[None]).max(-1)  # (K, h, w)
    valid = ~grow & seen[None]
    motion = float(np.median(diff[valid])) if valid.any() else float("inf")
    return plate, seen, motion


class PersonMasker:
    """Per-frame person masks at work resolution from keyframe GrabCut + optional background difference."""

    def __init__(self, key_idx: np.ndarray, key_masks: np.ndarray, key_lm: np.ndarray,
                 plate: np.ndarray | None, seen: np.ndarray | None, cfg: MaskConfig) -> None:
        self.key_idx, self.key_masks, self.key_lm = key_idx, key_masks, key_lm
        self.plate, self.seen, self.cfg = plate, seen, cfg
        self._band_k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cfg.band_px + 1,) * 2)

    def __call__(self, i: int, rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
        """Frame index, frame (h, w, 3) u8 and landmarks (478, 3) at work resolution -> (h, w) bool."""
        k = int(np.argmin(np.abs(self.key_idx - i)))
        m = self._moved(self.key_masks[k], self.key_lm[k], lm)
        if self.plate is not None:
            m = self._refine(m, rgb)
        hull = cv2.convexHull(np.round(lm[:468, :2]).astype(np.int32))
        m8 = m.astype(np.uint8)
        cv2.fillConvexPoly(m8, hull, 1)
        return clean_mask(m8 > 0, lm)

    def _moved(self, mask: np.ndarray, lm_from: np.ndarray, lm_to: np.ndarray) -> np.ndarray:
        """Warp a keyframe mask with the face displacement: fully at and above the chin, fading to
        none one face height below it (the torso moves less than the head; no tear at the neck)."""
        d = (lm_to[:, :2].mean(0) - lm_from[:, :2].mean(0)).astype(np.float32)
        if np.abs(d).max() < 0.5:
            return mask
        h, w = mask.shape
        g = face_geom(lm_from)
        yy, xx = _grid(h, w)
        yy, xx = yy - 0.5, xx - 0.5
        wgt = np.clip((g.chin[1] + g.height - yy) / g.height, 0.0, 1.0).astype(np.float32)
        moved = cv2.remap(mask.astype(np.uint8), (xx - wgt * d[0]).astype(np.float32), (yy - wgt * d[1]).astype(np.float32), cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REPLICATE)
        return moved > 0

    def _refine(self, m: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        m8 = m.astype(np.uint8)
        band = (cv2.dilate(m8, self._band_k) > 0) & ~(cv2.erode(m8, self._band_k) > 0) & self.seen
        diff = np.abs(cv2.GaussianBlur(rgb, (3, 3), 0)[band].astype(np.float32) - self.plate[band]).max(-1)
        out = m.copy()
        out[band] = diff > self.cfg.diff_threshold
        return out


@functools.lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (yy, xx), each (h, w) f32, read-only."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def split_head(person: np.ndarray, lm: np.ndarray, drop: float = 0.3) -> np.ndarray:
    """Head part (hair, ears, neck) of a person mask (h, w) bool, from landmarks in its pixels."""
    h, w = person.shape
    g = face_geom(lm)
    # separable: the same float64 arithmetic as on full (h, w) grids, done per row and column and added
    xs = np.arange(w, dtype=np.float32) + 0.5 - g.chin[0]  # (w,)
    ys = (np.arange(h, dtype=np.float32) + 0.5 - g.chin[1])[:, None]  # (h, 1)
    along = xs * g.up[0] + ys * g.up[1]  # (h, w), > 0 above the chin
    across = np.abs(xs * -g.up[1] + ys * g.up[0])
    neck = (along > -drop * g.height) & (across < 0.42 * g.width)
    # from the chin up to mouth level only the head's width (shoulders can rise that high at the sides);
    # above it everything of the person is head (wide hair)
    jaw = (along >= 0) & (across < 0.62 * g.width)
    return person & ((along >= 0.35 * g.height) | jaw | neck)


def compose_labels(person: np.ndarray, lm: np.ndarray, zones: np.ndarray, drop: float) -> np.ndarray:
    """Person mask (S, S) bool + landmarks (S px) + zone map (S, S) u8 {0,3..6} -> labels (S, S) u8."""
    lab = person.astype(np.uint8)  # TORSO where person, BACKGROUND elsewhere
    lab[split_head(person, lm, drop)] = HEAD_OTHER
    return np.maximum(lab, zones, out=lab)  # zone ids (3-6) exceed 0-2: the zones overwrite


def upsample_mask(m: np.ndarray, size: int) -> np.ndarray:
    """(h, w) bool at work resolution -> (size, size) bool with smooth (bilinear) edges."""
    if m.shape[0] == size:
        return m
    return cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) > 0.5


def background_plate(frames: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Plate (S, S, 3) u8: keyframes (K, S, S, 3) u8 with head masks (K, S, S) bool.

    Per pixel, the median over keyframes where the head did not cover it (background or torso as it
    usually is); pixels the head covered in every keyframe are inpainted from their surroundings."""
    grow = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for m in head])
    plate, count = masked_median(frames, ~grow)
    hole = count == 0
    plate = plate.clip(0, 255).astype(np.uint8)
    if hole.any():
        plate = inpaint(plate, hole)
    return plate


def inpaint(img: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill `hole` (bool) of an RGB u8 image: Telea inpainting on a half-size copy (big holes), pasted
    back into the hole only, with a light blur to hide the lower resolution."""
    h, w = hole.shape
    small = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    hs = cv2.resize(hole.astype(np.uint8), (w // 2, h // 2), interpolation=cv2.INTER_NEAREST)
    hs = cv2.dilate(hs, np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(small, hs, 5, cv2.INPAINT_TELEA)
    up = cv2.GaussianBlur(cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR), (5, 5), 0)
    out = img.copy()
    out[hole] = up[hole]
    return out
