"""Cameras from MediaPipe's facial transformation matrix, and MediaPipe's canonical face mesh.

MediaPipe's face geometry pipeline (the `face_landmarker.task` metadata) fits its canonical face model
(centimetres; x to the viewer's right, y up, z out of the face towards the viewer) to the landmarks
with a perspective camera: vertical FOV 63 degrees, near 1, far 10000, OpenGL convention (camera looks
down -z, y up), principal point at the image centre, square pixels. The facial transformation matrix
maps canonical-model points to that camera space.

emogs uses OpenCV cameras (x right, y down, z forward) and keeps the head still (world = canonical
model space, cm), so per frame:

    world_to_cam = diag(1, -1, -1, 1) @ transform        (OpenGL camera -> OpenCV camera)
    K = [[f, 0, W/2], [0, f, H/2], [0, 0, 1]],  f = (H / 2) / tan(63 deg / 2)

The pixel convention is MediaPipe's: normalized landmark x * W is a pixel coordinate whose centre of
the image is W / 2 (so pixel centres at i + 0.5), the same one `FaceResult.landmarks` uses.
`scripts/camera_reprojection.py` measures how well this projects the canonical mesh onto the detected
landmarks (numbers in docs/au_mapping.md, section "Camera").
"""
from __future__ import annotations

import functools
import math
import struct
import zipfile

import numpy as np

from emogs.io.assets import face_landmarker_task

VERTICAL_FOV_DEG = 63.0
NEAR, FAR = 1.0, 10000.0
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # flips y and z: OpenGL camera <-> OpenCV camera


