"""Dense reference rasteriser: every pixel against every Gaussian, plain autograd. For tests on tiny scenes only.

It shares the projection with the tile rasteriser but composites independently (direct sigma, one global depth
sort, no tiles, no custom backward), so it checks the tile binning, the chunking and the hand-written gradients.
"""
from __future__ import annotations

import torch
from torch import Tensor

from emogs.render.project import ALPHA_THRESHOLD, project_gaussians
from emogs.render.rasterize import RenderOutput, _per_camera
from emogs.render.sh import eval_sh
from emogs.render.tiles import MAX_ALPHA, T_THRESHOLD


def rasterize_dense(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                    viewmats: Tensor, Ks: Tensor, width: int, height: int, background: Tensor | None = None,
                    sh_degree: int | None = None, near: float = 0.01, far: float = 1e10,
                    eps2d: float = 0.3) -> RenderOutput:
    """Same contract as `rasterize`; memory O(C * H * W * N)."""
    C = viewmats.shape[0]
    means, quats, scales = (_per_camera(x, C, 2, "x")[0] for x in (means, quats, scales))
    opacities = _per_camera(opacities, C, 1, "opacities")[0]
    colors = _per_camera(colors, C, 2 if sh_degree is None else 3, "colors")[0]
    if background is not None and background.dim() == 1:
        background = background.expand(C, -1)
    p = project_gaussians(means, quats, scales, opacities, viewmats, Ks, width, height, near, far, eps2d)
    if sh_degree is not None:
        campos = torch.linalg.inv(viewmats)[:, None, :3, 3]
        colors = eval_sh(sh_degree, means - campos, colors)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means.dtype), torch.arange(width, dtype=means.dtype),
                            indexing="ij")
    pix = torch.stack([xs, ys], dim=-1).reshape(-1, 2).to(means.device) + 0.5  # (HW, 2)
    imgs, alphas, depths = [], [], []
    for c in range(C):
        order = torch.argsort(torch.where(p.valid[c], p.depths[c], torch.inf), stable=True)
        order = order[p.valid[c][order]]
        d = p.means2d[c, order][None] - pix[:, None]  # (HW, n, 2)
        a, b, cc = p.conics[c, order].unbind(-1)
        sigma = 0.5 * (a * d[..., 0] ** 2 + cc * d[..., 1] ** 2) + b * d[..., 0] * d[..., 1]  # (HW, n)
        alpha = torch.clamp_max(opacities[c, order] * torch.exp(-sigma), MAX_ALPHA)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
        with torch.no_grad():  # gsplat's rule: stop before the Gaussian that takes T to <= 1e-4
            inc = torch.cumprod(1 - alpha, dim=1) > T_THRESHOLD
        alpha = alpha * inc
        T_all = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha], dim=1), dim=1)  # (HW, n+1)
        w = alpha * T_all[:, :-1]
        feats = torch.cat([colors[c, order], p.depths[c, order, None]], dim=-1)  # (n, D+1)
        acc = w @ feats
        T = T_all[:, -1:]
        rgb = acc[:, :-1] + (T * background[c] if background is not None else 0)
        imgs.append(rgb.reshape(height, width, -1))
        alphas.append((1 - T).reshape(height, width, 1))
        depths.append((acc[:, -1:] / (1 - T).clamp_min(1e-10)).reshape(height, width, 1))
    return RenderOutput(torch.stack(imgs), torch.stack(alphas), torch.stack(depths), "dense")
