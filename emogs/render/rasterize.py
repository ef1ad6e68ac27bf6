"""`rasterize()`: one entry point for 3D Gaussian splatting, gsplat on CUDA or our pure-PyTorch tile rasteriser.

Both backends implement gsplat 1.5.3's classic pinhole model; `docs/render.md` lists the exact rules and the
measured parity between them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from emogs.render.project import project_gaussians
from emogs.render.sh import eval_sh
from emogs.render.tiles import bin_tiles, composite, sigma_coefficients

Backend = Literal["auto", "gsplat", "torch"]


@dataclass
class RenderOutput:
    """Rendered images. depth is the expected depth sum(w z) / alpha (gsplat's "ED"); 0 where alpha == 0."""

    colors: Tensor  # (C, H, W, D) composited over the background
    alpha: Tensor  # (C, H, W, 1) accumulated opacity 1 - T_final
    depth: Tensor  # (C, H, W, 1) expected camera-space z of the visible Gaussians
    backend: str = "torch"


@functools.lru_cache(maxsize=1)
def gsplat_available() -> bool:
    """True if gsplat imports (its CUDA kernels compile on first use)."""
    try:
        import gsplat  # noqa: F401
    except Exception:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _warn_no_gsplat() -> None:
    """Once per process: CUDA without gsplat renders through the PyTorch rasteriser, an order of magnitude slower
    (session 6's studio measured 115 ms a frame this way against 8 ms with gsplat, docs/studio.md)."""
    import sys
    print("warning: gsplat is not importable: rendering on CUDA with emogs's PyTorch rasteriser, about ten times "
          "slower (pip install gsplat==1.5.3)", file=sys.stderr, flush=True)


def choose_backend(device: torch.device, backend: Backend = "auto") -> str:
    """Resolve "auto": gsplat for CUDA tensors when it is installed, else the PyTorch rasteriser."""
    if backend not in ("auto", "gsplat", "torch"):
        raise ValueError(f"unknown rasterizer backend {backend!r}")
    if backend == "auto":
        if device.type != "cuda":
            return "torch"
        if gsplat_available():
            return "gsplat"
        _warn_no_gsplat()
        return "torch"
    if backend == "gsplat" and device.type != "cuda":
        raise ValueError("the gsplat backend needs CUDA tensors")
    return backend


def _per_camera(x: Tensor, C: int, base_dim: int, name: str) -> tuple[Tensor, bool]:
    """Broadcast a per-Gaussian tensor of base rank `base_dim` (e.g. 2 for (N,3)) to (C, ...); say if it was batched."""
    if x.dim() == base_dim:
        return x.unsqueeze(0).expand((C,) + tuple(x.shape)), False
    if x.dim() == base_dim + 1 and x.shape[0] == C:
        return x, True
    raise ValueError(f"{name}: expected {base_dim} dims or a leading camera dim of {C}, got shape {tuple(x.shape)}")


def rasterize(
    means: Tensor,  # (N, 3) or (C, N, 3) world
    quats: Tensor,  # (.., N, 4) wxyz, any norm
    scales: Tensor,  # (.., N, 3) linear
    opacities: Tensor,  # (.., N) in [0, 1]
    colors: Tensor,  # (.., N, D) features, or (.., N, K, 3) SH coefficients when sh_degree is set
    viewmats: Tensor,  # (C, 4, 4) world -> camera, OpenCV
    Ks: Tensor,  # (C, 3, 3) pixels
    width: int,
    height: int,
    background: Tensor | None = None,  # (D,) or (C, D)
    sh_degree: int | None = None,
    backend: Backend = "auto",
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int | None = None,
    chunk: int = 64,
    max_elems: int | None = None,
) -> RenderOutput:
    """Render C images of N Gaussians (shared, or one set per camera). Differentiable w.r.t. all Gaussian inputs.

    tile_size/chunk/max_elems tune the PyTorch backend only (gsplat always uses 16 px tiles; results are equal):
    tile_size None picks 4 px tiles when the median splat radius is <= 4 px, else 8; max_elems bounds one
    (tiles x pixels x Gaussians) block; default 2M elements on CPU, 32M on CUDA.
    """
    C = viewmats.shape[0]
    if viewmats.shape != (C, 4, 4) or Ks.shape != (C, 3, 3):
        raise ValueError(f"viewmats must be (C,4,4) and Ks (C,3,3), got {tuple(viewmats.shape)}, {tuple(Ks.shape)}")
    viewmats, Ks = viewmats.to(means), Ks.to(means)  # cameras follow the Gaussians' dtype and device
    means, b0 = _per_camera(means, C, 2, "means")
    quats, b1 = _per_camera(quats, C, 2, "quats")
    scales, b2 = _per_camera(scales, C, 2, "scales")
    opacities, b3 = _per_camera(opacities, C, 1, "opacities")
    colors, b4 = _per_camera(colors, C, 2 if sh_degree is None else 3, "colors")
    batched = b0 or b1 or b2 or b3 or b4
    N = means.shape[1]
    for name, x in (("quats", quats), ("scales", scales), ("opacities", opacities), ("colors", colors)):
        if x.shape[1] != N:
            raise ValueError(f"{name} has {x.shape[1]} Gaussians, means has {N}")
    D = 3 if sh_degree is not None else colors.shape[-1]
    if background is not None:
        background = background.to(means.dtype).expand(C, D) if background.dim() == 1 else background
    kind = choose_backend(means.device, backend)
    if max_elems is None:
        max_elems = 1 << 25 if means.device.type == "cuda" else 1 << 21
    if kind == "gsplat":
        return _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                 background, sh_degree, near, far, eps2d, batched)
    return _rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width, height, background,
                            sh_degree, near, far, eps2d, tile_size, chunk, max_elems)


