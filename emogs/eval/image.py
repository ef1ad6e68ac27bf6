"""Full-reference image metrics in torch: PSNR and SSIM (differentiable, usable as training losses).

Images follow the project convention: float tensors `(..., H, W, 3)` in [0, 1] (any number of leading
batch dims; channels last). numpy uint8 `(H, W, 3)` frames go through `to_tensor` first.

SSIM is Wang et al. 2004 with their reference settings: 11-tap Gaussian window, sigma 1.5, K1 0.01,
K2 0.03, population (not sample) covariance, mean over the "valid" region (the border of 5 pixels
where the window would leave the image is not counted), computed per channel then averaged. This is
exactly `skimage.metrics.structural_similarity(a, b, channel_axis=-1, data_range=1,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)` (tested to 1e-6 on real frames).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # skimage: int(truncate 3.5 * sigma + 0.5)
SSIM_K1, SSIM_K2 = 0.01, 0.03


def to_tensor(img: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (..., H, W, 3) numpy/tensor -> float (..., H, W, 3) in [0, 1]; float input is passed through."""
    t = torch.as_tensor(img)
    if t.dtype == torch.uint8:
        return t.to(dtype) / 255.0
    return t.to(dtype)


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: (..., H, W, C) x2 -> (...)."""
    return ((a - b) ** 2).mean(dim=(-3, -2, -1))


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, eps: float = 1e-12) -> torch.Tensor:
    """PSNR in dB per image: (..., H, W, C) x2 -> (...). Identical images give 10*log10(range^2/eps)
    (a large finite number, not inf) so averages stay finite."""
    return 10.0 * torch.log10(data_range ** 2 / (mse(a, b) + eps))


def _gauss_1d(sigma: float, radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)  # (2r+1,)


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter without padding: (N, C, H, W) -> (N, C, H-2r, W-2r)."""
    c = x.shape[1]
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ssim_map(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM over the valid region: (..., H, W, C) x2 -> (..., H-10, W-10, C)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    lead, (h, w, c) = a.shape[:-3], a.shape[-3:]
    if min(h, w) <= 2 * SSIM_RADIUS:
        raise ValueError(f"SSIM needs images larger than {2 * SSIM_RADIUS + 1} px, got {h}x{w}")
    x = a.reshape(-1, h, w, c).permute(0, 3, 1, 2)  # (N, C, H, W)
    y = b.reshape(-1, h, w, c).permute(0, 3, 1, 2)
    g = _gauss_1d(SSIM_SIGMA, SSIM_RADIUS, a.dtype, a.device)
    # one conv pass over the 5 moment images
    stack = _filter_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), g)
    mx, my, mxx, myy, mxy = stack.split(c, dim=1)
    vx, vy, cxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.permute(0, 2, 3, 1).reshape(*lead, h - 2 * SSIM_RADIUS, w - 2 * SSIM_RADIUS, c)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """SSIM of (..., H, W, 3) images. reduction "mean": scalar over everything (a loss is `1 - ssim`);
    "none": one value per image, shape (...)."""
    s = ssim_map(a, b, data_range).mean(dim=(-3, -2, -1))
    return s.mean() if reduction == "mean" else s


def psnr_np(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB, data range 1) of two uint8 (H, W, 3) frames, computed in float64."""
    return float(psnr(to_tensor(a, torch.float64), to_tensor(b, torch.float64)))


def ssim_np(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two uint8 (H, W, 3) frames, computed in float64 (matches scikit-image, see module doc)."""
    return float(ssim(to_tensor(a, torch.float64), to_tensor(b, torch.float64)))


def box_crop(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Crop (H, W, ...) to box (x0, y0, x1, y1), half-open, clipped to the image."""
    x0, y0, x1, y1 = box
    h, w = img.shape[:2]
    return img[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]


__all__ = ["to_tensor", "mse", "psnr", "ssim", "ssim_map", "psnr_np", "ssim_np", "box_crop"]
