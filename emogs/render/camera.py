"""Small camera helpers (OpenCV convention: x right, y down, z forward; world_to_cam 4x4, K in pixels)."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def intrinsics_from_fov(width: int, height: int, fov_y_deg: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """(3, 3) pinhole K with square pixels, vertical field of view fov_y_deg, principal point at the centre."""
    f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """World -> camera (4, 4) for a camera at eye (3,) looking at target (3,); `up` (3,) is world up (image -y).

    Batched: eye/target (..., 3) -> (..., 4, 4).
    """
    eye, target = torch.as_tensor(eye), torch.as_tensor(target)
    dtype = eye.dtype if eye.is_floating_point() else torch.float32
    eye, target = eye.to(dtype), target.to(dtype)
    up = torch.tensor([0.0, -1.0, 0.0], dtype=dtype) if up is None else torch.as_tensor(up, dtype=dtype)
    z = torch.nn.functional.normalize(target - eye, dim=-1)  # forward
    x = torch.nn.functional.normalize(torch.linalg.cross(-up.expand_as(z), z), dim=-1)  # right
    y = torch.linalg.cross(z, x)  # down
    R = torch.stack([x, y, z], dim=-2)  # (..., 3, 3) rows = camera axes in world
    t = -(R @ eye[..., None])[..., 0]
    M = torch.zeros(eye.shape[:-1] + (4, 4), dtype=dtype)
    M[..., :3, :3] = R
    M[..., :3, 3] = t
    M[..., 3, 3] = 1.0
    return M


def orbit_cameras(n: int, radius: float, height: float = 0.0, target: Tensor | None = None,
                  arc_deg: float = 60.0) -> Tensor:
    """n world->camera matrices (n, 4, 4) on a horizontal arc of `arc_deg` around target, facing it.

    The default world has y down (OpenCV-like); the arc is centred on the -z side of the target so the first
    camera looks along +z.
    """
    target = torch.zeros(3) if target is None else torch.as_tensor(target, dtype=torch.float32)
    angles = torch.linspace(-arc_deg / 2, arc_deg / 2, n) if n > 1 else torch.zeros(1)
    a = torch.deg2rad(angles)
    eye = torch.stack([radius * torch.sin(a), torch.full_like(a, height), -radius * torch.cos(a)], dim=-1) + target
    return look_at(eye, target.expand_as(eye))
