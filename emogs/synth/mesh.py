"""Geometry of the synthetic head, in MediaPipe's canonical face space (cm; x to the viewer's right,
y up, z out of the face towards the viewer).

The face is MediaPipe's canonical face mesh (468 vertices, shipped in the FaceLandmarker `.task` bundle,
Apache-2.0; parsed by `emogs.face.camera.canonical_face_mesh`) with its eye and mouth openings cut
out. Around it we build simple parts: a skull/hair shell fitted behind the face, two eyeballs, eye
sockets, a mouth cavity with teeth and tongue, and a static neck and shoulders.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# Landmark index sets of the MediaPipe face mesh ("right" = the subject's right = x < 0).
RIGHT_EYE = [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7]
LEFT_EYE = [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249]
RIGHT_UPPER_LID = [246, 161, 160, 159, 158, 157, 173]
RIGHT_LOWER_LID = [7, 163, 144, 145, 153, 154, 155]
LEFT_UPPER_LID = [466, 388, 387, 386, 385, 384, 398]
LEFT_LOWER_LID = [249, 390, 373, 374, 380, 381, 382]
LIPS_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
LIPS_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]
UPPER_INNER = [191, 80, 81, 82, 13, 312, 311, 310, 415]
LOWER_INNER = [95, 88, 178, 87, 14, 317, 402, 318, 324]
RIGHT_BROW_UPPER = [70, 63, 105, 66, 107]
RIGHT_BROW_LOWER = [46, 53, 52, 65, 55]
LEFT_BROW_UPPER = [300, 293, 334, 296, 336]
LEFT_BROW_LOWER = [276, 283, 282, 295, 285]

HEAD_PIVOT = np.array([0.0, -7.0, -4.5], np.float32)  # neck joint the head turns about (cm)
JAW_PIVOT = np.array([0.0, 0.5, -3.0], np.float32)   # jaw hinge axis passes through here, along x


@functools.lru_cache(maxsize=1)
def canonical_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> vertices (468, 3) cm, faces (F, 3) int64 (counter-clockwise seen from +z), uvs (468, 2) in [0, 1]."""
    from emogs.face.camera import canonical_face_mesh

    v, f, uv = canonical_face_mesh()
    return np.asarray(v, np.float32), np.asarray(f, np.int64), np.asarray(uv, np.float32)


def _inside_loop(faces: np.ndarray, loop: list[int]) -> np.ndarray:
    """(F,) bool: triangles whose three vertices all lie on `loop` (they close an opening)."""
    s = np.zeros(int(faces.max()) + 1, bool)
    s[loop] = True
    return s[faces].all(1)


def boundary_loop(faces: np.ndarray) -> list[int]:
    """The outer boundary of a disc-like mesh as an ordered vertex loop (longest loop)."""
    edges: dict[tuple[int, int], int] = {}
    for a, b, c in faces:
        for x, y in ((a, b), (b, c), (c, a)):
            edges[(int(x), int(y))] = edges.get((int(x), int(y)), 0) + 1
    nxt = {x: y for (x, y) in edges if (y, x) not in edges}  # directed boundary edges
    loops, seen = [], set()
    for s in nxt:
        if s in seen:
            continue
        loop, v = [], s
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(loop)
    return max(loops, key=len)


