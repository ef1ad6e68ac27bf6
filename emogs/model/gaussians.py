"""Canonical Gaussians of the head and their initialisation from tracked face geometry.

Everything lives in the head's canonical frame (MediaPipe canonical face model space, cm; the camera
moves). Three kinds of Gaussians, initialised from arrays handed in by the caller (no file access):
- face: area-weighted samples on the canonical face mesh surface;
- shell (hair, ears, neck): head-other pixels of a few frames back-projected at the depth of the head
  origin (between the ears), with a little depth jitter; densification refines them;
- mouth interior (teeth, tongue): a slab of Gaussians 0.3-1.5 cm behind the lips, always in the
  mouth-interior zone, so the audio branch drives them and the open mouth shows a dark cavity with
  teeth instead of a smear of lip colour.
Colours come from the frames they project into; zones from a majority vote of the dataset label maps
over many frames (labels 2-6 -> zones, see `szpab.label_to_zone`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from emogs.model.szpab import NUM_ZONES, ZONE_MOUTH, ZONE_OTHER

# MediaPipe landmark ids: nose tip, inner upper/lower lip centre, mouth corners
NOSE_TIP, LIP_UP, LIP_DOWN, MOUTH_L, MOUTH_R = 1, 13, 14, 78, 308


@dataclass
class View:
    """One training frame used for initialisation: image (H, W, 3) f32 [0, 1], labels (H, W) u8."""
    image: np.ndarray
    labels: np.ndarray
    world_to_cam: np.ndarray  # (4, 4)
    K: np.ndarray  # (3, 3)


def _logit(p: np.ndarray | torch.Tensor) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
    return torch.log(p / (1 - p))


class GaussianSet(nn.Module):
    """Canonical Gaussian parameters. Activations: quats normalised, scales = exp, opacity/colour = sigmoid.

    Per-Gaussian integer buffers (`INDEX_BUFFERS`) follow their Gaussian through densification: the SZ-PAB
    zone, and for Gaussians bound to a mesh (`bound=True`) the parent triangle, in whose local frame the
    means, rotations and scales then live (emogs.model.binding)."""

    PARAMS = ("means", "quats", "log_scales", "opacity_logit", "color_logit")

    def __init__(self, num: int, bound: bool = False) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.zeros(num, 3))  # (N, 3) cm (bound: triangle-local, in triangle sizes)
        self.quats = nn.Parameter(torch.tensor([[1.0, 0, 0, 0]]).repeat(num, 1))  # (N, 4) wxyz
        self.log_scales = nn.Parameter(torch.full((num, 3), -1.0))  # (N, 3)
        self.opacity_logit = nn.Parameter(torch.zeros(num))  # (N,)
        self.color_logit = nn.Parameter(torch.zeros(num, 3))  # (N, 3)
        self.register_buffer("zone", torch.zeros(num, dtype=torch.long))  # (N,) SZ-PAB zone id
        self.bound = bound
        if bound:
            self.register_buffer("parent", torch.zeros(num, dtype=torch.long))  # (N,) parent triangle
            self.register_buffer("parent_scale", torch.ones(num))  # (N,) the parent's size k at the canonical mesh

    @property
    def index_buffers(self) -> tuple[str, ...]:
        return ("zone", "parent", "parent_scale") if self.bound else ("zone",)

    def world_scale_factor(self) -> torch.Tensor:
        """(N,) factor from stored to (canonical) world units: the parent triangle's size for bound
        Gaussians, 1 otherwise (densification thresholds are in world units)."""
        return self.parent_scale if self.bound else torch.ones_like(self.opacity_logit.detach())

    def __len__(self) -> int:
        return self.means.shape[0]

    @classmethod
    def from_arrays(cls, means: np.ndarray, colors: np.ndarray, scales: np.ndarray, zone: np.ndarray,
                    opacity: float = 0.3) -> "GaussianSet":
        g = cls(len(means))
        with torch.no_grad():
            g.means.copy_(torch.as_tensor(means, dtype=torch.float32))
            g.color_logit.copy_(_logit(colors))
            g.log_scales.copy_(torch.log(torch.as_tensor(scales, dtype=torch.float32).clamp_min(1e-4))[:, None].expand(-1, 3))
            g.opacity_logit.fill_(float(_logit(np.float32(opacity))))
            g.zone.copy_(torch.as_tensor(zone, dtype=torch.long))
        return g

    def replace(self, tensors: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]) -> dict[str, nn.Parameter]:
        """Swap in new parameters and index buffers (densification; new objects, as autograd caches shapes
        per parameter). Returns {name: new parameter}; the caller moves optimiser state over."""
        new = {}
        for name in self.PARAMS:
            new[name] = nn.Parameter(tensors[name].detach().contiguous())
            setattr(self, name, new[name])
        for name in self.index_buffers:
            setattr(self, name, buffers[name])
        return new

    def extent(self) -> float:
        """Scene radius (cm): largest distance of a centre from the centroid."""
        m = self.means.detach()
        return float((m - m.mean(0)).norm(dim=-1).max())


# -- initialisation ----------------------------------------------------------------------------------
def _unproject(uv: np.ndarray, depth: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """Pixels (P, 2) at camera depths (P,) -> world points (P, 3)."""
    xy = (uv - K[:2, 2]) / np.diag(K)[:2]
    cam = np.concatenate([xy * depth[:, None], depth[:, None]], -1)  # (P, 3)
    R, t = w2c[:3, :3], w2c[:3, 3]
    return (cam - t) @ R  # R^T (x - t)


def _project(pts: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World (P, 3) -> pixels (P, 2), depth (P,)."""
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    uv = cam[:, :2] / np.maximum(z, 1e-6)[:, None] * np.diag(K)[:2] + K[:2, 2]
    return uv, z


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Area-weighted uniform samples on a triangle mesh: (V, 3), (F, 3) -> (n, 3)."""
    tri = vertices[faces]  # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    idx = rng.choice(len(faces), size=n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], -1)  # (n, 3) barycentric
    return (tri[idx] * w[:, :, None]).sum(1)


def mouth_interior_points(vertices: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A slab of n points 0.3-1.5 cm behind the lip line, spanning the mouth width and lip gap."""
    centroid = vertices.mean(0)
    fwd = vertices[NOSE_TIP] - centroid
    fwd /= np.linalg.norm(fwd)
    x = vertices[MOUTH_R] - vertices[MOUTH_L]
    width = np.linalg.norm(x)
    x /= width
    up = np.cross(fwd, x)
    up /= np.linalg.norm(up)
    c = 0.5 * (vertices[LIP_UP] + vertices[LIP_DOWN])
    a = rng.uniform(-0.42, 0.42, n) * width
    b = rng.uniform(-0.3, 0.25, n) * width
    d = rng.uniform(0.3, 1.5, n)
    return c + a[:, None] * x + b[:, None] * up - d[:, None] * fwd


