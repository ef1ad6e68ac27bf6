"""Issue 12, case 5: `prepare` and `train` killed with SIGKILL (nothing can clean up) at awkward moments,
then run again: the re-run (and `prepare --force`) must finish the job and give a complete folder."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _sweep import ROOT, cli, env

PREP = ["--size", "64", "--no-whisper"]


def _popen(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "emogs.cli", *map(str, args)], cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300.0) -> None:
    t = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill: {proc.stderr.read()[-2000:]}")
        if time.monotonic() - t > timeout:
            proc.kill()
            raise AssertionError("the moment to kill never came")
        time.sleep(0.005)
    proc.kill()
    proc.wait(60)


def _complete(ds: Path) -> None:
    m = json.loads((ds / "manifest.json").read_text())
    assert m["num_frames"] > 50
    for f in ("frames.mp4", "audio.wav", "tracks.npz", "labels.mkv", "audio_mel.npy", "background.png"):
        assert (ds / f).is_file(), f


@pytest.mark.slow
def test_prepare_killed_in_its_first_moments(talking_clip, tmp_path):
    ds = tmp_path / "ds"
    p = _popen("prepare", talking_clip, "-o", ds, *PREP)
    _kill_when(p, lambda: (ds / ".prepare").is_dir())
    assert not (ds / "manifest.json").exists()
    r = cli("prepare", talking_clip, "-o", ds, *PREP)
    assert r.returncode == 0, r.stderr[-2000:]
    _complete(ds)
    # the very state the issue found: an empty .prepare/ (killed before anything was written)
    for k, extra in enumerate(([], ["--force"])):
        d = tmp_path / f"empty{k}"
        (d / ".prepare").mkdir(parents=True)
        r = cli("prepare", talking_clip, "-o", d, *PREP, *extra)
        assert r.returncode == 0, r.stderr[-2000:]
        _complete(d)


@pytest.mark.slow
def test_prepare_killed_mid_way_resumes(talking_clip, tmp_path):
    ds = tmp_path / "ds"
    state = ds / ".prepare" / "state.json"

    def tracked() -> bool:
        try:
            return "track" in json.loads(state.read_text())["stages"]
        except (OSError, ValueError, KeyError):
            return False

    p = _popen("prepare", talking_clip, "-o", ds, *PREP)
    _kill_when(p, tracked)
    assert not (ds / "manifest.json").exists()
    r = cli("prepare", talking_clip, "-o", ds, *PREP)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "track: done earlier, skipped" in r.stderr
    _complete(ds)


@pytest.fixture(scope="module")
def small_dataset(talking_clip, tmp_path_factory) -> Path:
    from emogs.data.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("kill") / "ds"
    prepare(talking_clip, out, PrepareConfig(size=64, whisper=False), log=lambda s: None)
    return out


TINY = {"resolution": 64, "log_every": 5, "preview_every": 10000, "checkpoint_every": 100, "num_vote_views": 8,
        "eval_lpips": False, "model": {"num_face": 1500, "num_shell": 1000, "num_mouth": 200}}


@pytest.mark.slow
def test_train_killed_resumes_from_its_checkpoint(small_dataset, tmp_path):
    run = tmp_path / "run"
    args = ["train", small_dataset, "-o", run, "--iters", "60", "--device", "cpu", "--config-json", json.dumps(TINY)]
    state = run / "checkpoints" / "last_state.json"

    def checkpointed() -> bool:  # the schedule scaled to 60 iterations checkpoints every 10
        try:
            return json.loads(state.read_text())["iteration"] >= 20
        except (OSError, ValueError, KeyError):
            return False

    p = _popen(*args)
    _kill_when(p, checkpointed)
    assert not (run / "model.safetensors").exists()
    at = json.loads(state.read_text())["iteration"]
    r = cli(*args)
    assert r.returncode == 0, r.stderr[-2000:] + r.stdout[-2000:]
    assert f"resuming {run} from iteration {at}" in r.stdout + r.stderr
    assert json.loads(state.read_text())["iteration"] == 60
    for f in ("model.safetensors", "metrics.json", "test_render.mp4", "speech_aus.safetensors"):
        assert (run / f).is_file(), f
    its = [json.loads(s)["iteration"] for s in (run / "train_log.jsonl").read_text().splitlines()]
    assert its[-1] == 60 and at + 5 in its
    shutil.rmtree(run)
