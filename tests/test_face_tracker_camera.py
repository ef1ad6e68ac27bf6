"""FaceTracker on real frames, and the camera built from MediaPipe's transform (reprojection)."""
from __future__ import annotations

import numpy as np
import pytest

from emogs.face.camera import (GL_TO_CV, camera_from_transform, canonical_face_mesh, euler_to_matrix, head_pose,
                               procrustes_basis, project)
from emogs.face.tracker import FaceTracker
from emogs.io.media import probe, read_frames


@pytest.fixture(scope="module")
def tracked(shared_data):
    """(frames, results) for the first second of macron_50s.mp4 (512 px, 30 fps), every 3rd frame."""
    path = shared_data / "video" / "macron_50s.mp4"
    fps = probe(path).fps
    frames, results = [], []
    with FaceTracker(video_mode=True) as tr:
        for i, f in enumerate(read_frames(path, max_seconds=1.0)):
            r = tr.track(f, int(i * 1000 / fps))
            if i % 3 == 0:
                frames.append(f)
                results.append(r)
    return frames, results


def test_tracker_result_contract(tracked):
    frames, results = tracked
    h, w = frames[0].shape[:2]
    for r in results:
        assert r is not None and r.num_faces == 1
        assert r.landmarks.shape == (478, 3) and r.landmarks.dtype == np.float32
        assert r.blendshapes.shape == (52,) and np.all((r.blendshapes >= 0) & (r.blendshapes <= 1))
        assert r.transform.shape == (4, 4)
        R = r.transform[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-3)  # rigid, no scale
        assert 0 < r.landmarks[:, 0].min() and r.landmarks[:, 0].max() < w
        assert 0 < r.landmarks[:, 1].min() and r.landmarks[:, 1].max() < h
        assert r.confidence == 1.0  # whole face in view
        # z has the pixel scale of x: the face's depth extent is a sizeable fraction of its width
        assert 0.2 < np.ptp(r.landmarks[:, 2]) / np.ptp(r.landmarks[:, 0]) < 2.0


def test_tracker_no_face_and_close():
    with FaceTracker(video_mode=False) as tr:
        assert tr.track(np.full((256, 256, 3), 127, np.uint8)) is None
    with pytest.raises(RuntimeError):
        tr.track(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError):
        FaceTracker(video_mode=False).track(np.zeros((64, 64), np.uint8))


def test_canonical_mesh():
    v, f, uv = canonical_face_mesh()
    assert v.shape == (468, 3) and f.ndim == 2 and f.shape[1] == 3 and f.max() == 467
    assert uv.shape == (468, 2) and uv.min() >= 0 and uv.max() <= 1
    assert v[1, 2] > v[234, 2]  # nose tip in front of the cheek side (z towards the viewer)
    assert v[10, 1] > v[152, 1]  # forehead above the chin (y up)
    ids, w = procrustes_basis()
    assert len(ids) == len(w) > 10 and np.all(w > 0)


def _reprojection(frames, results, flip=GL_TO_CV):
    v, _, _ = canonical_face_mesh()
    errs = []
    for f, r in zip(frames, results):
        K, w2c = camera_from_transform(r.transform, f.shape[1], f.shape[0])
        w2c = flip @ GL_TO_CV @ w2c  # flip=GL_TO_CV -> identity (the real convention)
        uv = project(v, K, w2c)
        iod = np.linalg.norm(r.landmarks[33, :2] - r.landmarks[263, :2])
        errs.append(np.linalg.norm(uv - r.landmarks[:468, :2], axis=1).mean() / iod)
    return float(np.mean(errs))


def test_camera_reprojects_canonical_mesh(tracked):
    frames, results = tracked
    err = _reprojection(frames, results)
    # measured ~0.04 inter-ocular distances (~5 px at 512 px; scripts/camera_reprojection.py):
    # what is left is the person's face shape and expression vs the canonical face, not the camera.
    assert err < 0.08
    # the OpenGL matrix used as if it were OpenCV (no y/z flip) projects nowhere near the face
    assert _reprojection(frames, results, flip=np.eye(4)) > 5 * err


def test_head_pose_conventions():
    R, T = head_pose(np.array([[1, 0, 0, 1.0], [0, 1, 0, -2.0], [0, 0, 1, -40.0], [0, 0, 0, 1]]))
    np.testing.assert_allclose(R, 0, atol=1e-12)
    np.testing.assert_allclose(T, [1.0, 2.0, 40.0])  # OpenCV: y down, z forward
    ang = np.array([0.2, -0.3, 0.1])
    m = np.eye(4)
    F = np.diag([1.0, -1.0, -1.0])
    m[:3, :3] = F @ euler_to_matrix(ang) @ F
    np.testing.assert_allclose(head_pose(m)[0], ang, atol=1e-9)


def test_head_pose_real_is_near_frontal(tracked):
    _, results = tracked
    R, T = head_pose(np.stack([r.transform for r in results]))
    assert np.all(np.abs(R) < 0.5)  # a speech to camera: within ~30 degrees
    assert np.all((T[:, 2] > 10) & (T[:, 2] < 200))  # in front of the camera, cm
