"""emogs.control.timeline / transfer: CSV / JSON / YAML timelines, the `emogs analyze` layout, resampling."""
from __future__ import annotations

import json

import numpy as np
import pytest

from emogs.control.names import AU_INDEX, AU_NAMES
from emogs.control.timeline import ease_window, fit_length, load_timeline, mirror_indices, smoothstep
from emogs.control.transfer import au_layer_from_source, read_analysis
from emogs.errors import InputError

FPS = 25.0


def write_analysis_csv(path, times, aus, success=None, pose_R=None, pose_T=None):
    """An OpenFace-like `emogs analyze` CSV: padded ', ' separators, frame (1-based), timestamp, confidence,
    success, pose, AUxx_r intensities and AUxx_c presence columns."""
    n = len(times)
    success = np.ones(n, int) if success is None else success
    pose_R = np.zeros((n, 3)) if pose_R is None else pose_R
    pose_T = np.tile([0.0, 0.0, 50.0], (n, 1)) if pose_T is None else pose_T
    head = (["frame", "timestamp", "confidence", "success"] + [f"pose_T{a}" for a in "xyz"]
            + [f"pose_R{a}" for a in "xyz"] + [f"{n_}_r" for n_ in AU_NAMES] + [f"{n_}_c" for n_ in AU_NAMES])
    rows = [", ".join(head)]
    for i in range(n):
        vals = ([i + 1, f"{times[i]:.3f}", 0.98, int(success[i])] + [f"{x:.4f}" for x in pose_T[i]]
                + [f"{x:.5f}" for x in pose_R[i]] + [f"{x:.4f}" for x in aus[i]]
                + [int(x > 0.2) for x in aus[i]])
        rows.append(", ".join(str(v) for v in vals))
    path.write_text("\n".join(rows) + "\n")
    return path


# --- track helpers ---------------------------------------------------------------------------------
def test_ease_window_shape():
    t = np.arange(250) / FPS
    w = ease_window(t, 2.0, 4.0, 0.2, 10.0)
    assert np.all(w[t < 2.0] == 0) and np.all(w[t >= 4.0] == 0)
    assert np.allclose(w[(t >= 2.2 - 1e-9) & (t <= 3.8 + 1e-9)], 1.0)
    ramp = w[(t > 2.0) & (t < 2.2)]
    assert len(ramp) == 4 and np.all(np.diff(ramp) > 0) and 0 < ramp.min() and ramp.max() < 1
    # smoothstep's max slope is 1.5 / ramp: per frame 1.5 / (0.2 * 25) = 0.3
    assert np.abs(np.diff(w)).max() <= 0.3 + 1e-9
    # a hard step (ease 0) jumps by 1: the bound above is a real check
    assert np.abs(np.diff(ease_window(t, 2.0, 4.0, 0.0, 10.0))).max() == 1.0
    # short ranges shrink the ramps to half the range; ranges from 0 / to the end do not ramp there
    short = ease_window(t, 2.0, 2.16, 0.2, 10.0)
    assert short.max() == pytest.approx(1.0) and np.count_nonzero(short) == 3
    assert ease_window(t, 0.0, 1.0, 0.2, 10.0)[0] == 1.0
    assert ease_window(t, 9.0, None, 0.2, 10.0)[-1] == 1.0
    assert smoothstep(np.array([0.0, 0.5, 1.0])).tolist() == [0.0, 0.5, 1.0]


def test_mirror_loop_has_no_jump():
    idx = mirror_indices(5, 20)
    assert idx.tolist() == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    assert np.abs(np.diff(idx)).max() == 1
    assert mirror_indices(1, 4).tolist() == [0, 0, 0, 0]
    x = np.arange(5.0)
    assert fit_length(x, 3).tolist() == [0, 1, 2]
    assert fit_length(x, 7, "hold").tolist() == [0, 1, 2, 3, 4, 4, 4]