def shell_points(views: list[View], n: int, rng: np.random.Generator, labels: tuple[int, ...] = (2,),
                 jitter: float = 1.0) -> np.ndarray:
    """Back-project pixels with the given labels (head-other) of a few views at the head origin's depth."""
    pts = []
    for v in views:
        ys, xs = np.nonzero(np.isin(v.labels, labels))
        if len(xs) == 0:
            continue
        k = min(len(xs), max(1, 2 * n // len(views)))
        sel = rng.choice(len(xs), size=k, replace=False)
        uv = np.stack([xs[sel], ys[sel]], -1).astype(np.float64) + 0.5
        z0 = float(v.world_to_cam[2, 3])  # camera depth of the canonical origin (between the ears)
        depth = z0 + rng.uniform(-jitter, jitter, k)
        pts.append(_unproject(uv, depth, v.K, v.world_to_cam))
    if not pts:
        return np.zeros((0, 3))
    allp = np.concatenate(pts)
    return allp[rng.choice(len(allp), size=min(n, len(allp)), replace=False)]


def _per_view(points, views: list[View]) -> tuple[int, list[np.ndarray]]:
    """(P, the points each view sees): one (P, 3) array for every view, or already a list of one per view
    (points that move between views, e.g. Gaussians on a mesh posed by each view's expression)."""
    if isinstance(points, (list, tuple)):
        return (len(points[0]) if len(points) else 0), list(points)
    return len(points), [points] * len(views)


def _visible_pixels(points: np.ndarray, v: View) -> tuple[np.ndarray, np.ndarray]:
    """(ok (P,) bool: in front of the camera and inside the image, px (P, 2) int pixel of each point)."""
    uv, z = _project(points, v.K, v.world_to_cam)
    h, w = v.labels.shape
    px = np.floor(uv).astype(np.int64)
    return (z > 0) & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h), px


def vote_zones(points, views: list[View]) -> np.ndarray:
    """Majority vote of label_to_zone over the views each point projects into: (P, 3) (or one (P, 3) per view)
    -> (P,) zones."""
    n, pts = _per_view(points, views)
    votes = np.zeros((n, NUM_ZONES), np.int32)
    for p, v in zip(pts, views):
        ok, px = _visible_pixels(p, v)
        lab = v.labels[px[ok, 1], px[ok, 0]].astype(np.int64)
        zone = np.clip(lab - 2, 0, NUM_ZONES - 1)
        np.add.at(votes, (np.nonzero(ok)[0], zone), 1)
    out = votes.argmax(1)
    out[votes.sum(1) == 0] = ZONE_OTHER
    return out


def sample_colors(points, views: list[View], default: float = 0.5) -> np.ndarray:
    """Mean image colour at each point's projection over the views that see it: (P, 3) (or one (P, 3) per
    view) -> (P, 3); `default` where no view sees the point."""
    n, pts = _per_view(points, views)
    acc, cnt = np.zeros((n, 3)), np.zeros(n)
    for p, v in zip(pts, views):
        ok, px = _visible_pixels(p, v)
        acc[ok] += v.image[px[ok, 1], px[ok, 0]]
        cnt[ok] += 1
    col = acc / np.maximum(cnt, 1)[:, None]
    col[cnt == 0] = default
    return col


def nn_scale(points: np.ndarray, k: int = 3, chunk: int = 2048) -> np.ndarray:
    """Mean distance to the k nearest neighbours per point (P,), brute force in chunks."""
    p = torch.as_tensor(points, dtype=torch.float32)
    out = []
    for i in range(0, len(p), chunk):
        d = torch.cdist(p[i:i + chunk], p)  # (c, P)
        out.append(d.topk(k + 1, largest=False).values[:, 1:].mean(1))
    return torch.cat(out).numpy()


def init_head_gaussians(mesh_vertices: np.ndarray, mesh_faces: np.ndarray, init_views: list[View],
                        vote_views: list[View], num_face: int, num_shell: int, num_mouth: int,
                        seed: int = 0) -> GaussianSet:
    """Build the canonical Gaussian set (face + shell + mouth interior) from face geometry and frames."""
    rng = np.random.default_rng(seed)
    face = sample_mesh(mesh_vertices, mesh_faces, num_face, rng)
    shell = shell_points(init_views, num_shell, rng)
    mouth = mouth_interior_points(mesh_vertices, num_mouth, rng)
    surf = np.concatenate([face, shell])
    zone = np.concatenate([vote_zones(surf, vote_views), np.full(len(mouth), ZONE_MOUTH)])
    colors = np.concatenate([sample_colors(surf, init_views),
                             np.tile([[0.35, 0.12, 0.12]], (len(mouth), 1)) + rng.normal(0, 0.03, (len(mouth), 3))])
    means = np.concatenate([surf, mouth])
    scales = np.clip(nn_scale(means), 0.02, 2.0)
    return GaussianSet.from_arrays(means, np.clip(colors, 0.02, 0.98), scales, zone)