def intrinsics(width: int, height: int, fov_deg: float = VERTICAL_FOV_DEG) -> np.ndarray:
    """(3, 3) pinhole K in pixels for MediaPipe's camera on a `width` x `height` image."""
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def camera_from_transform(transform: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe facial transformation matrix (4, 4) -> (K (3, 3), world_to_cam (4, 4) OpenCV)."""
    transform = np.asarray(transform, np.float64)
    return intrinsics(width, height), GL_TO_CV @ transform


def project(points: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray) -> np.ndarray:
    """World points (..., N, 3) -> pixels (..., N, 2) through OpenCV K @ world_to_cam."""
    p = points @ world_to_cam[..., :3, :3].swapaxes(-1, -2) + world_to_cam[..., None, :3, 3]  # (..., N, 3)
    uvw = p @ K.T
    return uvw[..., :2] / uvw[..., 2:3]


# -- head pose ---------------------------------------------------------------------------------------
def head_pose(transform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenFace-style head pose from a transformation matrix (4, 4) (or stacked (..., 4, 4)).

    Returns pose_R (..., 3): Euler angles (Rx, Ry, Rz) in radians with R = Rx @ Ry @ Rz, in camera
    coordinates with OpenFace's axes (x right, y down, z away from the camera) for both the camera and
    the head, so a frontal face looking into the camera is (0, 0, 0); Rx > 0 pitches the face down
    (chin towards the chest), Ry > 0 turns it to the viewer's left... see OpenFace's convention. And
    pose_T (..., 3): the head origin (canonical model origin, between the ears behind the nose) in the
    OpenCV camera frame, centimetres (OpenFace reports millimetres).
    """
    m = np.asarray(transform, np.float64)
    F = np.diag([1.0, -1.0, -1.0])
    R = F @ m[..., :3, :3] @ F  # head axes and camera axes both in OpenCV/OpenFace convention
    T = m[..., :3, 3] * np.array([1.0, -1.0, -1.0])
    rx = np.arctan2(-R[..., 1, 2], R[..., 2, 2])
    ry = np.arcsin(np.clip(R[..., 0, 2], -1.0, 1.0))
    rz = np.arctan2(-R[..., 0, 1], R[..., 0, 0])
    return np.stack([rx, ry, rz], -1), T


def euler_to_matrix(pose_R: np.ndarray) -> np.ndarray:
    """Inverse of `head_pose`'s angles: (..., 3) -> (..., 3, 3) R = Rx @ Ry @ Rz (OpenCV axes)."""
    a = np.asarray(pose_R, np.float64)
    cx, cy, cz = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sx, sy, sz = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    R = np.stack([
        cy * cz, -cy * sz, sy,
        cx * sz + cz * sx * sy, cx * cz - sx * sy * sz, -cy * sx,
        sx * sz - cx * cz * sy, cz * sx + cx * sy * sz, cx * cy], -1)
    return R.reshape(a.shape[:-1] + (3, 3))


# -- canonical face mesh -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _geometry_metadata() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse `geometry_pipeline_metadata_landmarks.binarypb` from the .task bundle.

    Proto (mediapipe/modules/face_geometry/protos): GeometryPipelineMetadata {1: Mesh3d canonical_mesh,
    2: repeated WeightedLandmarkRef procrustes_landmark_basis {1: landmark_id, 2: weight}, 3: input_source};
    Mesh3d {1: vertex_type (0 = VERTEX_PT: x y z u v), 2: primitive_type (0 = TRIANGLE),
    3: repeated float vertex_buffer, 4: repeated uint32 index_buffer}. The installed mediapipe wheel
    ships no *_pb2 modules, so this reads the protobuf wire format directly (packed or not).
    """
    with zipfile.ZipFile(face_landmarker_task()) as z:
        blob = z.read("geometry_pipeline_metadata_landmarks.binarypb")
    top = _fields(blob)
    mesh = _fields(top[1][0])
    vb = np.array(_floats(mesh.get(3, [])), np.float32).reshape(-1, 5)  # (468, 5) x y z u v
    ib = np.array(_varints(mesh.get(4, [])), np.int64).reshape(-1, 3)  # (F, 3)
    ids, weights = [], []
    for ref in top.get(2, []):
        f = _fields(ref)
        ids.append(_varints(f.get(1, [0]))[0])
        weights.append(_floats(f.get(2, [0.0]))[0])
    return vb[:, :3].copy(), ib, vb[:, 3:5].copy(), np.stack([np.array(ids), np.array(weights, np.float32)])


def canonical_face_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's canonical face model: vertices (468, 3) cm, faces (F, 3) int64, uvs (468, 2) in [0, 1].

    Vertex i corresponds to landmark i of the 478 (the 10 iris landmarks have no mesh vertex).
    Coordinates: x to the viewer's right, y up, z towards the viewer (out of the face), cm.
    """
    from emogs.errors import MissingAssetError
    from emogs.io.assets import packed_asset

    try:
        v, f, uv, _ = _geometry_metadata()
    except MissingAssetError:
        p = packed_asset("canonical_face_mesh.npz")
        if p is None:
            raise
        with np.load(p, allow_pickle=False) as z:
            return z["vertices"].copy(), z["faces"].copy(), z["uvs"].copy()
    return v.copy(), f.copy(), uv.copy()


def procrustes_basis() -> tuple[np.ndarray, np.ndarray]:
    """Landmark ids (K,) and weights (K,) MediaPipe uses to fit the pose (weighted Procrustes)."""
    *_, b = _geometry_metadata()
    return b[0].astype(np.int64), b[1].astype(np.float32)


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes) -> dict[int, list]:
    """Protobuf message -> {field number: [raw values]}: ints (varint), bytes (length-delimited),
    ('f32', bytes) for fixed32 and ('f64', bytes) for fixed64."""
    out: dict[int, list] = {}
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _read_varint(buf, i)
        elif wt == 1:
            val, i = ("f64", buf[i:i + 8]), i + 8
        elif wt == 2:
            n, i = _read_varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wt == 5:
            val, i = ("f32", buf[i:i + 4]), i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        out.setdefault(num, []).append(val)
    return out


def _floats(vals: list) -> list[float]:
    """Repeated float field values, packed (bytes) or not (('f32', 4 bytes) each)."""
    res: list[float] = []
    for v in vals:
        if isinstance(v, tuple):
            res.append(struct.unpack("<f", v[1])[0])
        elif isinstance(v, (bytes, bytearray)):
            res.extend(struct.unpack(f"<{len(v) // 4}f", v))
        else:
            res.append(float(v))
    return res


def _varints(vals: list) -> list[int]:
    """Repeated varint field values, packed (bytes) or not (ints)."""
    res: list[int] = []
    for v in vals:
        if isinstance(v, (bytes, bytearray)):
            i = 0
            while i < len(v):
                x, i = _read_varint(v, i)
                res.append(x)
        else:
            res.append(int(v))
    return res
