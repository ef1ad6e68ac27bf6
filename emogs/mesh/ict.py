"""The ICT-FaceKit Light face model: loading (compact npz or the upstream OBJ folder), triangles, regions.

ICT-FaceKit (USC Institute for Creative Technologies, MIT licence; https://github.com/ICT-VGL/ICT-FaceKit)
is a full-head linear model: a generic neutral mesh (26,719 vertices), 100 identity shape modes (PCA) and
53 expression blendshapes named like ARKit's (`browInnerUp_L`, `jawOpen`, `mouthSmile_R`, ...):

    vertices = neutral + sum_i identity_i * identity_basis[i] + sum_j expression_j * expression_basis[j]

Coordinates: centimetres, x to the viewer's right (the subject's left, `_L` shapes act at x > 0), y up,
z out of the face towards the viewer; the same axes as MediaPipe's canonical face (`emogs.face.camera`),
with another origin (ICT's is ~5 cm further back and 1 cm lower relative to the face).

Two on-disk layouts are read:
- the compact `ict_facekit_light.npz` (arrays `neutral`, `faces` (quads), `uvs`, `face_uvs`,
  `expression_names`, `expression_deltas`, `identity_names`, `identity_deltas`, `region_names`,
  `region_ranges` (inclusive vertex and quad ranges), `landmark68_vertices`, `fitting_vertices`,
  `rigid_vertices`);
- the upstream `FaceXModel/` folder: `generic_neutral_mesh.obj`, one OBJ per shape (`identity000.obj` ...,
  `browDown_L.obj` ...: full meshes, the mode is the OBJ minus the neutral), `vertex_indices.json`.
  The upstream folder does not store the region table; it is the one in upstream's README (`ICT_REGIONS`).

The model is never copied into this repository: `find_ict` looks for it (explicit path, `$EMOGS_ICT_FACEKIT`,
default places) and raises an `InputError` naming where to get it. Quads are split into triangles (the
model stores its triangles as quads with a repeated vertex). Everything here is arrays in, arrays out.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from emogs.errors import InputError

NPZ_NAME = "ict_facekit_light.npz"
UPSTREAM_URL = "https://github.com/ICT-VGL/ICT-FaceKit"
ENV_VAR = "EMOGS_ICT_FACEKIT"
NUM_VERTICES = 26719
NUM_IDENTITY = 100
NUM_EXPRESSION = 53

# Upstream README's region table: name -> (first vertex, last vertex, first quad, last quad), inclusive.
ICT_REGIONS: dict[str, tuple[int, int, int, int]] = {
    "face": (0, 9408, 0, 9229),
    "head_neck": (9409, 11247, 9230, 11143),
    "mouth_socket": (11248, 13293, 11144, 13225),
    "eye_socket_left": (13294, 13677, 13226, 13629),
    "eye_socket_right": (13678, 14061, 13630, 14033),
    "gums_tongue": (14062, 17038, 14034, 17005),
    "teeth": (17039, 21450, 17006, 21495),
    "eyeball_left": (21451, 23020, 21496, 23093),
    "eyeball_right": (23021, 24590, 23094, 24691),
    "lacrimal_left": (24591, 24794, 24692, 24854),
    "lacrimal_right": (24795, 24998, 24855, 25017),
    "eye_blend_left": (24999, 25022, 25018, 25032),
    "eye_blend_right": (25023, 25046, 25033, 25047),
    "eye_occlusion_left": (25047, 25198, 25048, 25175),
    "eye_occlusion_right": (25199, 25350, 25176, 25303),
    "eyelashes_left": (25351, 26034, 25304, 25843),
    "eyelashes_right": (26035, 26718, 25844, 26383),
    "narrow_face": (0, 6705, 0, 6559),  # the front of the face only: a sub-range of "face"
}
# What a head model usually keeps (no eyelashes, eye occlusion/blend shells, lacrimal fluid).
HEAD_REGIONS: tuple[str, ...] = ("face", "head_neck", "mouth_socket", "eye_socket_left", "eye_socket_right",
                                 "gums_tongue", "teeth", "eyeball_left", "eyeball_right")


@dataclass(frozen=True)
class Region:
    """Half-open ranges: vertices [v0, v1), triangles [t0, t1) of a `FaceModel`."""
    v0: int
    v1: int
    t0: int
    t1: int


@dataclass(frozen=True, eq=False)
class FaceModel:
    """ICT-FaceKit as numpy arrays. V vertices, T triangles.

    neutral (V, 3) f32 cm; identity_basis (I, V, 3); expression_basis (E, V, 3); triangles (T, 3) int64
    (counter-clockwise seen from outside); triangle_uvs (T, 3) int64 into uvs (U, 2); regions
    {name: Region}; landmark68 (68,) vertex of each iBUG-68 landmark; fitting_vertices / rigid_vertices
    (upstream's index lists); triangle_quad (T,) the source quad of each triangle.
    """
    neutral: np.ndarray
    identity_basis: np.ndarray
    expression_basis: np.ndarray
    expression_names: tuple[str, ...]
    identity_names: tuple[str, ...]
    triangles: np.ndarray
    uvs: np.ndarray
    triangle_uvs: np.ndarray
    triangle_quad: np.ndarray
    regions: dict[str, Region]
    landmark68: np.ndarray
    fitting_vertices: np.ndarray
    rigid_vertices: np.ndarray
    source: str = ""
    _torch: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_vertices(self) -> int:
        return len(self.neutral)

    def expression_index(self, name: str) -> int:
        """Index of an expression shape; accepts ICT (`mouthSmile_L`) or MediaPipe (`mouthSmileLeft`) names."""
        n = ict_name(name)
        try:
            return self.expression_names.index(n)
        except ValueError:
            raise KeyError(f"no expression shape {name!r}") from None

    def vertices(self, identity=None, expression=None):
        """Mesh vertices (..., V, 3) for identity (..., I) and expression (..., E) coefficients (either may be
        None = zeros). numpy in -> numpy out (float32); torch in -> torch out (bases cached per device/dtype)."""
        if _is_torch(identity) or _is_torch(expression):
            ref = identity if _is_torch(identity) else expression
            neutral, ib, eb = self.torch_bases(ref.device, ref.dtype)
            out = neutral
            if identity is not None:
                out = out + (identity @ ib).unflatten(-1, (-1, 3))
            if expression is not None:
                out = out + (expression @ eb).unflatten(-1, (-1, 3))
            return out
        out = self.neutral
        if identity is not None:
            w = np.asarray(identity, np.float32)
            out = out + (w @ self.identity_basis.reshape(len(self.identity_basis), -1)).reshape(w.shape[:-1] + (-1, 3))
        if expression is not None:
            w = np.asarray(expression, np.float32)
            out = out + (w @ self.expression_basis.reshape(len(self.expression_basis), -1)).reshape(w.shape[:-1] + (-1, 3))
        return out.astype(np.float32)

    def torch_bases(self, device=None, dtype=None):
        """(neutral (V, 3), identity (I, 3V), expression (E, 3V)) as torch tensors, cached."""
        import torch

        dtype = dtype or torch.float32
        key = (str(device), str(dtype))
        if key not in self._torch:
            t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
            self._torch[key] = (t(self.neutral), t(self.identity_basis.reshape(len(self.identity_basis), -1)),
                                t(self.expression_basis.reshape(len(self.expression_basis), -1)))
        return self._torch[key]

    def region_vertices(self, names: Iterable[str]) -> np.ndarray:
        """Sorted unique vertex indices of the named regions."""
        names = list(names)
        self._check_regions(names)
        return np.unique(np.concatenate([np.arange(self.regions[n].v0, self.regions[n].v1) for n in names]))

    def region_triangles(self, names: Iterable[str]) -> np.ndarray:
        """Sorted unique triangle indices of the named regions."""
        names = list(names)
        self._check_regions(names)
        return np.unique(np.concatenate([np.arange(self.regions[n].t0, self.regions[n].t1) for n in names]))

    def vertex_region(self) -> np.ndarray:
        """(V,) index into `list(regions)` of each vertex's region (sub-ranges like narrow_face excluded)."""
        out = np.full(self.num_vertices, -1, np.int64)
        for k, (n, r) in enumerate(self.regions.items()):
            if n != "narrow_face":
                out[r.v0:r.v1] = k
        return out

    def submesh(self, regions: Sequence[str]) -> "FaceModel":
        """A model with only the named regions' triangles, re-indexed. Vertices: the regions' own plus the
        seam vertices their triangles borrow from neighbouring regions (regions are stitched together).
        `regions` of the result: the named ones and any other region kept whole (e.g. narrow_face in face)."""
        regions = list(dict.fromkeys(regions))
        self._check_regions(regions)
        keep_t = self.region_triangles(regions)
        keep_v = np.union1d(self.region_vertices(regions), self.triangles[keep_t].ravel())
        remap = np.full(self.num_vertices, -1, np.int64)
        remap[keep_v] = np.arange(len(keep_v))
        tmap = np.full(len(self.triangles), -1, np.int64)
        tmap[keep_t] = np.arange(len(keep_t))
        new_regions = {}
        for n, r in self.regions.items():
            vs, ts = remap[r.v0:r.v1], tmap[r.t0:r.t1]
            if n in regions or ((vs >= 0).all() and (ts >= 0).all()):
                new_regions[n] = Region(int(vs.min()), int(vs.max()) + 1, int(ts.min()), int(ts.max()) + 1)

        def sel(idx: np.ndarray) -> np.ndarray:
            m = remap[idx]
            return m[m >= 0]

        return FaceModel(self.neutral[keep_v], self.identity_basis[:, keep_v], self.expression_basis[:, keep_v],
                         self.expression_names, self.identity_names, remap[self.triangles[keep_t]], self.uvs,
                         self.triangle_uvs[keep_t], self.triangle_quad[keep_t], new_regions, remap[self.landmark68],
                         sel(self.fitting_vertices), sel(self.rigid_vertices), self.source)

    def select_shapes(self, identity: int | None = None, expression: Sequence[str] | None = None) -> "FaceModel":
        """The first `identity` identity modes and / or the named expression shapes only."""
        ib, inames = self.identity_basis, self.identity_names
        if identity is not None:
            ib, inames = ib[:identity], inames[:identity]
        eb, enames = self.expression_basis, self.expression_names
        if expression is not None:
            idx = [self.expression_index(n) for n in expression]
            eb, enames = eb[idx], tuple(self.expression_names[i] for i in idx)
        return replace(self, identity_basis=ib, identity_names=inames, expression_basis=eb,
                       expression_names=enames, _torch={})

    def _check_regions(self, names: Sequence[str]) -> None:
        bad = [n for n in names if n not in self.regions]
        if bad:
            raise KeyError(f"unknown region(s) {bad}; the model has {list(self.regions)}")


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def ict_name(name: str) -> str:
    """MediaPipe / ARKit blendshape name -> ICT spelling: `mouthSmileLeft` -> `mouthSmile_L`."""
    for side, s in (("Left", "_L"), ("Right", "_R")):
        if name.endswith(side) and name not in ("jawLeft", "jawRight", "mouthLeft", "mouthRight"):
            return name[: -len(side)] + s
    return name


BILATERAL_IN_MEDIAPIPE = ("browInnerUp", "cheekPuff")  # one MediaPipe score for ICT's _L and _R shapes


def mediapipe_name(name: str) -> str:
    """ICT expression name -> MediaPipe's blendshape name; `browInnerUp_L/_R` -> `browInnerUp` and
    `cheekPuff_L/_R` -> `cheekPuff` (MediaPipe has one, bilateral score for each)."""
    for b in BILATERAL_IN_MEDIAPIPE:
        if name in (b + "_L", b + "_R"):
            return b
    if name.endswith("_L"):
        return name[:-2] + "Left"
    if name.endswith("_R"):
        return name[:-2] + "Right"
    return name


# -- triangles ---------------------------------------------------------------------------------------
def triangulate(quads: np.ndarray, values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Quads (Q, 4) (a triangle stored with one repeated vertex) -> triangles (T, 3), source quad (T,).
    A real quad (a, b, c, d) becomes (a, b, c), (a, c, d); a degenerate one its three distinct corners in
    order. With `values` (Q, 4) (per-corner data such as UV indices) those are split the same way instead."""
    q = np.asarray(quads, np.int64)
    v = q if values is None else np.asarray(values, np.int64)
    dup = np.zeros(q.shape, bool)  # corner k repeats corner k+1 (cyclically)
    for k in range(4):
        dup[:, k] = q[:, k] == q[:, (k + 1) % 4]
    full = np.flatnonzero(~dup.any(1))
    t = np.empty((len(full), 2, 3), np.int64)
    t[:, 0] = v[full][:, [0, 1, 2]]
    t[:, 1] = v[full][:, [0, 2, 3]]
    tris, src = [t.reshape(-1, 3)], [np.repeat(full, 2)]
    deg = np.flatnonzero(dup.any(1))
    if len(deg):
        corners = np.array([[k for k in range(4) if not dup[i, k]][:3] for i in deg])  # (D, 3)
        tris.append(np.take_along_axis(v[deg], corners, 1))
        src.append(deg)
    tri, s = np.concatenate(tris), np.concatenate(src)
    order = np.argsort(s, kind="stable")  # keep the quad order, so regions stay contiguous ranges
    return tri[order], s[order]


def _triangle_regions(quad_regions: dict[str, tuple[int, int, int, int]], triangle_quad: np.ndarray
                      ) -> dict[str, Region]:
    out = {}
    for name, (v0, v1, q0, q1) in quad_regions.items():
        t = np.flatnonzero((triangle_quad >= q0) & (triangle_quad <= q1))
        out[name] = Region(int(v0), int(v1) + 1, int(t[0]), int(t[-1]) + 1)
    return out


def _build(neutral, identity, expression, expression_names, identity_names, quads, uvs, quad_uvs,
           quad_regions, landmark68, fitting, rigid, source) -> FaceModel:
    tri, src = triangulate(quads)
    tuv, _ = triangulate(quads, quad_uvs)
    return FaceModel(np.asarray(neutral, np.float32), np.asarray(identity, np.float32),
                     np.asarray(expression, np.float32), tuple(str(n) for n in expression_names),
                     tuple(str(n) for n in identity_names), tri, np.asarray(uvs, np.float32), tuv, src,
                     _triangle_regions(quad_regions, src), np.asarray(landmark68, np.int64),
                     np.asarray(fitting, np.int64), np.asarray(rigid, np.int64), source)


# -- loading -----------------------------------------------------------------------------------------
def default_places() -> list[Path]:
    """Where `find_ict` looks when no path and no `$EMOGS_ICT_FACEKIT` is given, in order."""
    repo = Path(__file__).resolve().parents[2]
    cache = Path(os.environ.get("EMOGS_CACHE", Path.home() / ".cache" / "emogs"))
    places = [Path.cwd() / ".." / "shared" / "data" / "assets" / "ict-facekit",
              repo.parent / "shared" / "data" / "assets" / "ict-facekit",
              cache / "ict-facekit"]
    return list(dict.fromkeys(p.resolve() if p.exists() else p for p in places))


def _usable(p: Path) -> Path | None:
    """A path that holds the model: the npz itself, a folder with the npz, or an upstream OBJ folder."""
    if p.is_file() and p.suffix == ".npz":
        return p
    if p.is_dir():
        if (p / NPZ_NAME).is_file():
            return p / NPZ_NAME
        if (p / "generic_neutral_mesh.obj").is_file():
            return p
        for sub in ("FaceXModel",):
            if (p / sub / "generic_neutral_mesh.obj").is_file():
                return p / sub
    return None


def find_ict(path: str | os.PathLike | None = None) -> Path:
    """Locate ICT-FaceKit: `path` (the npz, its folder, or an upstream FaceXModel folder), else
    `$EMOGS_ICT_FACEKIT`, else `default_places()`. InputError when not found."""
    if path is not None:
        p = Path(path)
        found = _usable(p)
        if found is None:
            raise InputError(f"{p}: no ICT-FaceKit model there (need {NPZ_NAME} or an upstream FaceXModel folder "
                             f"with generic_neutral_mesh.obj); get it from {UPSTREAM_URL} (MIT)")
        return found
    env = os.environ.get(ENV_VAR)
    if env:
        found = _usable(Path(env))
        if found is None:
            raise InputError(f"${ENV_VAR}={env}: no ICT-FaceKit model there (need {NPZ_NAME} or an upstream "
                             f"FaceXModel folder); get it from {UPSTREAM_URL} (MIT)")
        return found
    for p in default_places():
        found = _usable(p)
        if found is not None:
            return found
    raise InputError(f"ICT-FaceKit face model not found (looked in ${ENV_VAR} and "
                     f"{', '.join(str(p) for p in default_places())}); download the FaceXModel folder from "
                     f"{UPSTREAM_URL} (MIT licence) and set ${ENV_VAR} to it")


def ict_available(path: str | os.PathLike | None = None) -> bool:
    try:
        find_ict(path)
        return True
    except InputError:
        return False


def load_ict(path: str | os.PathLike | None = None) -> FaceModel:
    """The ICT-FaceKit model (see `find_ict` for where it is looked for); cached per resolved file."""
    return _load_cached(str(Path(find_ict(path)).resolve()))


@functools.lru_cache(maxsize=2)
def _load_cached(path: str) -> FaceModel:
    p = Path(path)
    return load_npz(p) if p.is_file() else load_obj_folder(p)


def load_npz(path: str | os.PathLike) -> FaceModel:
    """Read the compact `ict_facekit_light.npz`."""
    try:
        z = np.load(path)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the ICT-FaceKit npz ({e})") from None
    with z:
        need = {"neutral", "faces", "expression_names", "expression_deltas", "identity_deltas", "region_names",
                "region_ranges"}
        missing = need - set(z.files)
        if missing:
            raise InputError(f"{path}: not an ICT-FaceKit npz (missing {sorted(missing)})")
        regions = {str(n): tuple(int(x) for x in r) for n, r in zip(z["region_names"], z["region_ranges"])}
        n_id = len(z["identity_deltas"])
        get = lambda k, d: z[k] if k in z.files else d  # noqa: E731
        return _build(z["neutral"], z["identity_deltas"], z["expression_deltas"], z["expression_names"],
                      get("identity_names", np.array([f"identity{i:03d}" for i in range(n_id)])), z["faces"],
                      get("uvs", np.zeros((0, 2))), get("face_uvs", np.zeros_like(z["faces"])), regions,
                      get("landmark68_vertices", np.zeros(0)), get("fitting_vertices", np.zeros(0)),
                      get("rigid_vertices", np.zeros(0)), str(path))


def read_obj(path: str | os.PathLike, faces: bool = False):
    """Minimal OBJ reader: vertices (V, 3) f32; with faces=True also uvs (U, 2), quads (F, 4) and their UV
    indices (F, 4), 0-based; a triangle becomes a quad repeating its last corner (the npz's convention)."""
    text = Path(path).read_text()
    lines = text.splitlines()
    v = np.array(" ".join(ln[2:] for ln in lines if ln.startswith("v ")).split(), np.float32).reshape(-1, 3)
    if not faces:
        return v
    vt = np.array(" ".join(ln[3:] for ln in lines if ln.startswith("vt ")).split(), np.float32).reshape(-1, 2)
    fl = [ln.split()[1:] for ln in lines if ln.startswith("f ")]
    if any(len(f) not in (3, 4) for f in fl):
        raise InputError(f"{path}: faces must be triangles or quads")
    fl = [f if len(f) == 4 else f + f[2:] for f in fl]  # a triangle as a quad repeating its last corner
    corners = np.array([[(c.split("/") + [c])[:2] for c in f] for f in fl], np.int64)  # (F, 4, 2) 1-based
    return v, vt, corners[..., 0] - 1, corners[..., 1] - 1


def load_obj_folder(folder: str | os.PathLike, allow_missing: bool = False) -> FaceModel:
    """Import the upstream `FaceXModel/` folder (one OBJ per shape + `vertex_indices.json`).

    Shapes listed in `vertex_indices.json` ("expressions") and `identity000.obj` ... are read; a model
    whose files are not all there is an InputError unless `allow_missing` (then only the shapes present
    are in the model, e.g. for the 5-file sample)."""
    folder = Path(folder)
    neutral_obj = folder / "generic_neutral_mesh.obj"
    meta_json = folder / "vertex_indices.json"
    if not neutral_obj.is_file() or not meta_json.is_file():
        raise InputError(f"{folder}: not an ICT-FaceKit FaceXModel folder (need generic_neutral_mesh.obj and "
                         f"vertex_indices.json; get it from {UPSTREAM_URL})")
    meta = json.loads(meta_json.read_text())
    neutral, uvs, quads, quad_uvs = read_obj(neutral_obj, faces=True)
    expr_names = [n for n in meta["expressions"] if (folder / f"{n}.obj").is_file()]
    id_files = sorted(folder.glob("identity[0-9][0-9][0-9].obj"))
    n_id_expected = NUM_IDENTITY
    missing = [n for n in meta["expressions"] if n not in expr_names]
    missing_id = max(0, n_id_expected - len(id_files))
    if (missing or missing_id) and not allow_missing:
        raise InputError(f"{folder}: incomplete FaceXModel folder ({len(missing)} expression and {missing_id} "
                         f"identity OBJs missing); get the full folder from {UPSTREAM_URL}")

    def delta(p: Path) -> np.ndarray:
        v = read_obj(p)
        if v.shape != neutral.shape:
            raise InputError(f"{p}: {len(v)} vertices, the neutral mesh has {len(neutral)}")
        return v - neutral

    expr = np.stack([delta(folder / f"{n}.obj") for n in expr_names]) if expr_names else np.zeros((0,) + neutral.shape)
    ident = np.stack([delta(p) for p in id_files]) if id_files else np.zeros((0,) + neutral.shape)
    # upstream's region table belongs to its topology; another mesh gets one region holding everything
    regions = ICT_REGIONS if len(neutral) == NUM_VERTICES else {"all": (0, len(neutral) - 1, 0, len(quads) - 1)}
    return _build(neutral, ident, expr, expr_names, [p.stem for p in id_files], quads, uvs, quad_uvs, regions,
                  meta.get("idx_to_landmark_verts", []), meta.get("idx_to_fitting_verts", []),
                  meta.get("idx_to_rigid_verts", []), str(folder))


def save_npz(model: FaceModel, path: str | os.PathLike) -> None:
    """Write a model (e.g. imported from the upstream folder) as the compact npz `load_npz` reads.
    Triangles are written as quads with the last vertex repeated."""
    from emogs.io.atomic import atomic_path

    quads = np.concatenate([model.triangles, model.triangles[:, 2:]], 1)
    quv = np.concatenate([model.triangle_uvs, model.triangle_uvs[:, 2:]], 1)
    names = list(model.regions)
    ranges = np.array([[model.regions[n].v0, model.regions[n].v1 - 1, model.regions[n].t0, model.regions[n].t1 - 1]
                       for n in names], np.int32)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, neutral=model.neutral, faces=quads.astype(np.int32), uvs=model.uvs,
                            face_uvs=quv.astype(np.int32), expression_names=np.array(model.expression_names),
                            expression_deltas=model.expression_basis, identity_names=np.array(model.identity_names),
                            identity_deltas=model.identity_basis, region_names=np.array(names),
                            region_ranges=ranges, landmark68_vertices=model.landmark68.astype(np.int32),
                            fitting_vertices=model.fitting_vertices.astype(np.int32),
                            rigid_vertices=model.rigid_vertices.astype(np.int32))


# -- geometry helpers --------------------------------------------------------------------------------
def vertex_normals(verts: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3) of a triangle mesh."""
    v = np.asarray(verts, np.float64)
    n = np.cross(v[triangles[:, 1]] - v[triangles[:, 0]], v[triangles[:, 2]] - v[triangles[:, 0]])
    out = np.zeros_like(v)
    for k in range(3):
        np.add.at(out, triangles[:, k], n)
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def surface_points(verts, triangles: np.ndarray, tri_index: np.ndarray, bary: np.ndarray):
    """Points on a mesh: sum_k bary[:, k] * verts[..., triangles[tri_index, k]]. verts (..., V, 3) numpy or
    torch -> (..., P, 3)."""
    idx = np.asarray(triangles)[np.asarray(tri_index)]  # (P, 3)
    if _is_torch(verts):
        import torch

        b = torch.as_tensor(np.asarray(bary), dtype=verts.dtype, device=verts.device)
        i = torch.as_tensor(idx, device=verts.device)
        return (verts[..., i, :] * b[..., None]).sum(-2)
    v = np.asarray(verts)
    return (v[..., idx, :] * np.asarray(bary, v.dtype)[..., None]).sum(-2)
