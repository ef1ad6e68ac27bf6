"""emogs.experts.crops: the landmark-aligned crop geometry and the differentiable sampler."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from emogs.experts.crops import (FACE, MOUTH, RIGID_CANONICAL_XY, RIGID_IDS, crop_affines, crop_numpy,
                                 fit_similarity, recrop, sample_crops)


def test_rigid_constants_match_mediapipe_canonical_mesh():
    from emogs.face.aus import RIGID_LANDMARKS
    from emogs.face.camera import canonical_face_mesh

    assert list(RIGID_IDS) == list(RIGID_LANDMARKS)
    v = canonical_face_mesh()[0]
    np.testing.assert_allclose(RIGID_CANONICAL_XY, v[list(RIGID_IDS), :2], atol=1e-3)


def _face(scale: float, angle_deg: float, tx: float, ty: float, n: int = 1) -> np.ndarray:
    """Landmarks (n, 478, 3) that are an exact similarity image of the canonical face (y down)."""
    from emogs.face.camera import canonical_face_mesh

    v = canonical_face_mesh()[0][:, :2] * np.array([1.0, -1.0])
    v = np.concatenate([v, np.zeros((10, 2))])  # iris points: unused here
    a = np.deg2rad(angle_deg)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    xy = scale * v @ R.T + np.array([tx, ty])
    return np.repeat(np.concatenate([xy, np.zeros((478, 1))], 1)[None], n, 0).astype(np.float32)


def test_similarity_fit_recovers_pose_and_maps_canonical_points():
    lm = _face(12.0, 10.0, 200.0, 250.0)
    S = fit_similarity(lm)[0]  # canonical (X, Y up, 1) -> image
    from emogs.face.camera import canonical_face_mesh

    v = canonical_face_mesh()[0]
    for i in (13, 14, 61, 291, 152):  # lips and chin are not in the fit, but the face is rigid here
        np.testing.assert_allclose(S @ np.array([v[i, 0], v[i, 1], 1.0]), lm[0, i, :2], atol=1e-3)
    assert np.sqrt(abs(np.linalg.det(S[:, :2]))) == pytest.approx(12.0, rel=1e-6)


def test_crop_centre_lands_between_the_mouth_corners_and_nans_are_filled():
    lm = _face(10.0, -5.0, 128.0, 140.0, n=4)
    lm[2] = np.nan  # a frame without a face takes its neighbour's crop
    A = crop_affines(lm, MOUTH)
    assert A.shape == (4, 2, 3) and np.isfinite(A).all()
    cx = (MOUTH.x0 + MOUTH.x1) / 2
    cy = (MOUTH.y0 + MOUTH.y1) / 2
    S = fit_similarity(lm[:1])[0]
    want = S @ np.array([cx, cy, 1.0])
    got = A[0] @ np.array([MOUTH.width / 2, MOUTH.height / 2, 1.0])
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_sampler_reads_the_right_pixels_and_is_differentiable():
    H, W = 64, 80
    ys, xs = np.mgrid[0:H, 0:W]
    img = np.stack([xs, ys, np.zeros_like(xs)], -1).astype(np.float32)  # pixel value = its centre - 0.5
    # affine: crop pixel (u, v) -> image (x, y) = (10 + u, 20 + 0.5 v)
    A = np.array([[[1.0, 0.0, 10.0], [0.0, 0.5, 20.0]]], np.float32)
    x = torch.from_numpy(img)[None].requires_grad_(True)
    c = sample_crops(x, A, MOUTH)
    u = np.arange(MOUTH.width) + 0.5
    np.testing.assert_allclose(c[0, 0, :30, 0].detach().numpy(), 10 + u[:30] - 0.5, atol=1e-4)
    v = np.arange(MOUTH.height) + 0.5
    np.testing.assert_allclose(c[0, :, 0, 1].detach().numpy(), 20 + 0.5 * v - 0.5, atol=1e-4)
    c.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_antialias_pools_large_frames_and_recrop_matches_direct_crop():
    rng = np.random.default_rng(0)
    frames = (rng.random((2, 300, 300, 3)) * 255).astype(np.uint8)
    lm = _face(9.0, 3.0, 150.0, 150.0, n=2)
    big = crop_numpy(frames, crop_affines(lm, FACE), FACE)
    assert big.shape == (2, 112, 112, 3) and big.dtype == np.uint8
    # margin crop (per-frame) then recrop == direct crop, away from the borders
    margin = MOUTH.scaled(1.25)
    am, a = crop_affines(lm, margin, smooth=1), crop_affines(lm, MOUTH)
    x = torch.from_numpy(frames).float()
    direct = sample_crops(x, a, MOUTH, antialias=False)
    two = recrop(sample_crops(x, am, margin, antialias=False), am, a, margin, MOUTH)
    assert two.shape == direct.shape
    inner = (slice(None), slice(4, -4), slice(8, -8))
    assert float((two[inner] - direct[inner]).abs().mean()) < 12.0  # two bilinear passes on noise
    smooth = torch.from_numpy(np.tile(np.linspace(0, 255, 300, dtype=np.float32)[None, None, :, None], (2, 300, 1, 3)))
    d2 = sample_crops(smooth, a, MOUTH, antialias=False)
    t2 = recrop(sample_crops(smooth, am, margin, antialias=False), am, a, margin, MOUTH)
    assert float((t2[inner] - d2[inner]).abs().max()) < 0.05  # exact on a linear image
