"""Eyelid versus eyeball binding of a mesh head's Gaussians (issue 13: AU05's upper-lid raise).

ICT-FaceKit's eyeballs are spheres behind the lids. Gaussians bound to eyeball triangles do not follow the lids, so
where they paint the lid margin (lashes, the lid's shadow on the sclera) a lid raise or blink leaves that line
behind. Here, pure geometry at one posed mesh (the default face) and one or more camera centres:

- `eye_spheres`: a least-squares sphere per eyeball region (centre, radius);
- `lid_triangles`: the face triangles around each eye (centroid within `LID_RADIUS` eyeball radii of its centre);
- `covered`: whether the segment from a point towards a camera centre crosses one of those triangles (the lid
  hides the point);
- `lid_margin_mask`: eyeball-bound points that belong to the lid: within `margin` (cm) of a lid triangle (the lid
  margin itself), more than `out_tol` in front of their eyeball triangle (floating where the lid is), or
  optionally hidden by the lid from every camera given;
- `nearest_lid_triangle`: the new parent for those points: the nearest lid triangle (point-to-triangle distance).

Everything works on numpy arrays (float64) and is used both at initialisation (`emogs.model.mesh_head`) and by the
training loop's re-binding (`emogs.train.densify.rebind_eyeball`).
"""
from __future__ import annotations

import numpy as np

LID_RADIUS = 1.3  # lid triangles: face triangles with a centroid within this many eyeball radii of the centre
EYEBALLS = ("eyeball_left", "eyeball_right")


def _tri_range(regions: dict, name: str) -> tuple[int, int]:
    r = regions[name]
    return (int(r[0]), int(r[1])) if not hasattr(r, "t0") else (int(r.t0), int(r.t1))


def eye_spheres(verts: np.ndarray, tris: np.ndarray, regions: dict) -> list[tuple[str, np.ndarray, float, np.ndarray]]:
    """[(region name, centre (3,), radius, triangle ids)] for the eyeball regions present. The sphere is fitted
    (linear least squares) to the region's vertices (the cornea bulges up to ~2 mm beyond it)."""
    out = []
    for name in EYEBALLS:
        if name not in regions:
            continue
        t0, t1 = _tri_range(regions, name)
        if t1 <= t0:
            continue
        vid = np.unique(tris[t0:t1])
        p = np.asarray(verts, np.float64)[vid]
        A = np.concatenate([2 * p, np.ones((len(p), 1))], 1)
        sol = np.linalg.lstsq(A, (p ** 2).sum(1), rcond=None)[0]
        c = sol[:3]
        r = float(np.sqrt(max(sol[3] + c @ c, 1e-12)))
        out.append((name, c, r, np.arange(t0, t1)))
    return out


def lid_triangles(verts: np.ndarray, tris: np.ndarray, regions: dict, spheres=None) -> np.ndarray:
    """Face-region triangles around the eyes (their centroid within LID_RADIUS radii of an eyeball's centre)."""
    spheres = eye_spheres(verts, tris, regions) if spheres is None else spheres
    t0, t1 = _tri_range(regions, "face")
    cen = np.asarray(verts, np.float64)[tris[t0:t1]].mean(1)
    near = np.zeros(t1 - t0, bool)
    for _, c, r, _ in spheres:
        near |= np.linalg.norm(cen - c, axis=1) < LID_RADIUS * r
    return np.nonzero(near)[0] + t0


def _segment_hits(p: np.ndarray, q: np.ndarray, tri: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """(n,) whether the segment p -> q (n, 3) crosses any triangle (m, 3, 3) (Moeller-Trumbore, both sides)."""
    hit = np.zeros(len(p), bool)
    if not len(tri) or not len(p):
        return hit
    a, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    for i in range(0, len(p), chunk):
        o, d = p[i:i + chunk, None], (q - p)[i:i + chunk, None]  # (c, 1, 3)
        h = np.cross(d, e2[None])
        det = (e1[None] * h).sum(-1)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = o - a[None]
        u = (s * h).sum(-1) * inv
        qv = np.cross(s, e1[None])
        v = (d * qv).sum(-1) * inv
        t = (e2[None] * qv).sum(-1) * inv
        hit[i:i + chunk] = (ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-6) & (t < 1)).any(1)
    return hit


