"""The prepare stage "mesh": a valid mesh.npz on a short real slice, the report's overlays, and what happens
when ICT-FaceKit is missing (auto: skipped with a reason; on: an InputError before any work)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from emogs.errors import InputError


def _ict_or_skip(shared_data: Path) -> None:
    from emogs.mesh.ict import NPZ_NAME

    if not (shared_data / "assets" / "ict-facekit" / NPZ_NAME).is_file():
        pytest.skip("ICT-FaceKit not in the shared data")


def test_mesh_npz_of_a_prepared_slice(may_dataset: Path, shared_data: Path) -> None:
    _ict_or_skip(shared_data)
    from emogs.data.meshstage import load_mesh
    from emogs.face.aus import AU_NAMES

    m = json.loads((may_dataset / "manifest.json").read_text())
    n, S = m["num_frames"], m["size"]
    mesh = load_mesh(may_dataset)
    assert mesh is not None and m["mesh"]["file"] == "mesh.npz" and m["mesh"]["correspondence_version"] >= 1
    assert mesh["identity"].shape == (100,) and mesh["expression"].shape == (n, 53)
    assert mesh["expression"].min() >= 0 and mesh["expression"].max() <= 1
    assert mesh["world_to_cam"].shape == (n, 4, 4) and mesh["K"].shape == (3, 3) and mesh["error_px"].shape == (n,)
    assert mesh["aus"].shape == (n, len(AU_NAMES)) and list(mesh["expression_names"])[26] == "jawOpen"
    R = mesh["world_to_cam"][:, :3, :3]
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-4)
    # the fitted landmarks land on the tracked ones: median error below 1.5 px at 512 px (here S = 128)
    assert np.median(mesh["error_px"]) * 512 / S < 1.5
    assert m["mesh"]["median_px_at_512"] < 1.5
    # the head origin (ICT frame) projects inside the frame, in front of the camera
    c = (mesh["K"] @ mesh["world_to_cam"][:, :3, 3].T)
    assert (c[2] > 0).all() and ((c[:2] / c[2] > 0) & (c[:2] / c[2] < S)).all()
    assert (may_dataset / "report" / "mesh_overlay.mp4").stat().st_size > 10_000
    from emogs.io.media import probe

    assert probe(may_dataset / "report" / "mesh_overlay.mp4").num_frames == 75


def test_missing_model(may_dataset: Path, shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    import emogs.mesh.ict as ict
    from emogs.data.meshstage import run_mesh
    from emogs.data.prepare import PrepareConfig, prepare

    monkeypatch.setenv(ict.ENV_VAR, str(tmp_path / "no-ict-here"))
    root = tmp_path / "ds"
    root.mkdir()
    shutil.copy(may_dataset / "tracks.npz", root / "tracks.npz")
    (root / "mesh.npz").write_bytes(b"stale")
    facts = run_mesh(root, 128, "auto")
    assert "ICT-FaceKit" in facts["skipped"] and not (root / "mesh.npz").exists()
    assert run_mesh(root, 128, "off") == {"skipped": "--mesh off"}
    with pytest.raises(InputError, match="ICT-VGL/ICT-FaceKit"):
        run_mesh(root, 128, "on")
    with pytest.raises(InputError, match="ICT-VGL/ICT-FaceKit"):  # before any stage runs
        prepare(shared_data / "video" / "may_5s.mp4", tmp_path / "new", PrepareConfig(mesh="on", max_seconds=3),
                log=lambda s: None)
    assert not (tmp_path / "new" / "tracks.npz").exists()
    with pytest.raises(InputError, match="--mesh"):
        PrepareConfig(mesh="yes").validate()


def test_dataset_from_before_the_mesh_stage_gains_it(may_dataset: Path, shared_data: Path, tmp_path: Path,
                                                     monkeypatch) -> None:
    """A dataset whose state has no `mesh` setting and no mesh stage (made before the stage existed) is resumed:
    only the mesh and report stages run, no --force needed."""
    _ict_or_skip(shared_data)
    import emogs.data.prepare as P
    from emogs.io.atomic import read_json, write_json

    root = tmp_path / "old"
    shutil.copytree(may_dataset, root)
    st = read_json(root / ".prepare" / "state.json")
    st["config"].pop("mesh")
    st["stages"].pop("mesh")
    write_json(root / ".prepare" / "state.json", st)
    (root / "mesh.npz").unlink()
    calls: list[str] = []
    real = dict(P.STAGE_FUNCS)
    for name in real:
        monkeypatch.setitem(P.STAGE_FUNCS, name, (lambda n: lambda ctx: (calls.append(n), real[n](ctx))[1])(name))
    P.prepare(shared_data / "video" / "may_5s.mp4", root, P.PrepareConfig(size=128, whisper=False, max_seconds=4),
              log=lambda s: None)
    assert sorted(calls) == ["mesh", "report"] and (root / "mesh.npz").is_file()
    assert json.loads((root / "manifest.json").read_text())["mesh"]["file"] == "mesh.npz"
