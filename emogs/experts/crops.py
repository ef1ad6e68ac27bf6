"""Landmark-aligned crops (mouth window, face) for the experts: numpy geometry + a differentiable sampler.

A crop is defined in MediaPipe's canonical face frame (cm, x to the viewer's right, y up): a rectangle
`CropRegion(x0, x1, y0, y1)` sampled on an (h, w) pixel grid. Per frame, a 2D similarity (rotation,
uniform scale, translation) maps the canonical (x, y) of 15 landmarks that move little with expression
(nose ridge, face sides, eye corners: `emogs.face.aus.RIGID_LANDMARKS`) onto their detected image
positions; the crop is that rectangle carried into the image. Roll, size and position of the face are
removed; yaw and pitch are not (a 2D fit).

    A = crop_affines(landmarks, MOUTH)       # (N, 2, 3): crop pixel (u, v, 1) -> image pixel (x, y)
    crops = sample_crops(frames, A, MOUTH)   # torch (N, H, W, C) -> (N, h, w, C), differentiable

Pixel convention: image coordinates are MediaPipe's (x = normalised x * width, so the image spans
[0, W] x [0, H] and pixel k's centre is at k + 0.5); crop pixel (u, v) has its centre at
(u + 0.5, v + 0.5). `sample_crops` uses `grid_sample(align_corners=False)`, which has the same convention.
Pure: arrays in, arrays out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# RIGID_LANDMARKS of emogs.face.aus and their (x, y) on MediaPipe's canonical face mesh (cm, y up);
# tests/test_experts_crops.py checks these against emogs.face.camera.canonical_face_mesh().
RIGID_IDS = (4, 5, 195, 197, 6, 127, 356, 234, 454, 93, 323, 33, 263, 133, 362)
RIGID_CANONICAL_XY = np.array([
    [0.0, -0.4632], [0.0, 0.3657], [0.0, 1.0594], [0.0, 1.7284], [0.0, 2.4733],
    [-7.7431, 2.3650], [7.7431, 2.3650], [-7.6642, 0.6731], [7.6642, 0.6731], [-7.5422, -1.0493],
    [7.5422, -1.0493], [-4.4459, 2.6640], [4.4459, 2.6640], [-1.8564, 2.5852], [1.8564, 2.5852]],
    np.float64)


@dataclass(frozen=True)
class CropRegion:
    """A rectangle in the canonical face frame (cm; y up: y1 is the top edge) and its pixel size."""
    x0: float
    x1: float
    y0: float
    y1: float
    height: int
    width: int

    def scaled(self, factor: float, height: int | None = None, width: int | None = None) -> "CropRegion":
        """The same centre, each side `factor` times longer (a margin for augmentation), new pixel size."""
        cx, cy = (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2
        hx, hy = (self.x1 - self.x0) / 2 * factor, (self.y1 - self.y0) / 2 * factor
        return CropRegion(cx - hx, cx + hx, cy - hy, cy + hy, height or round(self.height * factor),
                          width or round(self.width * factor))


# Lower face: below the nostrils (subnasale y = -2.1) to the chin (-9.4 closed), cheek to cheek (mouth
# corners x = +-2.5). 6.67 px / cm.
MOUTH = CropRegion(-7.2, 7.2, -9.4, -2.2, 48, 96)
# Whole face: below the chin (-9.4) to the forehead above the brows, ear to ear. 6.05 px / cm.
FACE = CropRegion(-9.25, 9.25, -10.5, 8.0, 112, 112)


def fit_similarity(landmarks: np.ndarray) -> np.ndarray:
    """(N, 478, >=2) image-pixel landmarks -> (N, 2, 3) similarity S with S @ (X, Y, 1) = image (x, y)
    for canonical (X, Y) (cm, y up): the least-squares fit on the rigid landmarks."""
    P = np.asarray(landmarks, np.float64)[..., list(RIGID_IDS), :2]  # (N, K, 2)
    C = RIGID_CANONICAL_XY * np.array([1.0, -1.0])  # canonical with y down, like the image
    pm, cm = P.mean(-2, keepdims=True), C.mean(0)
    p, c = P - pm, C - cm
    # complex least squares: p ~ z c with z = s e^{i theta}
    pz = p[..., 0] + 1j * p[..., 1]
    cz = c[:, 0] + 1j * c[:, 1]
    z = (pz * np.conj(cz)).sum(-1) / (np.abs(cz) ** 2).sum()  # (N,)
    a, b = z.real, z.imag
    R = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], -2)  # (N, 2, 2), y-down canonical -> image
    R = R * np.array([1.0, -1.0])  # canonical y up
    t = pm[..., 0, :] - np.einsum("nij,j->ni", R, cm * np.array([1.0, -1.0]))
    return np.concatenate([R, t[..., None]], -1)


def smooth_similarities(S: np.ndarray, frames: int = 5) -> np.ndarray:
    """Centred moving average of (N, 2, 3) similarities over `frames` frames (edges: shorter windows).
    Removes landmark jitter from the crop position; frames <= 1 returns S."""
    if frames <= 1 or len(S) < 2:
        return S
    from scipy.ndimage import uniform_filter1d

    return uniform_filter1d(S, frames, axis=0, mode="nearest")


def region_affine(region: CropRegion) -> np.ndarray:
    """(3, 3): crop pixel (u, v, 1) -> canonical (X, Y, 1); pixel centres at u + 0.5, v + 0.5."""
    sx = (region.x1 - region.x0) / region.width
    sy = (region.y1 - region.y0) / region.height
    return np.array([[sx, 0.0, region.x0], [0.0, -sy, region.y1], [0.0, 0.0, 1.0]])


def crop_affines(landmarks: np.ndarray, region: CropRegion, smooth: int = 5) -> np.ndarray:
    """(N, 478, >=2) landmarks (one clip, in time order) -> (N, 2, 3) float32 affines mapping crop
    pixel coordinates (u, v, 1) to image pixels (x, y). NaN landmark rows are filled from the nearest
    valid frame; an all-NaN input raises ValueError."""
    L = np.asarray(landmarks, np.float64)
    ok = np.isfinite(L[:, :, :2]).all(axis=(1, 2))
    if not ok.any():
        raise ValueError("no frame with landmarks")
    if not ok.all():
        idx = np.arange(len(L))
        near = idx[ok][np.clip(np.searchsorted(idx[ok], idx), 0, ok.sum() - 1)]
        prev = idx[ok][np.clip(np.searchsorted(idx[ok], idx) - 1, 0, ok.sum() - 1)]
        pick = np.where(np.abs(prev - idx) < np.abs(near - idx), prev, near)
        L = L[pick]
    S = smooth_similarities(fit_similarity(L), smooth)
    return (S @ region_affine(region)).astype(np.float32)


def crop_scale(affines: np.ndarray | torch.Tensor) -> np.ndarray:
    """Image pixels per crop pixel of each affine: (N, 2, 3) -> (N,)."""
    a = affines.detach().cpu().numpy() if isinstance(affines, torch.Tensor) else np.asarray(affines)
    return np.sqrt(np.abs(np.linalg.det(a[:, :, :2])))


def sample_crops(images: torch.Tensor, affines: torch.Tensor | np.ndarray, region: CropRegion,
                 antialias: bool = True) -> torch.Tensor:
    """Crops of (N, H, W, C) float images (channels last) -> (N, h, w, C), bilinear, zeros outside.

    Differentiable w.r.t. `images` (and `affines` when it is a tensor that requires grad). With
    `antialias`, images are first average-pooled by the integer part of the smallest downscale factor
    of the batch (when >= 2), so sampling a small crop from a large frame does not alias."""
    n, H, W, _ = images.shape
    A = torch.as_tensor(affines, dtype=images.dtype, device=images.device)
    if antialias:
        k = int(np.floor(crop_scale(A).min())) if n else 1
        if k >= 2:
            x = F.avg_pool2d(images.permute(0, 3, 1, 2), k, k, ceil_mode=True, count_include_pad=False)
            images = x.permute(0, 2, 3, 1)
            A = A / k  # pooled pixel coordinates are image pixels / k (edge convention)
            H, W = images.shape[1:3]
    h, w = region.height, region.width
    v, u = torch.meshgrid(torch.arange(h, dtype=images.dtype, device=images.device) + 0.5,
                          torch.arange(w, dtype=images.dtype, device=images.device) + 0.5, indexing="ij")
    uv1 = torch.stack([u, v, torch.ones_like(u)], -1)  # (h, w, 3)
    xy = torch.einsum("nij,hwj->nhwi", A, uv1)  # (N, h, w, 2) image pixels
    grid = torch.stack([2 * xy[..., 0] / W - 1, 2 * xy[..., 1] / H - 1], -1)
    out = F.grid_sample(images.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out.permute(0, 2, 3, 1)


def crop_numpy(frames: np.ndarray, affines: np.ndarray, region: CropRegion, batch: int = 64) -> np.ndarray:
    """uint8 (N, H, W, 3) frames -> uint8 (N, h, w, 3) crops (the same sampler, in batches)."""
    out = np.empty((len(frames), region.height, region.width, frames.shape[-1]), np.uint8)
    with torch.no_grad():
        for s in range(0, len(frames), batch):
            x = torch.from_numpy(np.ascontiguousarray(frames[s:s + batch])).float()
            c = sample_crops(x, affines[s:s + batch], region)
            out[s:s + batch] = c.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) RGB -> (...) luma (ITU-R BT.601 weights), differentiable."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device)
    return (rgb * w).sum(-1)


def region_in_region(inner: CropRegion, outer: CropRegion) -> np.ndarray:
    """(2, 3): pixel (u, v, 1) of crop `inner` -> pixel of crop `outer` (both in one canonical frame)."""
    return (np.linalg.inv(region_affine(outer)) @ region_affine(inner))[:2]


def recrop(margin_crops: torch.Tensor, margin_affines: np.ndarray, affines: np.ndarray,
           margin: CropRegion, region: CropRegion) -> torch.Tensor:
    """Crops taken with per-frame `margin_affines` into a larger `margin` region (N, hm, wm, C) -> the crops
    `affines` (N, 2, 3) would have taken from the frames, (N, h, w, C): for streams that cannot keep whole
    frames until the smoothed affines are known. Exact where the result stays inside the margin crop."""
    def full(a):
        a = np.asarray(a, np.float64)
        return np.concatenate([a, np.broadcast_to([[0.0, 0.0, 1.0]], (len(a), 1, 3))], 1)

    rel = (np.linalg.inv(full(margin_affines)) @ full(affines))[:, :2]  # region px -> margin px
    return sample_crops(margin_crops, rel.astype(np.float32), region, antialias=False)