def covered(points: np.ndarray, cam_centres: np.ndarray, verts: np.ndarray, tris: np.ndarray,
            lid: np.ndarray) -> np.ndarray:
    """(n,) True where the lid triangles hide the point from every camera centre (k, 3) given."""
    tri = np.asarray(verts, np.float64)[tris[lid]]
    out = np.ones(len(points), bool)
    for c in np.atleast_2d(cam_centres):
        out &= _segment_hits(points, np.broadcast_to(c, points.shape), tri)
    return out


def _pt_tri_d2(x: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared distance from points x (..., 3) to triangles (a, b, c) (..., 3), broadcast: the closest point on
    the triangle, its edges or its corners."""
    ab, ac = b - a, c - a
    n = np.cross(ab, ac)
    nn = np.maximum((n ** 2).sum(-1), 1e-20)
    proj = x - (((x - a) * n).sum(-1) / nn)[..., None] * n
    wp = proj - a
    d00, d01, d11 = (ab * ab).sum(-1), (ab * ac).sum(-1), (ac * ac).sum(-1)
    d20, d21 = (wp * ab).sum(-1), (wp * ac).sum(-1)
    den = np.maximum(d00 * d11 - d01 * d01, 1e-20)
    v = (d11 * d20 - d01 * d21) / den
    u = (d00 * d21 - d01 * d20) / den
    d2 = np.where((v >= 0) & (u >= 0) & (u + v <= 1), ((x - proj) ** 2).sum(-1), np.inf)

    def seg(s0, s1):
        d = s1 - s0
        t = np.clip(((x - s0) * d).sum(-1) / np.maximum((d ** 2).sum(-1), 1e-20), 0, 1)
        return ((x - (s0 + t[..., None] * d)) ** 2).sum(-1)

    return np.minimum(d2, np.minimum(seg(a, b), np.minimum(seg(b, c), seg(a, c))))


def point_triangle_distance(p: np.ndarray, tri: np.ndarray, nearest: int = 24, chunk: int = 4096
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest triangle (m, 3, 3) to each point (n, 3): (index (n,), distance (n,)) by exact point-to-triangle
    distance over the `nearest` triangles with the closest centroids (all of them when m <= nearest)."""
    import torch

    p, tri = np.asarray(p, np.float64), np.asarray(tri, np.float64)
    idx, dist = np.zeros(len(p), np.int64), np.zeros(len(p))
    if not len(p) or not len(tri):
        return idx, np.full(len(p), np.inf)
    cen = torch.as_tensor(tri.mean(1))
    kk = min(nearest, len(tri))
    for i in range(0, len(p), chunk):
        x = p[i:i + chunk]
        cand = torch.cdist(torch.as_tensor(x), cen).topk(kk, largest=False).indices.numpy()  # (c, kk)
        t = tri[cand]  # (c, kk, 3, 3)
        d2 = _pt_tri_d2(x[:, None], t[..., 0, :], t[..., 1, :], t[..., 2, :])
        j = d2.argmin(1)
        idx[i:i + chunk] = cand[np.arange(len(x)), j]
        dist[i:i + chunk] = np.sqrt(d2[np.arange(len(x)), j])
    return idx, dist


def lid_margin_mask(points: np.ndarray, parent: np.ndarray, verts: np.ndarray, tris: np.ndarray, regions: dict,
                    margin: float, normal_offset: np.ndarray | None = None, out_tol: float = 0.05,
                    cam_centres: np.ndarray | None = None, seen: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Eyeball-bound points (world, at the posed mesh `verts`) that belong to the lid: within `margin` cm of a lid
    triangle, more than `out_tol` cm in front of their parent triangle (`normal_offset`, world cm along its normal:
    floating where the lid is), or (with `cam_centres`) hidden by the lid from every camera centre. With `seen`
    (n,) bool (`visible`), the margin test applies only to points a camera sees: hidden eyeball under the lid
    stays on the eyeball, to show when the lid rises.
    -> (mask (n,), nearest lid triangle (n,) or -1 where not masked)."""
    points, parent = np.asarray(points, np.float64), np.asarray(parent)
    tris = np.asarray(tris)
    spheres = eye_spheres(verts, tris, regions)
    lid = lid_triangles(verts, tris, regions, spheres)
    mask, new = np.zeros(len(points), bool), np.full(len(points), -1, np.int64)
    if not len(lid):
        return mask, new
    on_eye = np.zeros(len(points), bool)
    for _, _, _, tid in spheres:
        on_eye |= (parent >= tid[0]) & (parent <= tid[-1])
    ids = np.nonzero(on_eye)[0]
    if not len(ids):
        return mask, new
    import torch

    tri = np.asarray(verts, np.float64)[tris[lid]]
    cen = tri.mean(1)
    rmax = float(np.linalg.norm(tri - cen[:, None], axis=-1).max())
    dc = torch.cdist(torch.as_tensor(points[ids]), torch.as_tensor(cen)).min(1).values.numpy()
    m = dc < margin + rmax  # a lower bound on the distance to the triangles: the exact test only where it can pass
    near = np.nonzero(m)[0]
    k = np.full(len(ids), -1, np.int64)
    k[near], d = point_triangle_distance(points[ids[near]], tri)
    m[near] = d < margin
    if seen is not None:
        m &= np.asarray(seen, bool)[ids]
    if normal_offset is not None:
        m |= np.asarray(normal_offset, np.float64)[ids] > out_tol
    if cam_centres is not None:
        m |= covered(points[ids], cam_centres, verts, tris, lid)
    need = np.nonzero(m & (k < 0))[0]  # masked for another reason, far from the margin: find their lid triangle
    if len(need):
        k[need] = point_triangle_distance(points[ids[need]], tri)[0]
    mask[ids] = m
    new[ids[m]] = lid[k[m]]
    return mask, new


def visible(points: np.ndarray, verts: np.ndarray, tris: np.ndarray, occluders: np.ndarray, K: np.ndarray,
            world_to_cam: np.ndarray, size: int, eps: float = 0.03) -> np.ndarray:
    """(n,) whether each point is in front of (within `eps` cm of) the nearest of the `occluders` triangles at its
    pixel, seen by one camera (K of a `size` x `size` image): a z-buffer test (`emogs.synth.raster`)."""
    from emogs.synth import raster

    R, t = np.asarray(world_to_cam, np.float64)[:3, :3], np.asarray(world_to_cam, np.float64)[:3, 3]
    cam = (np.asarray(verts, np.float64) @ R.T + t).astype(np.float32)
    scr = raster.project(cam, np.asarray(K, np.float32))
    frag = raster.rasterize(scr, np.asarray(tris)[occluders], size, size)
    zbuf = np.full(size * size, np.inf, np.float32)
    np.minimum.at(zbuf, frag.pix, frag.depth)
    p = raster.project((np.asarray(points, np.float64) @ R.T + t).astype(np.float32), np.asarray(K, np.float32))
    x, y = np.floor(p[:, 0]).astype(np.int64), np.floor(p[:, 1]).astype(np.int64)
    inside = (x >= 0) & (x < size) & (y >= 0) & (y < size)
    out = np.ones(len(p), bool)
    pix = np.clip(y, 0, size - 1) * size + np.clip(x, 0, size - 1)
    out[inside] = p[inside, 2] <= zbuf[pix[inside]] + eps
    return out


def eye_occluders(verts: np.ndarray, tris: np.ndarray, regions: dict) -> np.ndarray:
    """The triangles that can hide an eyeball point: the lid triangles and the eyeballs themselves."""
    sp = eye_spheres(verts, tris, regions)
    return np.concatenate([lid_triangles(verts, tris, regions, sp)] + [s[3] for s in sp])
