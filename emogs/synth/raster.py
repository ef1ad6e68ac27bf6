"""A small vectorised z-buffer triangle rasteriser in numpy (CPU).

Triangles are bucketed by their screen bounding-box size; for each bucket every triangle tests a fixed
grid of candidate pixels at once (edge functions), and the nearest fragment per pixel wins.
Pixel centres are at (i + 0.5, j + 0.5), MediaPipe's convention.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Fragments:
    """Visible surface per covered pixel: flat pixel index (P,), triangle (P,), perspective-correct
    barycentrics (P, 3), camera depth (P,)."""
    pix: np.ndarray
    tri: np.ndarray
    bary: np.ndarray
    depth: np.ndarray


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera points (N, 3) OpenCV -> (N, 3): pixel x, pixel y, depth z."""
    z = points_cam[:, 2:3]
    uv = points_cam @ K.T
    return np.concatenate([uv[:, :2] / z, z], 1).astype(np.float32)


def rasterize(scr: np.ndarray, faces: np.ndarray, width: int, height: int,
              cull: np.ndarray | None = None, zbuf: np.ndarray | None = None) -> Fragments:
    """scr (V, 3) pixel x, y and depth; faces (F, 3). `cull` (F,) bool: drop those triangles when they
    face away (clockwise on screen is front-facing for counter-clockwise-outside meshes seen through an
    OpenCV camera). `zbuf` (H*W,) optional depth already there (fragments behind it are dropped)."""
    tri = scr[faces]  # (F, 3, 3)
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])  # (F,)
    keep = (np.abs(area) > 1e-9) & (z.min(1) > 1e-3)
    if cull is not None:
        keep &= ~(cull & (area > 0))
    x0 = np.clip(np.floor(x.min(1) - 0.5), 0, width - 1).astype(np.int64)
    x1 = np.clip(np.ceil(x.max(1) - 0.5), 0, width - 1).astype(np.int64)
    y0 = np.clip(np.floor(y.min(1) - 0.5), 0, height - 1).astype(np.int64)
    y1 = np.clip(np.ceil(y.max(1) - 0.5), 0, height - 1).astype(np.int64)
    keep &= (x.max(1) >= 0) & (x.min(1) <= width) & (y.max(1) >= 0) & (y.min(1) <= height)
    classes = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048])
    cw = np.searchsorted(classes, x1 - x0 + 1)  # bucket = (width class, height class) of the bbox
    ch = np.searchsorted(classes, y1 - y0 + 1)
    ids = np.nonzero(keep)[0]
    key = cw[ids] * len(classes) + ch[ids]
    order = np.argsort(key, kind="stable")
    ids, key = ids[order], key[order]
    bounds = np.nonzero(np.r_[True, key[1:] != key[:-1], True])[0]
    out_pix, out_tri, out_b, out_z = [], [], [], []
    xf, yf, zf = x.astype(np.float32), y.astype(np.float32), z.astype(np.float32)
    for s0, s1 in zip(bounds[:-1], bounds[1:]):
        SW, SH = int(classes[key[s0] // len(classes)]), int(classes[key[s0] % len(classes)])
        sel = ids[s0:s1]
        step = max(1, 1_000_000 // (SW * SH))  # bound memory
        oy, ox = np.divmod(np.arange(SW * SH, dtype=np.int32), SW)
        for a in range(0, len(sel), step):
            t = sel[a:a + step]
            px = x0[t, None].astype(np.int32) + ox[None]  # (T, SW*SH)
            py = y0[t, None].astype(np.int32) + oy[None]
            valid = (px <= x1[t, None]) & (py <= y1[t, None])
            cx, cy = px.astype(np.float32) + 0.5, py.astype(np.float32) + 0.5
            X, Y = xf[t], yf[t]
            w0 = (X[:, 1, None] - cx) * (Y[:, 2, None] - cy) - (X[:, 2, None] - cx) * (Y[:, 1, None] - cy)
            w1 = (X[:, 2, None] - cx) * (Y[:, 0, None] - cy) - (X[:, 0, None] - cx) * (Y[:, 2, None] - cy)
            A = area[t, None].astype(np.float32)
            b0, b1 = w0 / A, w1 / A
            b2 = 1 - b0 - b1
            inside = valid & (b0 >= -1e-5) & (b1 >= -1e-5) & (b2 >= -1e-5)
            ti, k = np.nonzero(inside)
            if len(ti) == 0:
                continue
            bs = np.stack([b0[ti, k], b1[ti, k], b2[ti, k]], 1)
            inv = bs / zf[t[ti]]
            s = inv.sum(1)
            out_pix.append(py[ti, k].astype(np.int64) * width + px[ti, k])
            out_tri.append(t[ti])
            out_b.append(inv / s[:, None])
            out_z.append(1.0 / s)
    if not out_pix:
        e = np.zeros(0, np.int64)
        return Fragments(e, e, np.zeros((0, 3), np.float32), np.zeros(0, np.float32))
    pix, tri_i = np.concatenate(out_pix), np.concatenate(out_tri)
    bary, depth = np.concatenate(out_b).astype(np.float32), np.concatenate(out_z).astype(np.float32)
    if zbuf is not None:
        m = depth < zbuf[pix]
        pix, tri_i, bary, depth = pix[m], tri_i[m], bary[m], depth[m]
    order = np.lexsort((depth, pix))
    ps = pix[order]
    first = np.ones(len(ps), bool)
    first[1:] = ps[1:] != ps[:-1]
    o = order[first]
    return Fragments(pix[o], tri_i[o], bary[o], depth[o])


def interpolate(frag: Fragments, faces: np.ndarray, attr: np.ndarray) -> np.ndarray:
    """Per-vertex attributes (V, D) -> per-fragment (P, D)."""
    a = attr[faces[frag.tri]]  # (P, 3, D)
    return np.einsum("pk,pkd->pd", frag.bary, a)
