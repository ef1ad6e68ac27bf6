"""ICT-FaceKit loading: the compact npz and the upstream OBJ folder give the same model; triangles, regions,
submeshes, vertices in numpy and torch; a missing model is a clear InputError."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emogs.errors import InputError
from emogs.mesh import ict


def _write_obj(path: Path, verts: np.ndarray, faces: list[list[int]] | None = None) -> None:
    lines = [f"v {x} {y} {z}" for x, y, z in verts]
    if faces is not None:
        lines += [f"vt {i * 0.1} {i * 0.2}" for i in range(len(verts))]
        lines += ["f " + " ".join(f"{k + 1}/{k + 1}" for k in f) for f in faces]
    path.write_text("# test\n" + "\n".join(lines) + "\n")


@pytest.fixture()
def tiny_folder(tmp_path: Path) -> Path:
    """An upstream-layout folder with a 5-vertex mesh (one quad, one triangle), one identity, two expressions."""
    d = tmp_path / "FaceXModel"
    d.mkdir()
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], np.float64)
    _write_obj(d / "generic_neutral_mesh.obj", v, [[0, 1, 2, 3], [1, 4, 2]])
    _write_obj(d / "identity000.obj", v + [0, 0, 0.5])
    _write_obj(d / "jawOpen.obj", v + [[0, -1, 0]] * 5)
    _write_obj(d / "mouthSmile_L.obj", v * 1.1)
    (d / "vertex_indices.json").write_text(json.dumps({"expressions": ["jawOpen", "mouthSmile_L", "eyeBlink_L"],
                                                       "idx_to_landmark_verts": [0, 2]}))
    return d


def test_triangulate_quads_and_degenerate_quads() -> None:
    q = np.array([[0, 1, 2, 3], [4, 5, 6, 6], [7, 7, 8, 9]])
    tri, src = ict.triangulate(q)
    assert tri.tolist() == [[0, 1, 2], [0, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert src.tolist() == [0, 0, 1, 2]
    uv, _ = ict.triangulate(q, q + 100)
    assert (uv == tri + 100).all()


def test_obj_folder_strict_and_partial(tiny_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="incomplete FaceXModel"):
        ict.load_obj_folder(tiny_folder)
    m = ict.load_obj_folder(tiny_folder, allow_missing=True)
    assert m.expression_names == ("jawOpen", "mouthSmile_L") and m.identity_names == ("identity000",)
    assert m.triangles.tolist() == [[0, 1, 2], [0, 2, 3], [1, 4, 2]]
    assert np.allclose(m.vertices(np.array([2.0]))[:, 2], 1.0)
    v = m.vertices(None, np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert v.shape == (2, 5, 3) and np.allclose(v[0, :, 1], m.neutral[:, 1] - 1) and np.allclose(v[1], m.neutral * 1.1)
    assert m.expression_index("mouthSmileLeft") == 1 and list(m.regions) == ["all"]
    # the npz written from the imported model reads back the same
    ict.save_npz(m, tmp_path / "m.npz")
    m2 = ict.load_npz(tmp_path / "m.npz")
    assert (m2.triangles == m.triangles).all() and np.allclose(m2.expression_basis, m.expression_basis)
    assert m2.regions == m.regions and (m2.landmark68 == m.landmark68).all()


def test_vertices_numpy_and_torch_agree(tiny_folder: Path) -> None:
    import torch

    m = ict.load_obj_folder(tiny_folder, allow_missing=True)
    idc, ex = np.array([0.3], np.float32), np.array([[0.2, 0.7]], np.float32)
    a = m.vertices(idc, ex)
    b = m.vertices(torch.tensor(idc), torch.tensor(ex)).numpy()
    assert np.allclose(a, b, atol=1e-6)


def test_find_ict_missing_names_the_source(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ict.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="ICT-VGL/ICT-FaceKit"):
        ict.find_ict()
    with pytest.raises(InputError, match="ICT-VGL/ICT-FaceKit"):
        ict.find_ict(tmp_path)
    monkeypatch.delenv(ict.ENV_VAR)
    monkeypatch.setattr(ict, "default_places", lambda: [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(InputError, match="not found"):
        ict.load_ict()
    assert not ict.ict_available()


def test_find_ict_env_and_explicit(tiny_folder: Path, monkeypatch) -> None:
    monkeypatch.setenv(ict.ENV_VAR, str(tiny_folder))
    assert ict.find_ict() == tiny_folder
    assert ict.find_ict(tiny_folder.parent) == tiny_folder  # a folder holding FaceXModel/


def test_names() -> None:
    assert ict.ict_name("mouthSmileLeft") == "mouthSmile_L" and ict.ict_name("jawLeft") == "jawLeft"
    assert ict.mediapipe_name("eyeBlink_R") == "eyeBlinkRight" and ict.mediapipe_name("browInnerUp_L") == "browInnerUp"


@pytest.fixture(scope="module")
def ict_dir(shared_data: Path) -> Path:
    d = shared_data / "assets" / "ict-facekit"
    if not (d / ict.NPZ_NAME).is_file():
        pytest.skip(f"{d / ict.NPZ_NAME} not found")
    return d


def test_npz_model(ict_dir: Path) -> None:
    m = ict.load_ict(ict_dir)
    V = ict.NUM_VERTICES
    assert m.neutral.shape == (V, 3) and m.identity_basis.shape == (100, V, 3) and m.expression_basis.shape == (53, V, 3)
    assert m.triangles.shape == (2 * 25836 + 548, 3) and m.triangles.max() == V - 1
    assert set(ict.HEAD_REGIONS) <= set(m.regions) and m.regions["face"].v1 == 9409
    # every triangle of a region has its vertices in that region or a neighbour it is stitched to
    for name, r in m.regions.items():
        assert r.v1 > r.v0 and r.t1 > r.t0, name
    # outward winding: the nose tip's normal points to the viewer (+z)
    n = ict.vertex_normals(m.neutral, m.triangles)
    assert n[m.landmark68[30], 2] > 0.9
    # `_L` shapes act on the subject's left (x > 0)
    d = np.linalg.norm(m.expression_basis[m.expression_index("browInnerUp_L")], axis=1)
    assert m.neutral[np.argmax(d), 0] > 0


def test_obj_sample_matches_npz(ict_dir: Path) -> None:
    sample = ict_dir / "FaceXModel-sample"
    with pytest.raises(InputError):
        ict.load_obj_folder(sample)
    o = ict.load_obj_folder(sample, allow_missing=True)
    m = ict.load_ict(ict_dir / ict.NPZ_NAME)
    assert (o.triangles == m.triangles).all() and (o.triangle_uvs == m.triangle_uvs).all()
    assert o.regions == m.regions and (o.landmark68 == m.landmark68).all()
    assert np.array_equal(o.neutral, m.neutral)
    for name in o.expression_names:
        w = np.zeros(len(o.expression_names), np.float32)
        w[o.expression_index(name)] = 0.8
        w2 = np.zeros(53, np.float32)
        w2[m.expression_index(name)] = 0.8
        assert np.allclose(o.vertices(np.ones(1) * 0.5, w), m.vertices(np.eye(100)[0] * 0.5, w2), atol=1e-5), name


def test_submesh(ict_dir: Path) -> None:
    m = ict.load_ict(ict_dir)
    s = m.submesh(ict.HEAD_REGIONS)
    assert "eyelashes_left" not in s.regions and "narrow_face" in s.regions
    idx = m.region_triangles(ict.HEAD_REGIONS)
    assert np.array_equal(s.neutral[s.triangles], m.neutral[m.triangles[idx]])
    e = np.zeros(53, np.float32)
    e[m.expression_index("jawOpen")] = 1
    assert np.allclose(s.vertices(None, e)[s.triangles], m.vertices(None, e)[m.triangles[idx]])
    t = m.submesh(["teeth"])
    assert list(t.regions) == ["teeth"] and t.triangles.max() == len(t.neutral) - 1
    with pytest.raises(KeyError):
        m.submesh(["nose"])
