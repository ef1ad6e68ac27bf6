"""Render the synthetic head: deform the face, pose the head, rasterise, texture and shade.

Camera: MediaPipe's pinhole model (vertical FOV 63 degrees, principal point at the centre;
`emogs.face.camera.intrinsics`), OpenCV axes. The body (neck, shoulders, background) is static and
rendered once into a plate with depth; the head is rasterised every frame and depth-tested against it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emogs.synth import mesh as M
from emogs.synth import raster
from emogs.synth.rig import BS_INDEX, apply_jaw, deform_face
from emogs.synth.texture import atlas

CAMERA_DISTANCE = 40.0  # cm from the camera to the head origin
LIGHTS = [  # (direction towards the light in camera coordinates, intensity)
    (np.array([-0.45, -0.55, -1.0]), 0.62),
    (np.array([0.7, -0.15, -1.0]), 0.22),
    (np.array([0.0, 0.8, -0.4]), 0.06),
]
AMBIENT = 0.30
SOCKET = np.array([0.45, 0.22, 0.22], np.float32)


def base_camera(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """-> K (3, 3), world_to_cam (4, 4) of the frontal camera when the head is at rest."""
    from emogs.face.camera import intrinsics

    K = intrinsics(width, height)
    W0 = np.diag([1.0, -1.0, -1.0, 1.0])
    W0[:3, 3] = [0.0, -0.05 * height * CAMERA_DISTANCE / K[1, 1], CAMERA_DISTANCE]
    return K, W0


def head_transform(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Head rotation (3, 3) about the neck pivot plus translation (3,) cm -> (4, 4) head -> world-at-rest."""
    T = np.eye(4)
    T[:3, :3] = rot
    T[:3, 3] = M.HEAD_PIVOT - rot @ M.HEAD_PIVOT + trans
    return T


def _normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    out = np.zeros_like(v)
    for k in range(3):
        np.add.at(out, f[:, k], n)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@dataclass
class _Mesh:
    verts: np.ndarray   # (V, 3) world (head frame for head parts)
    faces: np.ndarray   # (F, 3)
    color: np.ndarray   # (V, 3)
    uv: np.ndarray      # (V, 2) atlas pixels
    textured: np.ndarray  # (F,) bool
    cull: np.ndarray    # (F,) bool


def _concat(meshes: list[_Mesh]) -> _Mesh:
    off = np.cumsum([0] + [len(m.verts) for m in meshes])
    return _Mesh(np.concatenate([m.verts for m in meshes]).astype(np.float32),
                 np.concatenate([m.faces + o for m, o in zip(meshes, off)]),
                 np.concatenate([m.color for m in meshes]).astype(np.float32),
                 np.concatenate([m.uv for m in meshes]).astype(np.float32),
                 np.concatenate([m.textured for m in meshes]), np.concatenate([m.cull for m in meshes]))


def _part_mesh(p: M.Part, verts: np.ndarray | None = None) -> _Mesh:
    v = p.verts if verts is None else verts
    tex = p.uv is not None
    uv = p.uv if tex else np.zeros((len(v), 2), np.float32)
    return _Mesh(v, p.faces, p.color, uv, np.full(len(p.faces), tex), np.full(len(p.faces), p.cull))


