"""The clip fit recovers known identity, expression, pose and focal length from landmarks projected from
ICT-FaceKit (with pixel noise and outliers); the correspondence table is well formed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def model(shared_data: Path):
    from emogs.mesh.ict import NPZ_NAME, load_ict

    p = shared_data / "assets" / "ict-facekit" / NPZ_NAME
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return load_ict(p)


def test_correspondence_file_is_well_formed() -> None:
    from emogs.mesh.correspondence import NUM_LANDMARKS, load_correspondence

    c = load_correspondence()
    assert c.tri.shape == (NUM_LANDMARKS,) and c.bary.shape == (NUM_LANDMARKS, 3)
    assert np.all(c.bary >= -1e-5) and np.allclose(c.bary.sum(1), 1, atol=1e-5)
    assert c.weight.shape == (NUM_LANDMARKS,) and (c.weight >= 0).all() and c.weight.max() > 0
    assert c.version >= 1 and c.mp_to_ict.shape == (4, 4)


def _rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    from emogs.face.camera import euler_to_matrix

    return euler_to_matrix(np.radians([pitch, yaw, roll]))


def _synthetic_clip(model, corr, n=40, size=512, f=620.0, seed=0, noise=0.3, outliers=0.02):
    rng = np.random.default_rng(seed)
    I, E = len(model.identity_basis), len(model.expression_basis)
    ident = np.zeros(I, np.float32)
    ident[:12] = rng.normal(0, 0.8, 12)
    t = np.arange(n) / 25.0
    expr = np.zeros((n, E), np.float32)
    ix = model.expression_index
    expr[:, ix("jawOpen")] = 0.3 + 0.3 * np.sin(2 * np.pi * 1.3 * t)
    expr[:, ix("mouthSmile_L")] = expr[:, ix("mouthSmile_R")] = np.clip(np.sin(2 * np.pi * 0.5 * t), 0, 1) * 0.6
    expr[:, ix("browInnerUp_L")] = expr[:, ix("browInnerUp_R")] = np.clip(np.cos(2 * np.pi * 0.7 * t), 0, 1) * 0.7
    expr[n // 2: n // 2 + 3, ix("eyeBlink_L")] = expr[n // 2: n // 2 + 3, ix("eyeBlink_R")] = 0.9
    expr = np.clip(expr, 0, 1)
    flip = np.diag([1.0, -1.0, -1.0])  # the face (ICT +z) looks into the OpenCV camera
    R = np.stack([_rot(15 * np.sin(2 * np.pi * 0.4 * ti), 6 * np.sin(2 * np.pi * 0.3 * ti + 1), 3 * np.sin(ti))
                  for ti in t]) @ flip
    T = np.stack([np.array([0.5, 1.0, 45.0]) + np.array([0.8, 0.4, 2.0]) * np.sin(2 * np.pi * 0.2 * ti) for ti in t])
    P0, Bi, Be = corr.basis(model)
    X = P0 + np.einsum("i,ipk->pk", ident, Bi) + np.einsum("nj,jpk->npk", expr, Be)
    Y = np.einsum("nij,npj->npi", R, X) + T[:, None]
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
    uv = Y @ K.T
    clean = uv[..., :2] / uv[..., 2:3]
    lm = clean + rng.normal(0, noise, clean.shape)
    bad = rng.random(clean.shape[:2]) < outliers
    lm[bad] += rng.choice([-1, 1], (bad.sum(), 2)) * rng.uniform(15, 30, (bad.sum(), 2))
    return dict(ident=ident, expr=expr, R=R, T=T, K=K, clean=clean, landmarks=lm.astype(np.float32), size=size)


def _blendshapes_from(model, expr: np.ndarray, rng) -> np.ndarray:
    """MediaPipe-order scores that follow the true ICT coefficients (plus noise), as a tracker's would."""
    from emogs.face.aus import BLENDSHAPE_NAMES
    from emogs.mesh.ict import mediapipe_name

    bs = np.zeros((len(expr), len(BLENDSHAPE_NAMES)), np.float32)
    for j, name in enumerate(model.expression_names):  # bilateral MediaPipe scores: the mean of _L and _R
        k = BLENDSHAPE_NAMES.index(mediapipe_name(name))
        bs[:, k] += expr[:, j] / sum(mediapipe_name(x) == mediapipe_name(name) for x in model.expression_names)
    return np.clip(bs + rng.normal(0, 0.05, bs.shape), 0, 1)


