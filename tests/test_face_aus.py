"""AU mapping: names, groups, shapes, ranges, baselines (no real data needed)."""
from __future__ import annotations

import numpy as np
import pytest

from emogs.face import aus as A
from emogs.face.camera import canonical_face_mesh


def test_names_and_groups():
    assert A.AU_NAMES == ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14",
                          "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45"]
    assert A.UPPER_AUS == ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU45"]
    assert set(A.UPPER_AUS) | set(A.LOWER_AUS) == set(A.AU_NAMES) and not set(A.UPPER_AUS) & set(A.LOWER_AUS)
    assert len(A.BLENDSHAPE_NAMES) == 52 and A.BLENDSHAPE_NAMES[0] == "_neutral"
    for src in A.AU_TABLE:
        assert all(b in A.BS_INDEX for b in src.blendshapes) and all(g in A.GEOMETRY_NAMES for g in src.geometry)


def test_blendshape_names_match_mediapipe():
    from mediapipe.tasks.python.vision.face_landmarker import Blendshapes

    assert [int(b) for b in Blendshapes] == list(range(52))
    camel = [A.BLENDSHAPE_NAMES[int(b)].lower() for b in Blendshapes]
    assert camel == [("_neutral" if b.name == "NEUTRAL" else b.name.replace("_", "").lower()) for b in Blendshapes]


def _face(n=30, seed=0):
    """Canonical mesh as pixel landmarks (y down), with small noise, (n, 478, 3)."""
    v, _, _ = canonical_face_mesh()
    lm = np.concatenate([v, np.zeros((10, 3))]) * np.array([20.0, -20.0, -20.0]) + np.array([256, 256, 0])
    rng = np.random.default_rng(seed)
    return lm[None] + rng.normal(0, 0.05, (n, 478, 3))


def test_shapes_and_range():
    rng = np.random.default_rng(1)
    bs = rng.uniform(0, 1, (4, 7, 52))
    out = A.aus_from_blendshapes(bs)
    assert out.shape == (4, 7, 17) and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    lm = _face(30)
    for b in ("canonical", "clip"):
        o = A.aus_from_blendshapes(bs[0, :1].repeat(30, 0), lm, baseline=b)
        assert o.shape == (30, 17) and o.min() >= 0 and o.max() <= 1
    with pytest.raises(ValueError):
        A.aus_from_blendshapes(bs[0, 0], lm[0], baseline="clip")  # no time axis
    with pytest.raises(ValueError):
        A.aus_from_blendshapes(np.zeros((3, 51)))


def test_monotone_in_its_blendshape():
    bs = np.zeros((2, 52))
    bs[1, A.BS_INDEX["mouthSmileLeft"]] = bs[1, A.BS_INDEX["mouthSmileRight"]] = 0.6
    bs[1, A.BS_INDEX["jawOpen"]] = 0.5
    out = A.aus_from_blendshapes(bs)
    assert out[1, A.AU_INDEX["AU12"]] > out[0, A.AU_INDEX["AU12"]] + 0.5
    assert out[1, A.AU_INDEX["AU26"]] > out[0, A.AU_INDEX["AU26"]] + 0.5
    assert out[1, A.AU_INDEX["AU04"]] == out[0, A.AU_INDEX["AU04"]] == 0


def test_geometry_pose_and_scale_invariant():
    lm = _face(1)[0]
    g0 = A.geometry_features(lm)
    np.testing.assert_allclose(g0, A.canonical_geometry(), atol=0.02)
    c, s = np.cos(0.3), np.sin(0.3)
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    moved = (lm - lm.mean(0)) @ R.T * 1.7 + np.array([100.0, 50.0, 3.0])
    np.testing.assert_allclose(A.geometry_features(moved), g0, atol=1e-6)


def test_cheek_raise_moves_au06_only_with_landmarks():
    lm = _face(40)
    lm_up = lm.copy()
    for i in (117, 118, 119, 346, 347, 348):
        lm_up[:, i, 1] -= 0.15 * 20  # raise the cheeks 0.15 canonical cm (y down in pixels)
    bs = np.zeros((40, 52))
    a0 = A.aus_from_blendshapes(bs, lm, baseline="canonical")[:, A.AU_INDEX["AU06"]].mean()
    a1 = A.aus_from_blendshapes(bs, lm_up, baseline="canonical")[:, A.AU_INDEX["AU06"]].mean()
    assert a1 > a0 + 0.2
    # with a per-clip baseline, a clip whose cheeks are raised throughout reads as neutral (documented)
    c1 = A.aus_from_blendshapes(bs, lm_up, baseline="clip")[:, A.AU_INDEX["AU06"]].mean()
    assert c1 < a1