class HeadRenderer:
    """Renders frames of the synthetic head at a fixed size."""

    def __init__(self, width: int = 512, height: int = 512, seed: int = 0) -> None:
        self.w, self.h, self.seed = width, height, seed
        self.geo = M.head_geometry(seed)
        self.atlas = atlas(seed)
        self.K, self.W0 = base_camera(width, height)
        self._plate()

    # -- static plate: background wall + neck + shoulders ---------------------------------------
    def _plate(self) -> None:
        H, W = self.h, self.w
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        r = np.hypot((xx - 0.45 * W) / W, (yy - 0.35 * H) / H)
        wall = np.array([0.70, 0.72, 0.74], np.float32) * (1.0 - 0.35 * r)[..., None]
        rng = np.random.default_rng(self.seed + 3)
        wall *= (1 + 0.01 * rng.standard_normal((H, W, 1))).astype(np.float32)
        body = _concat([_part_mesh(p) for p in self.geo.parts if p.body])
        img, depth = self._shade(body, self.W0, wall.reshape(-1, 3), np.full(H * W, np.inf, np.float32))
        self.plate, self.plate_depth = img, depth

    # -- per frame ---------------------------------------------------------------------------------
    def render(self, bs: np.ndarray, head: np.ndarray) -> np.ndarray:
        """Blendshapes (52,) and head transform (4, 4) -> RGB uint8 (H, W, 3)."""
        import cv2

        g = self.geo
        face = deform_face(bs, self.seed)
        jaw_open = float(np.clip(bs[BS_INDEX["jawOpen"]], 0, 1))
        meshes = [_Mesh(face, g.face_faces, np.ones_like(face), g.face_uv * np.float32(self.atlas.shape[1]),
                        np.ones(len(g.face_faces), bool), np.ones(len(g.face_faces), bool))]
        sock = face.copy()
        sock[:, 2] -= 0.5
        meshes.append(_Mesh(sock, g.eye_faces, np.tile(SOCKET, (len(face), 1)), np.zeros((len(face), 2), np.float32),
                            np.zeros(len(g.eye_faces), bool), np.zeros(len(g.eye_faces), bool)))
        for p in g.parts:
            if p.body:
                continue
            v = p.verts if p.jaw is None else apply_jaw(p.verts, p.jaw, jaw_open)
            meshes.append(_part_mesh(p, v))
        scene = _concat(meshes)
        img, _ = self._shade(scene, self.W0 @ head, self.plate.copy(), self.plate_depth)
        img = img.reshape(self.h, self.w, 3)
        img = cv2.GaussianBlur(img, (0, 0), 0.6)
        return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)

    def _shade(self, m: _Mesh, w2c: np.ndarray, img: np.ndarray, zbuf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rasterise mesh `m` over `img` (H*W, 3) with depth `zbuf` (H*W,); returns both updated."""
        import cv2

        R, t = w2c[:3, :3].astype(np.float32), w2c[:3, 3].astype(np.float32)
        cam = m.verts @ R.T + t
        scr = raster.project(cam, self.K)
        frag = raster.rasterize(scr, m.faces, self.w, self.h, cull=m.cull, zbuf=zbuf)
        if len(frag.pix) == 0:
            return img, zbuf
        nrm = _normals(cam, m.faces)
        attr = np.concatenate([m.color, m.uv, nrm], 1)
        a = raster.interpolate(frag, m.faces, attr)  # (P, 8)
        col = a[:, :3]
        tex = m.textured[frag.tri]
        if tex.any():
            uv = a[tex, 3:5].astype(np.float32)
            s = cv2.remap(self.atlas, uv[:, :1] - 0.5, uv[:, 1:2] - 0.5, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
            col[tex] = s.reshape(-1, 3)
        n = a[:, 5:8]
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
        view = -(frag.bary[:, :, None] * cam[m.faces[frag.tri]]).sum(1)
        view /= np.maximum(np.linalg.norm(view, axis=1, keepdims=True), 1e-9)
        n = np.where(((n * view).sum(1) < 0)[:, None], -n, n)  # two-sided
        light = np.full(len(n), AMBIENT, np.float32)
        spec = np.zeros(len(n), np.float32)
        for d, k in LIGHTS:
            d = (d / np.linalg.norm(d)).astype(np.float32)
            ndl = n @ d
            light += k * np.clip(ndl * 0.85 + 0.15, 0, None)  # slightly wrapped Lambert
            h = d + view
            h /= np.linalg.norm(h, axis=1, keepdims=True)
            spec += k * np.clip((n * h).sum(1), 0, 1) ** 24
        out = col * light[:, None] + 0.10 * spec[:, None]
        img[frag.pix] = out
        zbuf = zbuf.copy()
        zbuf[frag.pix] = frag.depth
        return img, zbuf
