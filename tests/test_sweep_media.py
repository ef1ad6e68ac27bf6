"""Issue 12, cases 3 and 9: display rotation (phone video) and a variable-frame-rate clip whose video
outlasts its audio, through `prepare` and `analyze`. Clips are made here from a synthetic talking head."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _sweep import cli, write_clip
from emogs.io import media


@pytest.fixture(scope="module")
def rotated(talking_clip, tmp_path_factory):
    """(upright frames (N, 400, 320, 3), the clip stored sideways with a 90 degree display rotation, VFR
    timestamps, and audio that ends 40 % early)."""
    frames = list(media.read_frames(talking_clip))
    wav = media.load_audio(talking_clip)
    upright = [np.pad(f, ((40, 40), (0, 0), (0, 0))) for f in frames]  # portrait 320 x 400
    stored = [np.rot90(u, -1) for u in upright]  # as a phone stores it: landscape, turned clockwise
    pts = np.cumsum(np.random.default_rng(0).uniform(25, 55, len(frames))).astype(int) - 25
    path = write_clip(tmp_path_factory.mktemp("rot") / "phone.mp4", stored, pts, audio=wav[: int(len(wav) * 0.6)],
                      rotation=90)
    return np.stack(upright), path


def test_rotated_video_is_read_upright(rotated):
    upright, path = rotated
    info = media.probe(path)
    assert (info.width, info.height, info.rotation) == (320, 400, 90)
    got = list(media.read_frames(path))
    assert got[0].shape == (400, 320, 3)
    assert np.abs(got[10].astype(int) - upright[10]).mean() < 4  # H.264 error only
    small = next(iter(media.read_frames(path, fps=25, size=(160, 200))))
    assert small.shape == (200, 160, 3)
    raw = next(iter(media.read_frames(path, raw=True)))
    assert raw.to_ndarray(format="rgb24").shape == (400, 320, 3)


def test_analyze_honours_rotation(rotated, talking_clip, tmp_path):
    from emogs.face.analyze import analyze_video

    _, path = rotated
    rot = analyze_video(path, tmp_path / "rot.csv", progress=False, max_seconds=1.0)
    ref = analyze_video(talking_clip, tmp_path / "ref.csv", progress=False, max_seconds=1.0)
    assert rot["success"].mean() > 0.9
    roll = np.degrees(np.median(rot["pose_R"][rot["success"], 2]))
    roll_ref = np.degrees(np.median(ref["pose_R"][ref["success"], 2]))
    assert abs(roll - roll_ref) < 5  # a sideways read would be about 90 degrees off


def test_prepare_rotated_vfr_clip_with_short_audio(rotated, tmp_path):
    _, path = rotated
    out = tmp_path / "ds"
    r = cli("prepare", path, "-o", out, "--size", "64", "--no-whisper")
    assert r.returncode == 0, r.stderr[-2000:]
    warn = [ln for ln in r.stderr.splitlines() if "warning: the audio ends" in ln]
    assert len(warn) == 1 and "s before the video" in warn[0], r.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert (m["source"]["width"], m["source"]["height"]) == (320, 400)
    assert m["audio"]["padded_samples"] > 16000
    with np.load(out / "tracks.npz") as z:
        roll = np.degrees(np.median(z["pose_R"][:, 2]))
    assert abs(roll) < 10
