"""AUs read from fitted ICT expressions: channels, baselines, ramps; `emogs analyze --au-source mesh`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emogs.errors import InputError
from emogs.face.aus import AU_INDEX, AU_NAMES
from emogs.mesh.aus import MESH_AU_SHAPES, MESH_RAMPS, aus_from_expression, channels

from test_mesh_au_table import ICT_NAMES  # noqa: E402 (tests/ is on the path)


def test_channels_follow_the_analysis_names() -> None:
    assert set(MESH_AU_SHAPES) == set(AU_NAMES)
    assert MESH_AU_SHAPES["AU01"] == ("browInnerUp_L", "browInnerUp_R")
    assert MESH_AU_SHAPES["AU12"] == ("mouthSmile_L", "mouthSmile_R") and MESH_AU_SHAPES["AU06"] == ("cheekSquint_L", "cheekSquint_R")
    e = np.zeros((3, 53))
    e[:, ICT_NAMES.index("mouthSmile_L")] = [0.0, 0.4, 0.8]
    ch = channels(e, ICT_NAMES, gap=np.array([0.0, 0.1, 0.2]))
    assert np.allclose(ch[:, AU_INDEX["AU12"]], [0.0, 0.2, 0.4]) and np.allclose(ch[:, AU_INDEX["AU25"]], [0, 0.1, 0.2])
    assert np.allclose(np.delete(ch, [AU_INDEX["AU12"], AU_INDEX["AU25"]], 1), 0)


def test_baselines() -> None:
    rng = np.random.default_rng(0)
    e = np.clip(rng.normal(0.3, 0.05, (100, 53)), 0, 1)  # a clip resting with every coefficient at ~0.3
    j = ICT_NAMES.index("browDown_L"), ICT_NAMES.index("browDown_R")
    e[40:60, list(j)] += 0.4  # a frown from frame 40 to 60
    none = aus_from_expression(e, ICT_NAMES, baseline="none")
    clip = aus_from_expression(e, ICT_NAMES, baseline="clip")
    k = AU_INDEX["AU04"]
    assert none[:40, k].mean() > 0.3  # the resting offset reads as AU04 without a baseline
    assert clip[:40, k].mean() < 0.15 and clip[40:60, k].mean() > 0.6  # relative to the clip's rest
    own = aus_from_expression(e, ICT_NAMES, baseline=channels(e[:40], ICT_NAMES).mean(0))  # a known neutral
    assert own[:40, k].mean() < 0.15 and own[40:60, k].mean() > 0.6
    assert 0 <= clip.min() and clip.max() <= 1
    assert all(MESH_RAMPS[a][1] > MESH_RAMPS[a][0] for a in AU_NAMES)
    with pytest.raises(ValueError):
        aus_from_expression(e, ICT_NAMES, baseline="median")


def test_analyze_au_source(shared_data: Path, tmp_path: Path) -> None:
    from emogs.face.analyze import analyze_video, read_analysis_csv
    from emogs.mesh.ict import NPZ_NAME

    video = shared_data / "video" / "may_5s.mp4"
    with pytest.raises(InputError, match="--au-source"):
        analyze_video(video, tmp_path / "x.csv", au_source="openface", progress=False)
    if not (shared_data / "assets" / "ict-facekit" / NPZ_NAME).is_file():
        pytest.skip("ICT-FaceKit not in the shared data")
    res = analyze_video(video, tmp_path / "mesh.csv", max_seconds=2.0, au_source="mesh", progress=False)
    back = read_analysis_csv(tmp_path / "mesh.csv")
    assert back["aus"].shape == (50, 17) and back["success"].all()
    assert 0 <= back["aus"].min() and back["aus"].max() <= 1 and back["aus"].std(0).max() > 0.01
    assert np.allclose(back["aus"], res["aus"], atol=1e-4)
