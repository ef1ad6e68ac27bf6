"""`emogs analyze`: CSV layout, round trip, bad input, CLI."""
from __future__ import annotations

import numpy as np
import pytest

from emogs.cli import main
from emogs.errors import InputError
from emogs.face.analyze import analyze_video, csv_columns, read_analysis_csv
from emogs.face.aus import AU_NAMES, BLENDSHAPE_NAMES


def test_columns_openface_layout():
    cols = csv_columns()
    assert cols[:10] == ["frame", "timestamp", "success", "confidence", "pose_Rx", "pose_Ry", "pose_Rz",
                         "pose_Tx", "pose_Ty", "pose_Tz"]
    assert cols[10:27] == [f"{a}_r" for a in AU_NAMES]
    assert cols[27:] == BLENDSHAPE_NAMES
    lm = csv_columns(landmarks=True)
    assert len(lm) == len(cols) + 2 * 478 and lm[-1] == "y_477" and lm[len(cols)] == "x_0"


def test_analyze_video_roundtrip(shared_data, tmp_path):
    video = shared_data / "video" / "macron_50s.mp4"  # 30 fps: analysed at its native rate
    out = tmp_path / "a.csv"
    res = analyze_video(video, out, landmarks=True, progress=False, max_seconds=1.0)
    assert len(res["success"]) == 30 and res["success"].all()
    back = read_analysis_csv(out)
    assert back["aus"].shape == (30, 17) and back["blendshapes"].shape == (30, 52)
    assert back["landmarks"].shape == (30, 478, 2)
    np.testing.assert_allclose(back["timestamp"], np.arange(30) / 30, atol=1e-3)
    np.testing.assert_allclose(back["aus"], res["aus"], atol=1e-4)
    np.testing.assert_allclose(back["landmarks"], res["landmarks"][..., :2], atol=0.01)
    assert back["aus"].min() >= 0 and back["aus"].max() <= 1
    assert np.all(np.abs(back["pose_R"]) < 0.6) and np.all(back["pose_T"][:, 2] > 10)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left nothing behind


def test_analyze_bad_input(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        analyze_video(tmp_path / "missing.mp4", tmp_path / "o.csv", progress=False)
    bad = tmp_path / "notvideo.mp4"
    bad.write_text("hello, I am not a video\n")
    with pytest.raises(InputError):
        analyze_video(bad, tmp_path / "o.csv", progress=False)
    assert not (tmp_path / "o.csv").exists()
    with pytest.raises(InputError):
        read_analysis_csv(bad)


def test_cli_analyze(shared_data, tmp_path, capsys):
    out = tmp_path / "cli.csv"
    assert main(["analyze", str(shared_data / "emotion" / "W009_front_happy_level3_001.mp4"), "-o", str(out)]) == 0
    r = read_analysis_csv(out)
    assert r["success"].mean() > 0.95 and len(r["success"]) > 90
    assert main(["analyze", str(tmp_path / "nope.mp4"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("emogs analyze: error:") and "no such file" in err[-1]
