"""Shared test fixtures: the real data beside the project (../shared/data), skipped cleanly when absent."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__import__("os").environ.get("EMOGS_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when it is not there."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def may_dataset(shared_data, tmp_path_factory) -> Path:
    """`emogs prepare` of a 4 s slice of may_5s.mp4 at 128 px (log-mel only), shared by the tests."""
    from emogs.data.prepare import PrepareConfig, prepare

    video = shared_data / "video" / "may_5s.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    out = tmp_path_factory.mktemp("may") / "ds"
    prepare(video, out, PrepareConfig(size=128, whisper=False, max_seconds=4))
    return out


@pytest.fixture(scope="session")
def tiny_run(may_dataset, tmp_path_factory) -> Path:
    """A tiny trained run (64 px, ~2.7 k Gaussians, 20 iterations): enough to exercise render and eval."""
    import json

    from emogs.cli import main

    run = tmp_path_factory.mktemp("tiny") / "run"
    over = {"resolution": 64, "log_every": 10, "model": {"num_face": 1500, "num_shell": 1000, "num_mouth": 200},
            "num_vote_views": 8, "eval_lpips": False}
    assert main(["train", str(may_dataset), "-o", str(run), "--iters", "20", "--device", "cpu",
                 "--config-json", json.dumps(over)]) == 0
    return run


@pytest.fixture(scope="session")
def talking_clip(tmp_path_factory) -> Path:
    """A 3.5 s synthetic talking head (`emogs synth`, 320 px, speech + a smile): needs no shared data."""
    from emogs.synth.generate import SynthConfig, synth

    out = tmp_path_factory.mktemp("talking") / "clip.mp4"
    synth(out, SynthConfig(text="Hello there, I am a small test person.", events="smile:0.6-1.4:0.8", size=320),
          progress=False)
    return out