def test_fit_recovers_synthetic_clip(model) -> None:
    from emogs.mesh.correspondence import load_correspondence
    from emogs.mesh.fit import fit_landmarks, reprojection_errors

    corr = load_correspondence()
    s = _synthetic_clip(model, corr)
    K0 = s["K"].copy()
    K0[0, 0] = K0[1, 1] = s["K"][0, 0] * 0.75  # the focal length's prior 25 % short
    bs = _blendshapes_from(model, s["expr"], np.random.default_rng(1))
    fit = fit_landmarks(model, corr, s["landmarks"], s["size"], bs, None, K0)
    err = reprojection_errors(model, corr, fit, s["clean"])
    assert np.median(err) < 0.35, np.median(err)  # against the noise-free projections (noise 0.3 px, 2 % outliers)
    # the focal search moves towards the truth (landmarks constrain it weakly: the identity prior pulls ~10 % short)
    assert 0.8 < fit.K[0, 0] / s["K"][0, 0] < 1.1, fit.focal_search
    # pose: rotation within 1.5 degrees; translation direction (the image position) within 1 %
    dR = np.einsum("nji,njk->nik", fit.rotation, s["R"])
    ang = np.degrees(np.arccos(np.clip((np.trace(dR, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert ang.max() < 1.5, ang.max()
    dirs = lambda T: T / np.linalg.norm(T, axis=1, keepdims=True)  # noqa: E731
    assert np.degrees(np.arccos(np.clip((dirs(fit.translation) * dirs(s["T"])).sum(1), -1, 1))).max() < 0.6
    # identity: the neutral face (landmarks at zero expression) within 1.5 mm rms, scale-free
    P0, Bi, _ = corr.basis(model)
    a = P0 + np.einsum("i,ipk->pk", fit.identity, Bi)
    b = P0 + np.einsum("i,ipk->pk", s["ident"], Bi)
    a, b = a - a.mean(0), b - b.mean(0)
    a *= np.sqrt((b ** 2).sum() / (a ** 2).sum())
    assert np.sqrt(((a - b) ** 2).sum(1).mean()) < 0.15
    # expression: the driven shapes follow the truth, the others stay near 0
    for name in ("jawOpen", "mouthSmile_L", "browInnerUp_R", "eyeBlink_L"):
        j = model.expression_index(name)
        assert np.abs(fit.expression[:, j] - s["expr"][:, j]).mean() < 0.08, name
        assert np.corrcoef(fit.expression[:, j], s["expr"][:, j])[0, 1] > 0.9, name
    driven = {model.expression_index(n) for n in ("jawOpen", "mouthSmile_L", "mouthSmile_R", "browInnerUp_L",
                                                  "browInnerUp_R", "eyeBlink_L", "eyeBlink_R")}
    others = [j for j in range(fit.expression.shape[1]) if j not in driven]
    assert np.abs(fit.expression[:, others]).mean() < 0.03
    assert fit.error_px.shape == (40,) and fit.world_to_cam.shape == (40, 4, 4)


def test_fit_without_prior_and_fixed_identity(model) -> None:
    """No blendshapes (no prior), identity given: still recovers the pose and the jaw."""
    from emogs.mesh.correspondence import load_correspondence
    from emogs.mesh.fit import fit_landmarks, reprojection_errors

    corr = load_correspondence()
    s = _synthetic_clip(model, corr, n=25, size=256, f=300.0, seed=3, noise=0.15, outliers=0.0)
    fit = fit_landmarks(model, corr, s["landmarks"], s["size"], None, None, s["K"], identity=s["ident"])
    assert np.allclose(fit.identity, s["ident"])
    assert np.median(reprojection_errors(model, corr, fit, s["clean"])) < 0.25
    j = model.expression_index("jawOpen")
    assert np.abs(fit.expression[:, j] - s["expr"][:, j]).mean() < 0.08
