"""AU edits on mesh-rigged heads: the learned residual's input beyond the training range (hold / fade), the
person-calibrated AU drive gains (emogs.mesh.drive_calibration) and MediaPipe's blendshape stage run alone."""
from __future__ import annotations

import json

import numpy as np
import pytest

from emogs.avatar import CLAMP_MARGIN, clamp_to_range, residual_aus
from emogs.face.aus import AU_NAMES


def _range():
    lo = np.zeros(17, np.float32)
    hi = np.full(17, 0.3, np.float32)
    d = np.full(17, 0.05, np.float32)
    return lo, hi, d


def test_hold_is_the_old_clamp_and_fade_goes_back_to_the_default_beyond_the_range():
    lo, hi, d = _range()
    req = np.linspace(0, 1, 101, dtype=np.float32)[:, None].repeat(17, 1)
    assert np.array_equal(residual_aus(req, lo, hi, d, "hold"), clamp_to_range(req, lo, hi))
    out = residual_aus(req, lo, hi, d, "fade", fade=0.3)
    edge = 0.3 + CLAMP_MARGIN
    x = req[:, 0]
    inside = x <= edge + 1e-6
    assert np.allclose(out[inside, 0], x[inside])  # inside the range: the request itself
    far = x >= edge + 0.3 + 1e-6
    assert far.any() and np.allclose(out[far, 0], d[0])  # far beyond: the default, the mesh alone moves
    mid = np.argmin(np.abs(x - (edge + 0.15)))
    assert np.isclose(out[mid, 0], d[0] + 0.5 * (edge - d[0]), atol=0.01)  # linear in between
    assert np.abs(np.diff(out[:, 0])).max() < 0.05  # continuous in the request
    with pytest.raises(ValueError):
        residual_aus(req, lo, hi, d, "nope")
    with pytest.raises(ValueError):
        residual_aus(req, lo, hi, d, "fade", fade=0.0)


def test_fade_below_the_range_too():
    lo = np.full(17, 0.6, np.float32)
    hi = np.full(17, 0.9, np.float32)
    d = np.full(17, 0.7, np.float32)
    out = residual_aus(np.zeros((1, 17), np.float32), lo, hi, d, "fade", fade=0.2)
    assert np.allclose(out, 0.7)  # 0.5 below the edge (0.5): faded out fully
    out = residual_aus(np.full((1, 17), 0.45, np.float32), lo, hi, d, "fade", fade=0.2)
    assert np.allclose(out, 0.7 + (0.5 - 0.7) * 0.75)


def test_drive_matrix_gains_override_the_table():
    from emogs.mesh.au_table import AU_GAIN, drive_matrix

    names = ["browInnerUp_L", "browInnerUp_R", "mouthFrown_L", "mouthFrown_R", "jawOpen"]
    M = drive_matrix(names, calibrated=True)
    assert M[AU_NAMES.index("AU01"), 0] == 1.0 and M[AU_NAMES.index("AU15"), 2] == AU_GAIN["AU15"]
    G = drive_matrix(names, calibrated=True, gains={"AU01": 1.7})
    assert G[AU_NAMES.index("AU01"), 0] == pytest.approx(1.7) and G[AU_NAMES.index("AU15"), 2] == AU_GAIN["AU15"]
    assert drive_matrix(names, gains={"AU01": 1.7})[AU_NAMES.index("AU01"), 0] == 1.0  # uncalibrated: the table


def _toy_problem():
    """One frame, a 'mesh' whose browInnerUp moves every landmark up by 10 px per unit, and a reading that is
    AU01 = clip((lift - 12) / 10, 0, 1) of the mean lift in px."""
    from emogs.mesh.drive_calibration import DriveCalibrationConfig, person_drive_gains

    names = ["browInnerUp_L", "browInnerUp_R", "mouthFrown_L", "mouthFrown_R"]
    n = 3
    L = np.zeros((n, 478, 3))
    L[..., 0], L[..., 1] = 100.0, 100.0
    K = np.array([[100.0, 0, 0], [0, 100.0, 0], [0, 0, 1]])
    w2c = np.tile(np.eye(4), (n, 1, 1))
    neutral = np.zeros((478, 3))
    neutral[:, 2] = 10.0  # 10 cm in front of the camera: 1 cm = 10 px
    ident = np.zeros((1, 478, 3))
    expr = np.zeros((4, 478, 3))
    expr[0, :, 1] = -0.5  # browInnerUp_L / _R each lift 0.5 cm = 5 px (y down in the image)
    expr[1, :, 1] = -0.5
    expr[2, :, 1] = 0.1  # mouthFrown barely moves: no gain up to the cap reaches the target

    def read(lm):
        lift = 100.0 - lm[..., 1].mean(-1)
        out = np.zeros((len(lm), 17))
        out[:, AU_NAMES.index("AU01")] = np.clip((lift - 12) / 10, 0, 1)
        out[:, AU_NAMES.index("AU15")] = np.clip(-lift / 100, 0, 1)
        return out

    def run(table, cfg=DriveCalibrationConfig(aus=("AU01", "AU15"))):
        return person_drive_gains(L, np.zeros((n, 52)), neutral, ident, expr, np.zeros(1), np.zeros((n, 4)), w2c, K,
                                  names, np.zeros(17), table, cfg, read=read)
    return run


