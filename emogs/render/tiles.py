"""Tile binning and the tile-based alpha compositor with a hand-written backward (pure PyTorch, CPU or GPU).

Layout: every image is cut into `tile x tile` pixel tiles. Each (image, Gaussian) pair that survives projection
is listed once per tile its bounding box touches ("intersection"). Intersections are sorted by (tile, depth).
The compositor walks all tiles together, front to back, in depth chunks of `chunk` Gaussians: a chunk of tiles is
a padded (tiles, pixels, chunk) block, so memory is bounded by `max_elems` whatever the scene. Tiles whose pixels
are all saturated (transmittance cut-off reached) drop out, like gsplat's early exit.

Per pixel p and Gaussian k (sorted front to back), exactly as gsplat's classic kernel:
  sigma = 0.5 d^T conic d,  d = mean2d - pixel_centre
  alpha = min(0.999, opacity * exp(-sigma)), skipped (0) if alpha < 1/255
  Gaussian k is composited only if T_k * (1 - alpha_k) > 1e-4 (then later ones are not either)
  out = sum_k alpha_k T_k c_k,  T_final = prod (1 - alpha_k)
sigma is evaluated as a (pixels x 6) @ (6 x Gaussians) product of tile-centred quadratic features.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from emogs.render.project import ALPHA_THRESHOLD

MAX_ALPHA = 0.999  # gsplat 1.5.3 (the 3DGS paper's code uses 0.99)
T_THRESHOLD = 1e-4


@dataclass
class TileLayout:
    """Sorted intersections and per-tile ranges for I images of th x tw tiles."""

    tile: int
    tiles_h: int
    tiles_w: int
    n_images: int
    pair_ids: Tensor  # (M,) flat (image * N + gaussian) index of each sorted intersection
    tile_ids: Tensor  # (M,) flat (image * th * tw + ty * tw + tx) tile of each intersection
    offsets: Tensor  # (I * th * tw,) start of each tile's run in the sorted list
    counts: Tensor  # (I * th * tw,) run length

    @property
    def n_tiles(self) -> int:
        return self.n_images * self.tiles_h * self.tiles_w


@torch.no_grad()
def bin_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, valid: Tensor, width: int, height: int,
              tile: int = 16) -> TileLayout:
    """Intersect projected Gaussians with tiles; sort by (tile, depth).

    means2d (I,N,2), radii (I,N,2), depths/valid (I,N). A Gaussian touches every tile its radius box overlaps.
    """
    I, N = depths.shape
    th, tw = -(-height // tile), -(-width // tile)
    dev = means2d.device
    pid = torch.nonzero(valid.reshape(-1)).squeeze(1)  # (V,)
    # front to back first; a stable sort by tile below keeps this order inside every tile
    pid = pid[torch.sort(depths.reshape(-1)[pid], stable=True).indices]
    m = means2d.detach().reshape(-1, 2)[pid] / tile  # (V, 2) in tile units
    r = radii.reshape(-1, 2)[pid].to(m.dtype) / tile
    x0 = torch.floor(m[:, 0] - r[:, 0]).clamp(0, tw).long()
    x1 = torch.ceil(m[:, 0] + r[:, 0]).clamp(0, tw).long()
    y0 = torch.floor(m[:, 1] - r[:, 1]).clamp(0, th).long()
    y1 = torch.ceil(m[:, 1] + r[:, 1]).clamp(0, th).long()
    nx, ny = x1 - x0, y1 - y0
    cnt = nx * ny  # (V,)
    rep = torch.repeat_interleave(torch.arange(pid.numel(), device=dev), cnt)  # (M,) which pair
    start = torch.cumsum(cnt, 0) - cnt
    local = torch.arange(rep.numel(), device=dev) - start[rep]  # index inside the pair's box
    tx = x0[rep] + local % nx[rep]
    ty = y0[rep] + local // nx[rep]
    img = pid[rep] // N
    tile_ids = img * (th * tw) + ty * tw + tx
    order = torch.sort(tile_ids, stable=True).indices
    tile_ids = tile_ids[order]
    pair_ids = pid[rep[order]]
    counts = torch.bincount(tile_ids, minlength=I * th * tw)
    offsets = torch.cumsum(counts, 0) - counts
    return TileLayout(tile, th, tw, I, pair_ids, tile_ids, offsets, counts)


def sigma_coefficients(means2d: Tensor, conics: Tensor, layout: TileLayout) -> Tensor:
    """Per-intersection coefficients of sigma as a quadratic in tile-centred pixel coords (u, v).

    means2d (I*N, 2), conics (I*N, 3) -> (M, 6) for features [u^2, uv, v^2, u, v, 1]. Differentiable.
    """
    ts, tw = layout.tile, layout.tiles_w
    local = layout.tile_ids % (layout.tiles_h * tw)
    centre = torch.stack([(local % tw) * ts, (local // tw) * ts], dim=-1).to(means2d.dtype) + 0.5 * ts  # (M, 2)
    m = means2d[layout.pair_ids] - centre  # (M, 2) Gaussian centre relative to the tile centre
    a, b, c = conics[layout.pair_ids].unbind(-1)
    mx, my = m.unbind(-1)
    return torch.stack([
        0.5 * a, b, 0.5 * c,
        -(a * mx + b * my), -(c * my + b * mx),
        0.5 * a * mx * mx + b * mx * my + 0.5 * c * my * my,
    ], dim=-1)


def pixel_features(tile: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(tile*tile, 6) features [u^2, uv, v^2, u, v, 1] of pixel centres relative to the tile centre, row-major."""
    r = torch.arange(tile, dtype=dtype, device=device) + 0.5 - 0.5 * tile
    v, u = torch.meshgrid(r, r, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([u * u, u * v, v * v, u, v, torch.ones_like(u)], dim=-1)


def _outside_mask(layout: TileLayout, width: int, height: int, device: torch.device) -> Tensor:
    """(n_tiles, P) True for padded pixels beyond the image border (they never composite)."""
    ts, th, tw = layout.tile, layout.tiles_h, layout.tiles_w
    r = torch.arange(ts, device=device)
    tid = torch.arange(th * tw, device=device)
    px = (tid % tw)[:, None, None] * ts + r[None, None, :]  # (th*tw, 1, ts)
    py = (tid // tw)[:, None, None] * ts + r[None, :, None]  # (th*tw, ts, 1)
    out = (px >= width) | (py >= height)  # (th*tw, ts, ts)
    return out.reshape(th * tw, ts * ts).repeat(layout.n_images, 1)


@dataclass
class _Chunk:
    """One padded block of intersections: B tiles x K Gaussians."""

    tiles: Tensor  # (B,) tile ids
    idx: Tensor  # (B, K) intersection index (clamped)
    ok: Tensor  # (B, K) real (not padding)


def _blocks(layout: TileLayout, active: Tensor, j: int, chunk: int, per_block: int):
    """Yield padded blocks of the j-th depth chunk for active tiles, at most per_block tiles each."""
    tiles = torch.nonzero(active & (layout.counts > j * chunk)).squeeze(1)
    ar = torch.arange(chunk, device=tiles.device)
    M = max(int(layout.pair_ids.numel()), 1)
    for s in range(0, tiles.numel(), per_block):
        t = tiles[s:s + per_block]
        pos = j * chunk + ar[None, :]  # (1, K) position inside each tile's run
        ok = pos < layout.counts[t, None]
        idx = (layout.offsets[t, None] + pos).clamp_max(M - 1)
        yield _Chunk(t, idx, ok)


def _alphas(feat: Tensor, ncoef: Tensor, opac: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """feat (P,6), ncoef = -coef (B,K,6), opac (B,K) -> exp(-sigma), raw alpha, alpha as composited; each (B,P,K).

    alpha = min(0.999, raw), set to 0 below 1/255 (F.threshold keeps values > 1/255: equality has measure zero).
    """
    g = torch.matmul(feat, ncoef.transpose(1, 2)).clamp_max_(0.0).exp_()  # (B, P, K) = exp(-max(sigma, 0))
    raw = g * opac[:, None, :]
    alpha = torch.nn.functional.threshold_(raw.clamp_max(MAX_ALPHA), ALPHA_THRESHOLD, 0.0)
    return g, raw, alpha


def _composite_block(alpha: Tensor, T0: Tensor, done0: Tensor):
    """Front-to-back over one block.

    alpha (B,P,K), T0/done0 (B,P) -> (T_before (B,P,K), alpha composited a (B,P,K), 1 - alpha (B,P,K),
    T_end (B,P), done_end (B,P)). Pixels already done composite nothing.
    """
    om = 1.0 - alpha
    T0_eff = T0.masked_fill(done0, 0.0)  # a done pixel: T treated as 0, so nothing passes the cut-off
    T_after = torch.cumprod(om, dim=2).mul_(T0_eff[..., None])  # (B, P, K) transmittance after each Gaussian
    inc = T_after > T_THRESHOLD  # gsplat: composite k only if T after it stays above 1e-4; a prefix of K
    n_inc = inc.sum(dim=2)  # (B, P)
    last = T_after.gather(2, (n_inc - 1).clamp_min(0)[..., None])[..., 0]
    T_end = torch.where(n_inc > 0, last, T0)
    done_end = ~inc[..., -1]
    a = torch.where(inc, alpha, 0.0)
    T_before = T_after.div_(om)  # (B, P, K) transmittance in front of each Gaussian
    return T_before, a, om, T_end, done_end


class _Composite(torch.autograd.Function):
    """Per-intersection (coef, opacity, colour) -> per-tile-pixel accumulated colour and final transmittance."""

    @staticmethod
    def forward(ctx, coef: Tensor, opac: Tensor, colors: Tensor, layout: TileLayout, feat: Tensor,
                outside: Tensor, chunk: int, max_elems: int):
        n_t, P, D = layout.n_tiles, feat.shape[0], colors.shape[-1]
        accum = colors.new_zeros(n_t, P, D)
        T = colors.new_ones(n_t, P)
        done = outside.clone()
        ncoef = -coef
        for j, blk in _schedule(layout, done, chunk, max(1, max_elems // (P * chunk))):
            op = opac[blk.idx].masked_fill_(~blk.ok, 0.0)
            _, _, alpha = _alphas(feat, ncoef[blk.idx], op)
            T_k, a, _, T_end, done_end = _composite_block(alpha, T[blk.tiles], done[blk.tiles])
            accum[blk.tiles] += torch.bmm(T_k.mul_(a), colors[blk.idx])
            T[blk.tiles] = T_end
            done[blk.tiles] = done_end
        ctx.save_for_backward(coef, opac, colors, feat, outside, accum, T)
        ctx.layout, ctx.chunk, ctx.max_elems = layout, chunk, max_elems
        return accum, T

    @staticmethod
    def backward(ctx, g_accum: Tensor, g_T: Tensor):
        coef, opac, colors, feat, outside, accum, T_final = ctx.saved_tensors
        layout, chunk, max_elems = ctx.layout, ctx.chunk, ctx.max_elems
        g_accum = g_accum.contiguous() if g_accum is not None else torch.zeros_like(accum)
        g_T = g_T if g_T is not None else torch.zeros_like(T_final)
        P = T_final.shape[1]
        d_coef, d_opac, d_col = torch.zeros_like(coef), torch.zeros_like(opac), torch.zeros_like(colors)
        # sum_{j>k} w_j q_j = Q_total - (running sum up to k), with q_k = g_accum . c_k
        Q_tot = (g_accum * accum).sum(-1)  # (n_t, P)
        gTT = g_T * T_final  # (n_t, P)
        T = torch.ones_like(T_final)
        done = outside.clone()
        wq_run = torch.zeros_like(T_final)
        ncoef, featT = -coef, feat.t()
        for j, blk in _schedule(layout, done, chunk, max(1, max_elems // (P * chunk))):
            tl = blk.tiles
            op = opac[blk.idx].masked_fill_(~blk.ok, 0.0)  # (B, K)
            col = colors[blk.idx]  # (B, K, D)
            g, raw, alpha = _alphas(feat, ncoef[blk.idx], op)
            T_k, a, om, T_end, done_end = _composite_block(alpha, T[tl], done[tl])
            w = T_k * a  # (B, P, K) compositing weights
            gC = g_accum[tl]  # (B, P, D)
            q = torch.bmm(gC, col.transpose(1, 2))  # (B, P, K)
            wq = w * q
            R = torch.cumsum(wq, dim=2).sub_((Q_tot[tl] - wq_run[tl])[..., None])  # = -(sum over j > k)
            # dL/dalpha_k = T_k q_k - (R_k + gT T_final) / (1 - alpha_k), for composited, unclamped alphas only
            g_alpha = R.sub_(gTT[tl][..., None]).div_(om).add_(T_k.mul_(q))
            g_alpha = torch.where((a > 0) & (a < MAX_ALPHA), g_alpha, 0.0)  # gradient of the raw alpha
            d_op_blk = (g_alpha * g).sum(dim=1)  # (B, K)
            d_ncoef = torch.matmul(featT, g_alpha.mul_(raw))  # (B, 6, K): d raw / d(-coef) = raw * feat
            d_col_blk = torch.bmm(w.transpose(1, 2), gC)  # (B, K, D)
            sel = blk.idx[blk.ok]
            d_coef[sel] = -d_ncoef.transpose(1, 2)[blk.ok]
            d_opac[sel] = d_op_blk[blk.ok]
            d_col[sel] = d_col_blk[blk.ok]
            wq_run[tl] += wq.sum(dim=2)
            T[tl] = T_end
            done[tl] = done_end
        return d_coef, d_opac, d_col, None, None, None, None, None


def _schedule(layout: TileLayout, done: Tensor, chunk: int, per_block: int):
    """Depth chunk j = 0, 1, ...: yield (j, block) for tiles that still have Gaussians and undone pixels.

    `done` is read at the start of every chunk, so callers must update it in place.
    """
    if layout.pair_ids.numel() == 0:
        return
    n_chunks = -(-int(layout.counts.max()) // chunk)
    for j in range(n_chunks):
        active = ~done.all(dim=1)
        for blk in _blocks(layout, active, j, chunk, per_block):
            yield j, blk


def composite(coef: Tensor, opac: Tensor, colors: Tensor, layout: TileLayout, width: int, height: int,
              chunk: int = 64, max_elems: int = 1 << 21) -> tuple[Tensor, Tensor]:
    """Alpha-composite sorted intersections into images.

    coef (M,6), opac (M,), colors (M,D) per intersection -> (accumulated colour (I,H,W,D), T_final (I,H,W)).
    """
    ts = layout.tile
    feat = pixel_features(ts, colors.dtype, colors.device)
    outside = _outside_mask(layout, width, height, colors.device)
    accum, T = _Composite.apply(coef, opac, colors, layout, feat, outside, chunk, max_elems)
    I, th, tw, D = layout.n_images, layout.tiles_h, layout.tiles_w, colors.shape[-1]
    img = accum.reshape(I, th, tw, ts, ts, D).permute(0, 1, 3, 2, 4, 5).reshape(I, th * ts, tw * ts, D)
    Ti = T.reshape(I, th, tw, ts, ts).permute(0, 1, 3, 2, 4).reshape(I, th * ts, tw * ts)
    return img[:, :height, :width], Ti[:, :height, :width]