def _sphere(n_lat: int, n_lon: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit UV sphere: vertices (V, 3) and outward-facing faces (F, 3) (counter-clockwise from outside)."""
    lat = np.linspace(-np.pi / 2, np.pi / 2, n_lat + 1)
    lon = np.linspace(-np.pi, np.pi, n_lon, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    v = np.stack([np.cos(la) * np.sin(lo), np.sin(la), np.cos(la) * np.cos(lo)], -1).reshape(-1, 3)
    f = []
    for i in range(n_lat):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, d = a + n_lon, b + n_lon
            f += [(a, b, d), (a, d, c)]
    f = np.asarray(f, np.int64)
    # make winding counter-clockwise seen from outside
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    flip = (n * v[f].mean(1)).sum(1) < 0
    f[flip] = f[flip][:, ::-1]
    return v.astype(np.float32), f


@dataclass
class Part:
    """One rigid or deformable piece: vertices (V, 3), faces (F, 3), per-vertex colour (V, 3) in [0, 1],
    optional atlas pixel coordinates (V, 2) (textured when given), and how it moves."""
    name: str
    verts: np.ndarray
    faces: np.ndarray
    color: np.ndarray
    uv: np.ndarray | None = None
    jaw: np.ndarray | None = None  # (V,) weight of the jaw rotation (mouth parts), None = rigid with head
    cull: bool = True              # drop triangles facing away from the camera
    body: bool = False             # static with the body (neck, shoulders), not moved by head pose


@dataclass
class HeadGeometry:
    face_verts: np.ndarray  # (468, 3) neutral face (lips closed)
    face_faces: np.ndarray  # (F, 3) without eye / mouth openings
    face_uv: np.ndarray     # (468, 2) in [0, 1]
    eye_faces: np.ndarray   # (Fe, 3) triangles of both eye openings (drawn pushed back as sockets)
    mouth_faces: np.ndarray  # (Fm, 3) triangles of the mouth opening
    eye_centers: np.ndarray  # (2, 3) right, left eyeball centres
    eye_radius: float
    parts: list[Part]       # rigid / jaw-driven parts besides the face


def _shell(face_v: np.ndarray, face_f: np.ndarray, rng: np.random.Generator) -> Part:
    """Skull + hair: an ellipsoid around a centre behind the face, pulled in where the face is, so the
    face mesh always lies in front of it."""
    c = np.array([0.0, 0.8, -3.2], np.float32)
    unit, f = _sphere(40, 64)
    radii_top = np.array([8.0, 10.6, 10.2], np.float32)
    radii_bot = np.array([7.2, 8.6, 9.2], np.float32)
    radii = np.where(unit[:, 1:2] > 0, radii_top, radii_bot)
    v = unit * radii
    r_ell = np.linalg.norm(v, axis=1)
    d = unit * radii / r_ell[:, None]  # ray directions from c
    # face radius along each ray: nearest face vertices in direction space (the face is a height field in r)
    fv = face_v - c
    fr = np.linalg.norm(fv, axis=1)
    fd = fv / fr[:, None]
    cosang = d @ fd.T  # (Vs, 468)
    k = np.argsort(-cosang, axis=1)[:, :4]
    near = np.take_along_axis(cosang, k, 1)
    wts = np.exp((near - 1) / 0.0004)  # angular Gaussian ~1.2 deg
    r_face = (fr[k] * wts).sum(1) / np.maximum(wts.sum(1), 1e-12)
    covered = near[:, 0] > np.cos(np.radians(3.0))
    # is the ray inside the face's angular footprint? use the boundary loop projected on a plane
    loop = boundary_loop(face_f)
    bl = fd[loop]
    lon, lat = np.arctan2(bl[:, 0], bl[:, 2]), np.arcsin(np.clip(bl[:, 1], -1, 1))
    import cv2

    poly = np.stack([lon, lat], 1).astype(np.float32)
    dlon, dlat = np.arctan2(d[:, 0], d[:, 2]), np.arcsin(np.clip(d[:, 1], -1, 1))
    inside = np.array([cv2.pointPolygonTest(poly, (float(a), float(b)), True) for a, b in zip(dlon, dlat)])
    r = r_ell.copy()
    pull = (inside > -0.03) & covered | (inside > 0)
    r[pull] = np.minimum(r_ell[pull], r_face[pull] - 0.35)
    v = d * r[:, None] + c
    # colour: hair on the top and back, skin at the sides below the hairline and under the chin
    y, z = v[:, 1], v[:, 2]
    hairline = 6.6 - 0.5 * np.clip(-z, 0, 10)  # lower at the back
    hair = (y > hairline) | ((z < -5.0) & (y > -3.5))
    skin = np.array([0.78, 0.57, 0.46], np.float32)
    hair_c = np.array([0.17, 0.11, 0.07], np.float32)
    col = np.where(hair[:, None], hair_c, skin) * (1 + 0.04 * rng.standard_normal((len(v), 1))).astype(np.float32)
    # hair is a little fuller than the skull
    v = np.where(hair[:, None] & ~pull[:, None], c + (v - c) * 1.06, v)
    return Part("shell", v.astype(np.float32), f, col.astype(np.float32))


def _eyeball(center: np.ndarray, radius: float, atlas_origin: tuple[int, int], tex: int) -> Part:
    unit, f = _sphere(16, 28)
    v = center + unit * radius
    # planar projection of the front hemisphere onto the eye texture (iris at its centre)
    uv = np.stack([atlas_origin[0] + (0.5 + 0.5 * unit[:, 0]) * tex,
                   atlas_origin[1] + (0.5 - 0.5 * unit[:, 1]) * tex], 1)
    col = np.ones_like(v)
    return Part("eye", v.astype(np.float32), f, col.astype(np.float32), uv=uv.astype(np.float32))


def _mouth_parts(rng: np.random.Generator) -> list[Part]:
    """Cavity back wall (jaw-stretched), upper teeth (head), lower teeth and tongue (jaw)."""
    parts = []
    # back wall: a grid x in [-3, 3], y in [-8, -2], at depth curving back from the lips
    nx, ny = 16, 16
    x, y = np.meshgrid(np.linspace(-3.2, 3.2, nx), np.linspace(-2.6, -8.0, ny))
    z = 3.6 - 0.18 * x ** 2
    v = np.stack([x, y, z], -1).reshape(-1, 3)
    f = []
    for i in range(ny - 1):
        for j in range(nx - 1):
            a = i * nx + j
            f += [(a, a + nx, a + 1), (a + 1, a + nx, a + nx + 1)]
    jaw = np.clip((-4.3 - v[:, 1]) / 0.8, 0, 1)
    col = np.tile(np.array([0.30, 0.08, 0.09], np.float32), (len(v), 1))
    parts.append(Part("cavity", v.astype(np.float32), np.asarray(f, np.int64), col, jaw=jaw.astype(np.float32), cull=False))
    # teeth: curved strips along an arch
    def strip(y0: float, y1: float, zf: float, jaw_w: float, color, half_w: float = 2.0, bend: float = 0.28) -> Part:
        n = 14
        xs = np.linspace(-half_w, half_w, n)
        zs = zf - bend * xs ** 2
        top = np.stack([xs, np.full(n, y0), zs], 1)
        bot = np.stack([xs, np.full(n, y1), zs], 1)
        vv = np.concatenate([top, bot])
        ff = []
        for j in range(n - 1):
            ff += [(j, n + j, j + 1), (j + 1, n + j, n + j + 1)]
        cc = np.tile(np.asarray(color, np.float32), (2 * n, 1))
        # darker gaps between teeth: every other column slightly darker
        cc[np.arange(2 * n) % n % 2 == 1] *= 0.93
        return Part("teeth", vv.astype(np.float32), np.asarray(ff, np.int64), cc, jaw=np.full(2 * n, jaw_w, np.float32), cull=False)
    parts.append(strip(-3.7, -4.35, 4.75, 0.0, (0.90, 0.88, 0.80)))
    parts.append(strip(-4.6, -5.2, 4.55, 1.0, (0.86, 0.84, 0.76), half_w=1.8))
    # tongue: a flattened half-ellipsoid on the jaw
    unit, f = _sphere(8, 16)
    v = unit * np.array([2.0, 0.6, 2.0]) + np.array([0.0, -5.6, 3.0])
    parts.append(Part("tongue", v.astype(np.float32), f, np.tile(np.array([0.62, 0.30, 0.30], np.float32), (len(v), 1)),
                      jaw=np.ones(len(v), np.float32)))
    return parts


def _body(rng: np.random.Generator) -> list[Part]:
    """Neck (cylinder) and shoulders (flattened ellipsoid), static with the body."""
    parts = []
    n_a, n_h = 40, 12
    ang = np.linspace(-np.pi, np.pi, n_a, endpoint=False)
    hs = np.linspace(-4.0, -17.0, n_h)
    a, h = np.meshgrid(ang, hs, indexing="ij")
    rx, rz = 5.6, 5.4
    v = np.stack([rx * np.sin(a), h, -4.2 + rz * np.cos(a)], -1).reshape(-1, 3)
    f = []
    for i in range(n_a):
        for j in range(n_h - 1):
            p, q = i * n_h + j, ((i + 1) % n_a) * n_h + j
            f += [(p, q, p + 1), (q, q + 1, p + 1)]
    f = np.asarray(f, np.int64)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    out = v[f].mean(1) - np.array([0, 0, -4.2])
    out[:, 1] = 0
    flip = (n * out).sum(1) < 0
    f[flip] = f[flip][:, ::-1]
    skin = np.array([0.74, 0.53, 0.43], np.float32)
    col = np.tile(skin, (len(v), 1))
    parts.append(Part("neck", v.astype(np.float32), f, col.astype(np.float32), body=True))
    unit, f = _sphere(24, 48)
    v = unit * np.array([20.0, 7.5, 10.0]) + np.array([0.0, -22.5, -5.0])
    cloth = np.array([0.20, 0.27, 0.40], np.float32)
    col = np.tile(cloth, (len(v), 1)) * (1 + 0.03 * rng.standard_normal((len(v), 1))).astype(np.float32)
    parts.append(Part("shoulders", v.astype(np.float32), f, col.astype(np.float32), body=True))
    return parts


@functools.lru_cache(maxsize=2)
def head_geometry(seed: int = 0) -> HeadGeometry:
    """Build all parts once (deterministic for a seed)."""
    from emogs.synth.rig import close_lips

    rng = np.random.default_rng(seed)
    v, f, uv = canonical_mesh()
    v = close_lips(v)
    eye = _inside_loop(f, RIGHT_EYE) | _inside_loop(f, LEFT_EYE)
    mouth = _inside_loop(f, LIPS_INNER)
    face_f = f[~eye & ~mouth]
    centers, radius = [], 1.22
    for loop in (RIGHT_EYE, LEFT_EYE):
        p = v[loop]
        cxy = p[:, :2].mean(0)
        apex_z = p[:, 2].max() - 0.02  # cornea just behind the lid margin
        centers.append([cxy[0], cxy[1] - 0.03, apex_z - radius])
    centers = np.asarray(centers, np.float32)
    from emogs.synth.texture import EYE_ORIGIN, EYE_TEX

    parts = [_shell(v, face_f, rng)]
    parts += [_eyeball(centers[0], radius, EYE_ORIGIN, EYE_TEX), _eyeball(centers[1], radius, EYE_ORIGIN, EYE_TEX)]
    parts += _mouth_parts(rng)
    parts += _body(rng)
    return HeadGeometry(v, face_f, uv, f[eye], f[mouth], centers, radius, parts)
