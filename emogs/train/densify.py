"""Adaptive density control (3DGS): clone small / split large Gaussians with a high mean view-space
positional gradient, prune transparent or huge ones. Keeps Adam's state in step with the new tensors.

The rasteriser API gives no 2D-mean gradients, so the view-space gradient is derived from the gradient
of the deformed 3D centres: dL/du_ndc = |(R dL/dX)_xy| * z / f * W / 2 (pixels -> NDC)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from emogs.model.gaussians import GaussianSet
from emogs.train.config import DensifyConfig


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) wxyz -> (..., 3, 3)."""
    w, x, y, z = torch.nn.functional.normalize(q, dim=-1).unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(q.shape[:-1] + (3, 3))


@dataclass
class DensifyStats:
    grad_accum: torch.Tensor  # (N,) summed view-space gradient norms
    count: torch.Tensor  # (N,) number of views that saw each Gaussian
    # (N,) summed focal / depth (px per world unit at the training resolution) over the views that saw each
    # Gaussian: its screen size is (world size) x (this / count); `DensifyConfig.max_screen_px`
    px_per_unit: torch.Tensor

    @classmethod
    def zeros(cls, n: int, device: torch.device | str) -> "DensifyStats":
        return cls(torch.zeros(n, device=device), torch.zeros(n, device=device), torch.zeros(n, device=device))

    def add(self, means_grad: torch.Tensor, w2c: torch.Tensor, means: torch.Tensor, K: torch.Tensor,
            width: int) -> None:
        """means_grad, means (B, N, 3) deformed centres; w2c (B, 4, 4); K (B, 3, 3)."""
        R = w2c[:, :3, :3]
        g_cam = means_grad @ R.transpose(1, 2)  # (B, N, 3)
        z = (means @ R.transpose(1, 2) + w2c[:, None, :3, 3])[..., 2].clamp_min(1e-3)  # (B, N)
        g = g_cam[..., :2].norm(dim=-1) * z / K[:, None, 0, 0] * width / 2  # (B, N)
        seen = g > 0
        self.grad_accum += g.sum(0)
        self.count += seen.float().sum(0)
        self.px_per_unit += torch.where(seen, K[:, None, 0, 0] / z, torch.zeros_like(z)).sum(0)


def _adam_state_swap(opt: torch.optim.Optimizer, old: torch.nn.Parameter, new: torch.nn.Parameter,
                     keep: torch.Tensor, n_new: int) -> None:
    """Point `opt` at `new` instead of `old`; Adam moments -> rows `keep` then n_new zero rows."""
    for g in opt.param_groups:
        g["params"] = [new if p is old else p for p in g["params"]]
    st = opt.state.pop(old, None)
    if st is None:
        return
    for k in ("exp_avg", "exp_avg_sq"):
        v = st[k][keep]
        st[k] = torch.cat([v, v.new_zeros((n_new,) + v.shape[1:])])
    opt.state[new] = st


def densify_and_prune(g: GaussianSet, opt: torch.optim.Optimizer, stats: DensifyStats, cfg: DensifyConfig,
                      extent: float, gen: torch.Generator) -> dict[str, int]:
    """One densification step in place on `g` (and `opt`'s state). Returns counts."""
    with torch.no_grad():
        n = len(g)
        grads = stats.grad_accum / stats.count.clamp_min(1)
        scales = g.log_scales.exp()  # stored units (triangle-local for bound Gaussians)
        smax = scales.max(-1).values * g.world_scale_factor()  # world units for the thresholds
        cand = grads >= cfg.grad_threshold
        rank = grads
        if cfg.max_screen_px > 0:
            # large on screen: a split candidate whatever its gradient, ranked with the gradient candidates by
            # how far past its threshold it is
            radius = smax * stats.px_per_unit / stats.count.clamp_min(1)
            big = (stats.count > 0) & (radius > cfg.max_screen_px)
            rank = torch.maximum(grads / cfg.grad_threshold, torch.where(big, radius / cfg.max_screen_px, 0.0))
            cand = cand | big
        opacity = torch.sigmoid(g.opacity_logit)
        prune = (opacity < cfg.min_opacity) | (smax > cfg.max_scale * extent)
        free = 0
        if cfg.cap_prune_opacity > 0 and n >= cfg.max_gaussians * (1 - cfg.max_grow):
            # at the cap: the faint Gaussians make room for the candidates (3DGS's opacity reset does it by force)
            prune = prune | (opacity < cfg.cap_prune_opacity)
            free = int(prune.sum())
        room = max(0, min(cfg.max_gaussians - n + free, int(cfg.max_grow * n)))
        if int(cand.sum()) > room:  # keep only the strongest candidates under the cap
            top = torch.topk(torch.where(cand, rank, torch.full_like(rank, -1.0)), room).indices
            cand = torch.zeros_like(cand)
            cand[top] = True
        cand = cand & ~prune if free else cand
        clone = cand & (smax <= cfg.percent_dense * extent)
        split = cand & ~clone

        ci, si = clone.nonzero()[:, 0], split.nonzero()[:, 0]
        # split: two children sampled from the parent Gaussian, scales / 1.6; the parent is removed (in the
        # stored frame: for bound Gaussians the triangle-local frame, a similarity of the world, and the
        # children keep their parent triangle)
        rot = quat_to_rotmat(g.quats[si])  # (S, 3, 3)
        s_par = scales[si]
        children = []
        for _ in range(2):
            eps = torch.randn(s_par.shape, generator=gen).to(s_par.device) * s_par  # CPU generator: resumable
            children.append(g.means[si] + (rot @ eps[..., None])[..., 0])
        keep = (~split & ~prune).nonzero()[:, 0]
        new_idx = torch.cat([ci, si, si])
        new_vals = {
            "means": torch.cat([g.means[ci], children[0], children[1]]),
            "quats": g.quats[new_idx],
            "log_scales": torch.cat([g.log_scales[ci], (s_par / 1.6).log(), (s_par / 1.6).log()]),
            "opacity_logit": g.opacity_logit[new_idx],
            "color_logit": g.color_logit[new_idx],
        }
        old = {name: getattr(g, name) for name in GaussianSet.PARAMS}
        tensors = {name: torch.cat([p[keep], new_vals[name]]) for name, p in old.items()}
        new = g.replace(tensors, {b: torch.cat([getattr(g, b)[keep], getattr(g, b)[new_idx]]) for b in g.index_buffers})
        for name in GaussianSet.PARAMS:
            _adam_state_swap(opt, old[name], new[name], keep, len(new_idx))
        stats.grad_accum = torch.zeros(len(g), device=g.means.device)
        stats.count = torch.zeros(len(g), device=g.means.device)
        stats.px_per_unit = torch.zeros(len(g), device=g.means.device)
        return dict(clone=len(ci), split=len(si), prune=int((prune & ~split).sum()), total=len(g))
