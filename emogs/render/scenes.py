"""Synthetic Gaussian scenes for tests, benchmarks and the GPU parity script."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from emogs.render.camera import intrinsics_from_fov, orbit_cameras


@dataclass
class Scene:
    """Gaussians (shared by all cameras) plus C cameras."""

    means: Tensor  # (N, 3)
    quats: Tensor  # (N, 4) wxyz
    scales: Tensor  # (N, 3)
    opacities: Tensor  # (N,)
    colors: Tensor  # (N, D)
    viewmats: Tensor  # (C, 4, 4)
    Ks: Tensor  # (C, 3, 3)
    width: int
    height: int

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> "Scene":
        f = lambda x: x.to(device=device, dtype=dtype or x.dtype)  # noqa: E731
        return Scene(*(f(getattr(self, k)) for k in ("means", "quats", "scales", "opacities", "colors", "viewmats",
                                                     "Ks")), self.width, self.height)

    def params(self) -> list[Tensor]:
        return [self.means, self.quats, self.scales, self.opacities, self.colors]


def _quat_from_z(n: Tensor) -> Tensor:
    """Unit quaternions (wxyz) rotating +z onto the unit vectors n (N, 3)."""
    z = torch.tensor([0.0, 0.0, 1.0], dtype=n.dtype)
    axis = torch.linalg.cross(z.expand_as(n), n)
    w = 1.0 + n[:, 2]
    q = torch.cat([w[:, None], axis], dim=-1)
    flip = w < 1e-6  # n = -z: rotate 180 degrees about x
    q[flip] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=n.dtype)
    return torch.nn.functional.normalize(q, dim=-1)


def head_scene(n: int, size: int = 256, n_cameras: int = 1, channels: int = 3, seed: int = 0,
               fov_deg: float = 20.0) -> Scene:
    """A head-like scene: n flat Gaussians on an ellipsoid (7.5 x 10 x 9 cm semi-axes, the head's canonical frame
    in cm, y down), sized to tile the surface, seen by cameras on a 60-degree arc ~70 cm away filling ~80% of
    the frame. Each Gaussian covers a few pixels at 256 x 256 for 20k Gaussians."""
    g = torch.Generator().manual_seed(seed)
    axes = torch.tensor([7.5, 10.0, 9.0])
    u = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    means = u * axes
    normals = torch.nn.functional.normalize(u / axes, dim=-1)
    area = 4 * math.pi * (float(axes.prod()) ** (2 / 3))  # ~ ellipsoid surface area
    s = 0.7 * math.sqrt(area / n)  # tangent std so that neighbours overlap a little
    scales = torch.stack([torch.full((n,), s), torch.full((n,), s), torch.full((n,), 0.2 * s)], dim=-1)
    scales = scales * (0.6 + 0.8 * torch.rand(n, 1, generator=g))
    quats = _quat_from_z(normals)
    opacities = 0.5 + 0.5 * torch.rand(n, generator=g)
    colors = torch.rand(n, channels, generator=g)
    dist = 12.5 / math.tan(math.radians(fov_deg) / 2)
    viewmats = orbit_cameras(n_cameras, dist)
    K = intrinsics_from_fov(size, size, fov_deg)
    return Scene(means, quats, scales, opacities, colors, viewmats, K.expand(n_cameras, 3, 3).clone(), size, size)


def random_scene(n: int, size: int = 64, n_cameras: int = 2, channels: int = 3, seed: int = 0,
                 spread: float = 1.0, scale: float = 0.05, depth: float = 4.0) -> Scene:
    """Random Gaussians in a cube in front of a fronto-parallel camera arc: varied sizes, rotations, opacities."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * spread
    quats = torch.randn(n, 4, generator=g)
    scales = scale * torch.exp(torch.randn(n, 3, generator=g) * 0.5)
    opacities = 0.05 + 0.9 * torch.rand(n, generator=g)
    colors = torch.rand(n, channels, generator=g)
    viewmats = orbit_cameras(n_cameras, depth, arc_deg=30.0)
    K = intrinsics_from_fov(size, size, 40.0)
    return Scene(means, quats, scales, opacities, colors, viewmats, K.expand(n_cameras, 3, 3).clone(), size, size)
