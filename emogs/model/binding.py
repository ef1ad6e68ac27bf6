"""Gaussians bound to mesh triangles (as in GaussianAvatars): each Gaussian lives in the local frame of one
parent triangle, so it rides the mesh when the mesh moves.

Triangle frame (per triangle, per frame): origin at the centroid; axes t1 = the first edge's direction, n =
the face normal, t2 = n x t1 (a right-handed orthonormal rotation R = [t1 t2 n] as columns); scale
k = sqrt(2 * area), about the edge length, so a Gaussian's local position and size are in units of its
triangle's size and grow or shrink with it. World from local:

    mean  = c + k R mu_local        rotation = R * q_local        scale = k * s_local

Pure torch, batched over frames: vertices (B, V, 3), triangles (T, 3) int.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def triangle_frames(verts: torch.Tensor, tris: torch.Tensor, eps: float = 1e-12
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """verts (..., V, 3), tris (T, 3) -> centroid (..., T, 3), rotation R (..., T, 3, 3) with columns
    [t1, t2, n], scale k (..., T)."""
    a, b, c = verts[..., tris[:, 0], :], verts[..., tris[:, 1], :], verts[..., tris[:, 2], :]
    e1, e2 = b - a, c - a
    cr = torch.linalg.cross(e1, e2, dim=-1)
    area2 = cr.norm(dim=-1)  # twice the area
    n = cr / area2.clamp_min(eps)[..., None]
    t1 = F.normalize(e1, dim=-1, eps=eps)
    t2 = torch.linalg.cross(n, t1, dim=-1)
    R = torch.stack([t1, t2, n], dim=-1)
    return (a + b + c) / 3, R, area2.clamp_min(eps).sqrt()


def quat_mul(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Hamilton product of wxyz quaternions (..., 4)."""
    pw, px, py, pz = p.unbind(-1)
    qw, qx, qy, qz = q.unbind(-1)
    return torch.stack([pw * qw - px * qx - py * qy - pz * qz,
                        pw * qx + px * qw + py * qz - pz * qy,
                        pw * qy - px * qz + py * qw + pz * qx,
                        pw * qz + px * qy - py * qx + pz * qw], -1)


def quat_conj(q: torch.Tensor) -> torch.Tensor:
    """Conjugate of wxyz quaternions (..., 4): the inverse rotation of a unit quaternion."""
    return q * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=q.dtype, device=q.device)


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) wxyz unit quaternions (w >= 0). Of the four textbook
    formulas, each entry uses the one whose pivot (w, x, y or z) is largest: stable for every rotation."""
    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    d21, d02, d10 = R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]
    s01, s02, s12 = R[..., 0, 1] + R[..., 1, 0], R[..., 0, 2] + R[..., 2, 0], R[..., 1, 2] + R[..., 2, 1]
    piv = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    s = piv.clamp_min(1e-12).sqrt() * 2  # (..., 4): 4 * the pivot component, per formula
    cand = torch.stack([
        torch.stack([s[..., 0] / 4, d21 / s[..., 0], d02 / s[..., 0], d10 / s[..., 0]], -1),
        torch.stack([d21 / s[..., 1], s[..., 1] / 4, s01 / s[..., 1], s02 / s[..., 1]], -1),
        torch.stack([d02 / s[..., 2], s01 / s[..., 2], s[..., 2] / 4, s12 / s[..., 2]], -1),
        torch.stack([d10 / s[..., 3], s02 / s[..., 3], s12 / s[..., 3], s[..., 3] / 4], -1)], -2)  # (..., 4, 4)
    i = piv.argmax(-1)[..., None, None].expand(*piv.shape[:-1], 1, 4)
    q = cand.gather(-2, i)[..., 0, :]
    return F.normalize(q * torch.where(q[..., :1] < 0, -1.0, 1.0), dim=-1)


def to_world(local: torch.Tensor, parent: torch.Tensor, centroid: torch.Tensor, R: torch.Tensor,
             k: torch.Tensor) -> torch.Tensor:
    """Local positions (..., N, 3) of Gaussians with parents (N,) -> world (..., N, 3) for frames from
    `triangle_frames` (..., T, ...)."""
    c, Rp, kp = centroid[..., parent, :], R[..., parent, :, :], k[..., parent]
    return c + kp[..., None] * (Rp @ local[..., None])[..., 0]


def to_local(world: torch.Tensor, parent: torch.Tensor, centroid: torch.Tensor, R: torch.Tensor,
             k: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_world`: world positions (..., N, 3) -> local (..., N, 3)."""
    c, Rp, kp = centroid[..., parent, :], R[..., parent, :, :], k[..., parent]
    return (Rp.transpose(-1, -2) @ (world - c)[..., None])[..., 0] / kp[..., None]