def _rasterize_torch(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                     viewmats: Tensor, Ks: Tensor, width: int, height: int, background: Tensor | None,
                     sh_degree: int | None, near: float, far: float, eps2d: float, tile_size: int | None, chunk: int,
                     max_elems: int) -> RenderOutput:
    """Pure-PyTorch path; all per-Gaussian tensors already have a leading camera dim C."""
    C, N = means.shape[:2]
    proj = project_gaussians(means, quats, scales, opacities, viewmats, Ks, width, height, near, far, eps2d)
    if sh_degree is not None:
        campos = torch.linalg.inv(viewmats)[:, None, :3, 3]  # (C, 1, 3)
        colors = eval_sh(sh_degree, means - campos, colors)  # (C, N, 3)
    feats = torch.cat([colors, proj.depths[..., None]], dim=-1)  # (C, N, D+1): depth rides as a channel
    if tile_size is None:
        tile_size = auto_tile_size(proj.radii, proj.valid)
    layout = bin_tiles(proj.means2d, proj.radii, proj.depths, proj.valid, width, height, tile_size)
    coef = sigma_coefficients(proj.means2d.reshape(C * N, 2), proj.conics.reshape(C * N, 3), layout)
    pid = layout.pair_ids  # (M,) per intersection: which (camera, Gaussian)
    accum, T = composite(coef, opacities.reshape(-1)[pid], feats.reshape(C * N, feats.shape[-1])[pid], layout,
                         width, height, chunk, max_elems)
    T = T[..., None]  # (C, H, W, 1)
    rgb = accum[..., :-1]
    if background is not None:
        rgb = rgb + T * background[:, None, None, :]
    alpha = 1.0 - T
    depth = accum[..., -1:] / alpha.clamp_min(1e-10)
    return RenderOutput(rgb, alpha, depth, "torch")


def auto_tile_size(radii: Tensor, valid: Tensor) -> int:
    """4 px tiles for small splats (less wasted pixel x Gaussian work), else 8 (less per-tile overhead)."""
    r = radii[valid].amax(dim=-1)
    if r.numel() == 0:
        return 8
    return 4 if float(r.float().median()) <= 4 else 8


def _rasterize_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                      viewmats: Tensor, Ks: Tensor, width: int, height: int, background: Tensor | None,
                      sh_degree: int | None, near: float, far: float, eps2d: float, batched: bool) -> RenderOutput:
    """gsplat 1.5.3 `rasterization` in classic mode; per-camera Gaussians become a batch of one-camera renders."""
    import gsplat

    kw = dict(near_plane=near, far_plane=far, eps2d=eps2d, sh_degree=sh_degree, packed=False,
              render_mode="RGB+ED", rasterize_mode="classic")
    if batched:  # batch dim C, one camera each
        out, alphas, _ = gsplat.rasterization(
            means, quats, scales, opacities, colors, viewmats[:, None], Ks[:, None], width, height,
            backgrounds=None if background is None else background[:, None], **kw)
        out, alphas = out[:, 0], alphas[:, 0]
    else:
        out, alphas, _ = gsplat.rasterization(
            means[0], quats[0], scales[0], opacities[0], colors[0], viewmats, Ks, width, height,
            backgrounds=background, **kw)
    return RenderOutput(out[..., :-1], alphas, out[..., -1:], "gsplat")