def test_person_gains_pick_the_smallest_gain_that_reads_as_asked():
    run = _toy_problem()
    r = run({})
    # lift = 10 px x gain; target 0.5 of the way from 0: (10 g - 12) / 10 >= 0.5 -> g >= 1.7
    assert r["gains"]["AU01"] == pytest.approx(1.7) and r["aus"]["AU01"]["reached"]
    assert r["aus"]["AU01"]["curve"][0] == (1.0, 0.0)
    assert r["gains"]["AU15"] == 2.0 and not r["aus"]["AU15"]["reached"]  # the cap, flagged
    r = run({"AU01": 1.9})
    assert r["gains"]["AU01"] == pytest.approx(1.9)  # never weaker than the table's gain


def test_run_au_drive_file_is_read_and_checked(tmp_path):
    from emogs.errors import InputError
    from emogs.run.folder import RunFolder

    r = RunFolder(tmp_path)
    assert r.au_drive() is None
    r.write_au_drive({"gains": {"AU01": 1.4}, "target": 0.5})
    assert r.au_drive()["gains"] == {"AU01": 1.4}
    (tmp_path / "au_drive.json").write_text(json.dumps({"gains": {"AU01": -1}}))
    with pytest.raises(InputError, match="au_drive.json"):
        r.au_drive()


def test_the_blendshape_stage_alone_reproduces_mediapipe(shared_data):
    from emogs.face.blendshape_stage import blendshapes_from_landmarks
    from emogs.face.tracker import FaceTracker
    from emogs.io.media import read_frames

    clip = shared_data / "emotion" / "W009_front_surprised_level3_001.mp4"
    if not clip.is_file():
        pytest.skip("no MEAD clip here")
    frames = [f for i, f in zip(range(40), read_frames(clip)) if i % 13 == 0]
    with FaceTracker(video_mode=False) as tr:
        res = [tr.track(f, 0) for f in frames]
    res = [r for r in res if r is not None]
    assert res
    lm = np.stack([r.landmarks for r in res])
    bs = blendshapes_from_landmarks(lm)
    assert np.abs(bs - np.stack([r.blendshapes for r in res])).max() < 1e-4
    moved = lm.copy()
    moved[:, [107, 336, 55, 285, 105, 334, 66, 296, 65, 295, 52, 282], 1] += 8.0  # lower the inner brows 8 px
    assert (blendshapes_from_landmarks(moved)[:, 3] < bs[:, 3] - 0.05).all()  # browInnerUp reads it
    nan = lm[:1].copy()
    nan[0, 0, 0] = np.nan
    assert np.isnan(blendshapes_from_landmarks(nan)).all()



def test_eval_controls_records_the_mesh_runs_residual_and_drive_settings(tmp_path):
    from types import SimpleNamespace

    from emogs.errors import InputError
    from emogs.eval.controls import ControlOptions, residual_received_aus, run_render_settings
    from emogs.run.folder import RunFolder

    folder = RunFolder(tmp_path)
    mc = SimpleNamespace(kind="mesh", residual_beyond="fade", residual_fade=0.3)
    info = {"au_min": [0.0] * 17, "au_max": [0.3] * 17, "au_mean": [0.05] * 17}
    run = SimpleNamespace(model_config=lambda: mc, au_drive=folder.au_drive, dataset_info=lambda: info, path=tmp_path)
    assert run_render_settings(run, ControlOptions()) == {"residual": "fade:0.3"}
    assert run_render_settings(run, ControlOptions(allow_extrapolation=True)) == {}
    with pytest.raises(InputError, match="calibrate-drive"):
        run_render_settings(run, ControlOptions(au_drive="person"))
    folder.write_au_drive({"gains": {"AU02": 1.3, "AU01": 1.4}})
    assert run_render_settings(run, ControlOptions())["au_drive"] == {"AU01": 1.4, "AU02": 1.3}
    assert "au_drive" not in run_render_settings(run, ControlOptions(au_drive="table"))
    rec = {"plain": np.full((3, 17), 0.05, np.float32), "AU01": np.full((3, 17), 1.0, np.float32)}
    res = residual_received_aus(rec, run, ControlOptions())
    assert np.allclose(res["AU01"], 0.05) and np.allclose(res["plain"], 0.05)  # faded out: 1.0 is 0.6 past the edge
    mc.kind = "free"
    assert run_render_settings(run, ControlOptions()) == {}
    assert residual_received_aus(rec, run, ControlOptions()) is rec


def test_calibrate_drive_refuses_bad_arguments_in_one_line(tmp_path, capsys):
    from emogs.cli import main

    assert main(["calibrate-drive", str(tmp_path), "--aus", "AU99"]) == 2
    assert "choose from AU01" in capsys.readouterr().err
    assert main(["calibrate-drive", str(tmp_path), "--target", "0"]) == 2
    assert main(["calibrate-drive", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