# --- timelines -------------------------------------------------------------------------------------
def test_csv_time_linear_and_held(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("time,AU12,AU01_r\n1.0,0.0,0.5\n2.0,1.0,\n3.0,0.5,1.0\n")
    tl = load_timeline(p)
    assert list(tl.points) == ["AU01", "AU12"]
    value, weight, warns = tl.to_frames(125, FPS)  # 5 s
    t = np.arange(125) / FPS
    a12 = value[:, AU_INDEX["AU12"]]
    assert np.allclose(a12[t <= 1.0], 0.0)                                   # held before the first keyframe
    assert a12[40] == pytest.approx(0.6)                                     # linear (t = 1.6 s)
    assert a12[60] == pytest.approx(0.8)                                     # t = 2.4 s
    assert np.allclose(a12[t >= 3.0], 0.5)                                   # held after the last
    a01 = value[:, AU_INDEX["AU01"]]                                         # empty cell = no keyframe
    assert a01[int(2.0 * FPS)] == pytest.approx(0.75)
    assert weight[:, AU_INDEX["AU12"]].min() == 1 and weight[:, AU_INDEX["AU04"]].max() == 0
    assert len(warns) == 1 and "ends at 3.00 s" in warns[0] and "held" in warns[0]
    _, _, warns = tl.to_frames(50, FPS)  # 2 s: the timeline runs past the audio
    assert len(warns) == 1 and "truncated" in warns[0]
    _, _, warns = tl.to_frames(76, FPS)  # last frame at 3.0 s: exact fit, no warning
    assert warns == []


def test_csv_frame_column(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("frame,AU04\n0,0\n50,1\n")
    value, _, _ = load_timeline(p).to_frames(51, FPS)
    assert value[25, AU_INDEX["AU04"]] == pytest.approx(0.5)


def test_analyze_layout_loads_directly(tmp_path):
    times = np.arange(60) / 30.0  # a 30 fps source, 2 s
    aus = np.zeros((60, 17))
    aus[:, AU_INDEX["AU12"]] = np.linspace(0, 1, 60)
    success = np.ones(60, int)
    success[10] = 0
    aus[10] = 0.99  # garbage on the failed row: must be skipped
    p = write_analysis_csv(tmp_path / "a.csv", times, aus, success)
    tl = load_timeline(p)
    assert set(tl.points) == set(AU_NAMES)  # _r columns used, _c ignored
    assert any("success=0" in n for n in tl.notes)
    value, _, _ = tl.to_frames(50, FPS)
    ref = np.interp(np.arange(50) / FPS, times, np.linspace(0, 1, 60))
    assert np.abs(value[:, AU_INDEX["AU12"]] - ref).max() < 0.002
    assert value[:, AU_INDEX["AU01"]].max() < 0.05  # the 0.99 row did not leak in
    src = read_analysis(p)
    assert src.au.shape == (59, 17) and src.pose_R.shape == (59, 3)


def test_json_and_yaml_keyframes(tmp_path):
    doc = {"keyframes": [{"time": 0.0, "AU12": 0.0, "AU01": 0.2}, {"time": 2.0, "AU12": 1.0},
                         {"frame": 25, "AU01": 0.6}]}
    pj = tmp_path / "k.json"
    pj.write_text(json.dumps(doc))
    py = tmp_path / "k.yaml"
    py.write_text("keyframes:\n  - {time: 0.0, AU12: 0.0, AU01: 0.2}\n  - {time: 2.0, AU12: 1.0}\n"
                  "  - {frame: 25, au1: 0.6}\n")
    pl = tmp_path / "k.yml"
    pl.write_text("- {time: 0.0, AU12: 0.0, AU01: 0.2}\n- {time: 2.0, AU12: 1.0}\n- {frame: 25, AU01: 0.6}\n")
    for p in (pj, py, pl):
        value, weight, _ = load_timeline(p).to_frames(75, FPS)
        assert value[25, AU_INDEX["AU12"]] == pytest.approx(0.5)    # interpolated between its own keyframes
        assert value[12, AU_INDEX["AU01"]] == pytest.approx(0.2 + 0.4 * 12 / 25)
        assert value[60, AU_INDEX["AU01"]] == pytest.approx(0.6)    # held
        assert weight[:, AU_INDEX["AU02"]].max() == 0


@pytest.mark.parametrize("name,text,match", [
    ("v.csv", "time,AU12\n0,4\n", r"4 is outside \[0, 1\] \(did you mean 0.4, or 0.8 from OpenFace's 0-5 scale"),
    ("v.csv", "stamp,AU12\n0,0.5\n", r"needs a 'time' \(seconds\) or 'frame' column"),
    ("v.csv", "time,AU12\n0,abc\n", r"'abc' is not a number"),
    ("v.csv", "time,AU12\n0,0.5\n-1,0.5\n", r"negative time"),
    ("v.csv", "time,AU12,AU12_r\n0,0.5,0.5\n", r"both give AU12"),
    ("v.csv", "time,AU12\n0,0.5\n0,0.6\n", r"two keyframes at 0 s"),
    ("v.csv", "time,pose_Rx\n0,0.5\n", r"no AU values"),
    ("v.csv", "time,AU12\n0,0.5,1\n", r"line 2 has 3 cells"),
    ("v.csv", "time,AU12\n", r"header row and at least one data row"),
    ("k.json", '{"keyframes": [{"time": 0, "AU13": 0.5}]}', r"AU13 \(cheek puffer\) is not one of the 17"),
    ("k.json", '{"keyframes": [{"time": 0, "AU21": 0.5}]}', r"unknown AU 'AU21' \(did you mean AU20\?\)"),
    ("k.json", '{"keyframes": [{"tme": 0, "AU12": 0.5}]}', r"exactly one of 'time'"),
    ("k.json", '{"keyframes": [{"time": 0, "frame": 3, "AU12": 0.5}]}', r"exactly one of 'time'"),
    ("k.json", '{"keyframes": [{"time": 0}]}', r"no AU values"),
    ("k.json", '{"keyframes": [{"time": 0, "AU12": 1.5}]}', r"outside \[0, 1\]"),
    ("k.json", '{"keyframes": [{"time": "soon", "AU12": 0.5}]}', r"must be numbers"),
    ("k.json", '{"frames": []}', r"unexpected keys \['frames'\]"),
    ("k.json", '{"keyframes": []}', r"non-empty list"),
    ("k.json", '{"keyframes": [', r"not valid JSON"),
    ("k.yaml", "keyframes: [time: 0", r"not valid YAML"),
    ("k.txt", "time,AU12\n0,0.5\n", r"takes a .csv, .json, .yaml or .yml"),
])
def test_bad_timelines(tmp_path, name, text, match):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        load_timeline(p)


def test_missing_timeline(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_timeline(tmp_path / "nope.csv")


# --- --au-from tracks ------------------------------------------------------------------------------
def test_au_from_resampled_looped_smoothed(tmp_path):
    times = np.arange(90) / 30.0  # 3 s at 30 fps
    aus = np.zeros((90, 17))
    aus[:, AU_INDEX["AU12"]] = 0.5 + 0.4 * np.sin(2 * np.pi * times / 3.0)
    aus[40:44, AU_INDEX["AU45"]] = 1.0  # a 130 ms blink
    src = read_analysis(write_analysis_csv(tmp_path / "a.csv", times, aus))
    value, weight = au_layer_from_source(src, 200, FPS, "loop")  # 8 s of audio
    assert weight.min() == 1 and value.shape == (200, 17)
    a12 = value[:, AU_INDEX["AU12"]]
    ref = 0.5 + 0.4 * np.sin(2 * np.pi * np.arange(60) / FPS / 3.0)
    assert np.abs(a12[:60] - ref).max() < 0.02                       # resampled 30 -> 25 fps
    assert np.abs(np.diff(a12)).max() < 0.06                          # no jump at the loop points
    # 2.967 s of samples -> 75 frames at 25 fps; the mirror loop turns at frame 74
    assert np.allclose(a12[75:85], a12[73:63:-1], atol=1e-6)
    assert value[:, AU_INDEX["AU45"]].max() > 0.5                     # smoothing keeps a blink
    hold, _ = au_layer_from_source(src, 200, FPS, "hold")
    assert np.allclose(hold[80:, AU_INDEX["AU12"]], hold[80, AU_INDEX["AU12"]])


def test_au_from_openface_scale_rejected(tmp_path):
    aus = np.full((10, 17), 2.5)
    p = write_analysis_csv(tmp_path / "a.csv", np.arange(10) / 25, aus)
    with pytest.raises(InputError, match="outside \\[0, 1\\].*OpenFace's 0-5 scale"):
        read_analysis(p)


def test_real_analyze_writer_layout(tmp_path):
    """The CSV that `emogs analyze` itself writes loads as a timeline and as an --au-from source."""
    analyze = pytest.importorskip("emogs.face.analyze")
    from emogs.face.aus import BLENDSHAPE_NAMES

    n = 40
    aus = np.zeros((n, 17), np.float32)
    aus[:, AU_INDEX["AU06"]] = np.linspace(0, 0.8, n)
    ok = np.ones(n, bool)
    ok[5] = False
    res = {"timestamp": np.arange(n) / 30.0, "success": ok, "confidence": np.ones(n, np.float32),
           "pose_R": np.zeros((n, 3), np.float32), "pose_T": np.tile([0, 0, 60.0], (n, 1)).astype(np.float32),
           "aus": aus, "blendshapes": np.full((n, len(BLENDSHAPE_NAMES)), 0.3, np.float32)}
    p = tmp_path / "analysis.csv"
    analyze.write_csv(p, res)
    tl = load_timeline(p)
    assert set(tl.points) == set(AU_NAMES) and len(tl.points["AU06"][0]) == n - 1
    value, _, _ = tl.to_frames(25, FPS)
    assert value[20, AU_INDEX["AU06"]] == pytest.approx(0.8 * (20 / 25 * 30) / (n - 1), abs=1e-3)
    src = read_analysis(p)
    assert src.au_present.all() and src.pose_T.shape == (n - 1, 3)
