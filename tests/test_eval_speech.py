"""`emogs eval-speech`: runs on a tiny run (its numbers mean nothing), refuses bad input with exit 2, writes its
report atomically, and works on a run without a speech-motion model."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from emogs.cli import main


@pytest.fixture(scope="module")
def driving(shared_data, tmp_path_factory):
    """2 s of another speaker (RD_Radio31) and 0.5 s of it."""
    from emogs.io.media import load_audio, write_wav

    src = shared_data / "audio" / "RD_Radio31_000.wav"
    if not src.is_file():
        pytest.skip(f"{src} not found")
    wav = load_audio(src)
    d = tmp_path_factory.mktemp("driving")
    write_wav(d / "radio.wav", wav[:32000])
    write_wav(d / "short.wav", wav[:8000])
    return d


def test_eval_speech_writes_its_report(tiny_run, may_dataset, driving, tmp_path):
    out = tmp_path / "rep"
    assert main(["eval-speech", str(tiny_run), "--audio", str(driving / "radio.wav"), "-o", str(out),
                 "--device", "cpu"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert (out / "speech.png").stat().st_size > 1000
    assert set(res["renders"]) == {"radio", "own_test_audio"}
    assert res["real"]["frames"] == 50 and res["real"]["dataset"] == str(may_dataset)
    for r in res["renders"].values():
        for k in ("mouth_open_sd", "spread_ratio", "lipsync_conf", "sync_ratio", "spread_ok", "sync_ok", "frames"):
            assert k in r
    r = res["renders"]["radio"]
    assert r["frames"] == 50 and r["spread_ratio"] == pytest.approx(r["mouth_open_sd"] / res["real"]["mouth_open_sd"],
                                                                    rel=0.01, abs=1e-3)
    assert res["summary"]["driving_audios"] == 1
    assert "speech-motion prior" in res["meta"]["mouth"]
    assert not [p for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]  # no temp files left
    # a second call refuses to overwrite the report without --force; with it the renders are reused
    assert main(["eval-speech", str(tiny_run), "--audio", str(driving / "radio.wav"), "-o", str(out)]) == 2
    specs = (out / "videos" / "specs.json").stat().st_mtime_ns
    assert main(["eval-speech", str(tiny_run), "--audio", str(driving / "radio.wav"), "-o", str(out),
                 "--device", "cpu", "--force"]) == 0
    assert (out / "videos" / "specs.json").stat().st_mtime_ns == specs


def test_eval_speech_refuses_bad_input(tiny_run, driving, tmp_path, capsys):
    a = str(driving / "radio.wav")
    bad = [
        ["eval-speech", str(tiny_run), "--audio", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "o1")],
        ["eval-speech", str(tiny_run), "--audio", str(driving / "short.wav"), "-o", str(tmp_path / "o2")],
        ["eval-speech", str(tmp_path / "norun"), "--audio", a, "-o", str(tmp_path / "o3")],
        ["eval-speech", str(tiny_run), "--audio", a, "-o", str(tmp_path / "o4"), "--dataset", str(tmp_path)],
        ["eval-speech", str(tiny_run), "--audio", a, "-o", a],  # the output is a file (the input)
        ["eval-speech", str(tiny_run), "--audio", a, "-o", str(tmp_path / "o5"), "--size", "4"],
    ]
    for argv in bad:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("emogs eval-speech: error:"), err
    assert not any((tmp_path / f"o{k}" / "results.json").exists() for k in range(1, 6))


def test_eval_speech_on_a_run_without_speech_motion(tiny_run, driving, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old, ignore=shutil.ignore_patterns("eval_*"))
    (old / "speech_motion.safetensors").unlink(missing_ok=True)
    out = tmp_path / "rep"
    assert main(["eval-speech", str(old), "--audio", str(driving / "radio.wav"), "-o", str(out), "--device", "cpu",
                 "--no-own-audio"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["renders"]) == {"radio"} and "speech-motion" not in res["meta"]["mouth"]
    assert np.isfinite(res["renders"]["radio"]["mouth_open_sd"])


def test_eval_speech_on_a_free_head(may_dataset, driving, tmp_path):
    run = tmp_path / "free"
    over = {"resolution": 64, "model": {"num_face": 1500, "num_shell": 1000, "num_mouth": 200}, "num_vote_views": 8,
            "eval_lpips": False}
    assert main(["train", str(may_dataset), "-o", str(run), "--model", "free", "--iters", "5", "--device", "cpu",
                 "--config-json", json.dumps(over)]) == 0
    assert not (run / "speech_motion.safetensors").exists()
    out = tmp_path / "rep"
    assert main(["eval-speech", str(run), "--audio", str(driving / "radio.wav"), "-o", str(out), "--device", "cpu",
                 "--no-own-audio"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["meta"]["model_kind"] == "free" and "speech-motion" not in res["meta"]["mouth"]


def test_render_only_then_measure_reuses_the_renders(tiny_run, driving, tmp_path):
    """--render-only (the GPU machine: no MediaPipe) renders and writes no report; the same command without it
    reuses those renders (same weights, audio, size) and measures."""
    out = tmp_path / "rep"
    assert main(["eval-speech", str(tiny_run), "--audio", str(driving / "radio.wav"), "-o", str(out),
                 "--device", "cpu", "--render-only"]) == 0
    assert not (out / "results.json").exists()
    assert {p.name for p in (out / "videos").glob("*.mp4")} == {"radio.mp4", "own_test_audio.mp4"}
    specs = (out / "videos" / "specs.json").stat().st_mtime_ns
    assert main(["eval-speech", str(tiny_run), "--audio", str(driving / "radio.wav"), "-o", str(out),
                 "--device", "cpu"]) == 0
    assert (out / "videos" / "specs.json").stat().st_mtime_ns == specs
    assert set(json.loads((out / "results.json").read_text())["renders"]) == {"radio", "own_test_audio"}


def test_measure_only_needs_no_weights_but_the_same_audio(tiny_run, driving, tmp_path):
    out = tmp_path / "run" / "eval_speech"
    shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints"))
    run = tmp_path / "run"
    assert main(["eval-speech", str(run), "--audio", str(driving / "radio.wav"), "-o", str(out), "--device", "cpu",
                 "--render-only", "--no-own-audio"]) == 0
    (run / "model.safetensors").unlink()  # what comes back from the GPU machine without the weights
    assert main(["eval-speech", str(run), "--audio", str(driving / "radio.wav"), "-o", str(out), "--device", "cpu"]) == 2
    other = tmp_path / "other.wav"
    shutil.copyfile(driving / "short.wav", other)
    assert main(["eval-speech", str(run), "--audio", str(other), "-o", str(out), "--measure-only", "--no-own-audio"]) == 2
    assert main(["eval-speech", str(run), "--audio", str(driving / "radio.wav"), "-o", str(out), "--measure-only",
                 "--no-own-audio"]) == 0
    assert set(json.loads((out / "results.json").read_text())["renders"]) == {"radio"}
