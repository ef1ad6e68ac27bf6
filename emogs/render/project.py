"""EWA projection of 3D Gaussians to screen space (gsplat 1.5.3 "classic" pinhole model), in plain PyTorch.

Everything here is differentiable through autograd and vectorised over (images I, Gaussians N).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat: Gaussians / pixels with alpha below this are skipped
MAX_EXTEND = 3.33  # gsplat 1.5.3 bounding-box extent in standard deviations (opacity-aware below it)


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Quaternions (..., 4) wxyz (any norm) -> rotation matrices (..., 3, 3)."""
    q = torch.nn.functional.normalize(quats, dim=-1)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """(..., 4) wxyz quats, (..., 3) linear scales -> covariance R S S^T R^T (..., 3, 3)."""
    m = quat_to_rotmat(quats) * scales[..., None, :]  # (..., 3, 3) = R @ diag(s)
    return m @ m.transpose(-1, -2)


@dataclass
class Projected:
    """Screen-space Gaussians for every (image, Gaussian) pair. Entries where `valid` is False are junk."""

    means2d: Tensor  # (I, N, 2) pixels
    conics: Tensor  # (I, N, 3) inverse 2D covariance (a, b, c) = [[a, b], [b, c]]
    depths: Tensor  # (I, N) camera-space z
    radii: Tensor  # (I, N, 2) int64 pixel half-extent of the bounding box (no grad)
    valid: Tensor  # (I, N) bool


def project_gaussians(
    means: Tensor,  # (I, N, 3) world
    quats: Tensor,  # (I, N, 4)
    scales: Tensor,  # (I, N, 3)
    opacities: Tensor,  # (I, N)
    viewmats: Tensor,  # (I, 4, 4) world -> camera (OpenCV)
    Ks: Tensor,  # (I, 3, 3)
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
) -> Projected:
    """EWA splatting projection as gsplat's fused projection kernel (pinhole, classic mode)."""
    R = viewmats[:, None, :3, :3]  # (I, 1, 3, 3)
    t = viewmats[:, None, :3, 3]  # (I, 1, 3)
    mean_c = (R @ means[..., None])[..., 0] + t  # (I, N, 3)
    x, y, z = mean_c.unbind(-1)
    in_range = (z >= near) & (z <= far)
    z = torch.where(in_range, z, torch.ones_like(z))  # keep junk entries finite (no NaN gradients)

    cov_c = R @ covariance_3d(quats, scales) @ R.transpose(-1, -2)  # (I, N, 3, 3)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # (I, 1)
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    # clamp the Jacobian's x/z, y/z to 1.3x the field of view (gsplat's limits, asymmetric for off-centre cx, cy)
    rz = 1.0 / z
    tx = z * torch.minimum((width - cx) / fx + 0.3 * tan_x, torch.maximum(-(cx / fx + 0.3 * tan_x), x * rz))
    ty = z * torch.minimum((height - cy) / fy + 0.3 * tan_y, torch.maximum(-(cy / fy + 0.3 * tan_y), y * rz))
    zero = torch.zeros_like(z)
    J = torch.stack([
        torch.stack([fx * rz, zero, -fx * tx * rz * rz], dim=-1),
        torch.stack([zero, fy * rz, -fy * ty * rz * rz], dim=-1),
    ], dim=-2)  # (I, N, 2, 3)
    cov2d = J @ cov_c @ J.transpose(-1, -2)  # (I, N, 2, 2)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)  # (I, N, 2)

    # +eps2d low-pass on the diagonal, then invert
    c00 = cov2d[..., 0, 0] + eps2d
    c11 = cov2d[..., 1, 1] + eps2d
    c01 = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    det = c00 * c11 - c01 * c01
    det_ok = det > 0
    det = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([c11 / det, -c01 / det, c00 / det], dim=-1)  # (I, N, 3)

    with torch.no_grad():
        op_ok = opacities >= ALPHA_THRESHOLD
        op = torch.where(op_ok, opacities, torch.ones_like(opacities))
        extend = torch.clamp(torch.sqrt(2.0 * torch.log(op / ALPHA_THRESHOLD)), max=MAX_EXTEND)
        rx = torch.ceil(extend * torch.sqrt(c00.clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(c11.clamp_min(0)))
        big_enough = (rx > radius_clip) | (ry > radius_clip)
        mx, my = means2d[..., 0], means2d[..., 1]
        on_screen = (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        valid = in_range & det_ok & op_ok & big_enough & on_screen
        radii = torch.stack([rx, ry], dim=-1).to(torch.int64) * valid[..., None]
    return Projected(means2d, conics, mean_c[..., 2], radii, valid)
