"""MediaPipe's 478 face landmarks as points on the ICT-FaceKit surface.

Each landmark is a triangle of the full ICT model (`load_ict().triangles`) plus barycentric weights, so it
follows any identity and expression: `points = surface_points(model.vertices(id, expr), tri, bary)`.
The table is computed once by `scripts/make_mediapipe_ict_correspondence.py` and shipped as
`emogs/mesh/data/mediapipe_to_ict.npz` (docs/mesh.md, "Correspondence"):
  tri (478,) int, bary (478, 3) f32, weight (478,) f32 (fitting weight; 0 = not used),
  mp_to_ict (4, 4) the similarity (scale * rotation, translation) from MediaPipe's canonical face frame
  to the ICT model frame (both cm, x right, y up, z to the viewer), version (int), plus the groups the
  script used (`group` (478,) int, `group_names`) and `meta` (JSON: registration residuals, the refinement
  clips and the refinement's progress).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emogs.mesh.ict import FaceModel, surface_points

DATA_FILE = Path(__file__).with_name("data") / "mediapipe_to_ict.npz"
NUM_LANDMARKS = 478

# MediaPipe landmark index sets (subject's right = image left = x < 0 in the canonical frame).
LIPS_UPPER_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LIPS_LOWER_OUTER = [146, 91, 181, 84, 17, 314, 405, 321, 375]
LIPS_UPPER_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LIPS_LOWER_INNER = [95, 88, 178, 87, 14, 317, 402, 318, 324]
RIGHT_UPPER_LID = [246, 161, 160, 159, 158, 157, 173]
RIGHT_LOWER_LID = [7, 163, 144, 145, 153, 154, 155]
LEFT_UPPER_LID = [466, 388, 387, 386, 385, 384, 398]
LEFT_LOWER_LID = [249, 390, 373, 374, 380, 381, 382]
EYE_CORNERS = [33, 133, 362, 263]
RIGHT_IRIS = [468, 469, 470, 471, 472]  # centre, then image +x, -y (up), -x, +y (down)
LEFT_IRIS = [473, 474, 475, 476, 477]
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]


@dataclass(frozen=True)
class Correspondence:
    tri: np.ndarray        # (478,) triangle index into the full ICT model
    bary: np.ndarray       # (478, 3)
    weight: np.ndarray     # (478,) fitting weight
    mp_to_ict: np.ndarray  # (4, 4) similarity, MediaPipe canonical frame -> ICT frame
    version: int
    group: np.ndarray      # (478,) index into group_names
    group_names: tuple[str, ...]

    def points(self, model: FaceModel, verts):
        """Landmark positions (..., 478, 3) on mesh vertices `verts` (..., V, 3) of the full model."""
        return surface_points(verts, model.triangles, self.tri, self.bary)

    def basis(self, model: FaceModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The landmarks as a linear model: neutral (478, 3), identity (I, 478, 3), expression (E, 478, 3)
        (the model's bases restricted to the landmark points; landmarks = neutral + id @ I + expr @ E)."""
        idx = model.triangles[self.tri]  # (478, 3)
        b = self.bary.astype(np.float64)[..., None]

        def at(a: np.ndarray) -> np.ndarray:
            return (a[..., idx, :].astype(np.float64) * b).sum(-2).astype(np.float32)

        return at(model.neutral), at(model.identity_basis), at(model.expression_basis)


def load_correspondence(path: str | Path | None = None) -> Correspondence:
    """The shipped MediaPipe -> ICT table (or another file written by the script)."""
    return _load(str(Path(path) if path else DATA_FILE))


@functools.lru_cache(maxsize=2)
def _load(path: str) -> Correspondence:
    with np.load(path) as z:
        return Correspondence(z["tri"].astype(np.int64), z["bary"].astype(np.float32), z["weight"].astype(np.float32),
                              z["mp_to_ict"].astype(np.float64), int(z["version"]), z["group"].astype(np.int64),
                              tuple(str(s) for s in z["group_names"]))


# -- geometry used to build the table ---------------------------------------------------------------
def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentric weights (..., 3) of the point of triangle (a, b, c) nearest to p; all (..., 3).
    (Ericson, Real-Time Collision Detection, 5.1.5.)"""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = va + vb + vc
    with np.errstate(divide="ignore", invalid="ignore"):
        v_in, w_in = vb / denom, vc / denom
        w_ab = d1 / (d1 - d3)       # on edge ab
        w_ac = d2 / (d2 - d6)       # on edge ac
        w_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))  # on edge bc
    out = np.stack([1 - v_in - w_in, v_in, w_in], -1)
    cases = [
        ((d1 <= 0) & (d2 <= 0), lambda: [1, 0, 0]),
        ((d3 >= 0) & (d4 <= d3), lambda: [0, 1, 0]),
        ((d6 >= 0) & (d5 <= d6), lambda: [0, 0, 1]),
    ]
    edge_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    edge_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    edge_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    ev = np.zeros_like(out)
    ev[..., 0], ev[..., 1] = 1 - w_ab, w_ab
    out = np.where(edge_ab[..., None], ev, out)
    ev = np.zeros_like(out)
    ev[..., 0], ev[..., 2] = 1 - w_ac, w_ac
    out = np.where(edge_ac[..., None], ev, out)
    ev = np.zeros_like(out)
    ev[..., 1], ev[..., 2] = 1 - w_bc, w_bc
    out = np.where(edge_bc[..., None], ev, out)
    for m, val in cases:  # vertex regions last: they take precedence
        out = np.where(m[..., None], np.asarray(val(), out.dtype), out)
    return np.nan_to_num(out, nan=1.0 / 3)


def closest_points(points: np.ndarray, verts: np.ndarray, triangles: np.ndarray, subset: np.ndarray | None = None,
                   candidates: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest surface point of each query point (P, 3) on the mesh (verts (V, 3), triangles (T, 3)),
    searching only the triangles `subset` (indices; None = all). The `candidates` triangles with the
    nearest centroids are tested exactly. -> (tri (P,), bary (P, 3), distance (P,))."""
    from scipy.spatial import cKDTree

    v = np.asarray(verts, np.float64)
    tri = np.asarray(triangles, np.int64)
    P = np.asarray(points, np.float64).reshape(-1, 3)
    sub = np.arange(len(tri)) if subset is None else np.asarray(subset, np.int64)
    n = min(candidates, len(sub))
    _, cand = cKDTree(v[tri[sub]].mean(1)).query(P, n)
    cand = sub[np.asarray(cand).reshape(len(P), n)]  # (P, n)
    abc = v[tri[cand]]  # (P, n, 3, 3)
    q = np.broadcast_to(P[:, None, :], (len(P), n, 3))
    bary = closest_on_triangles(q, abc[..., 0, :], abc[..., 1, :], abc[..., 2, :])
    d = np.linalg.norm((bary[..., None] * abc).sum(-2) - q, axis=-1)
    j = d.argmin(1)
    r = np.arange(len(P))
    return cand[r, j], bary[r, j].astype(np.float32), d[r, j]
