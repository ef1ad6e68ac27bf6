"""Issue 12 cases handled by the run room (emogs.run) and the config checks: another dataset into an existing
run, non-positive --iters, damaged run files, a finished run, bad --config-json values."""
from __future__ import annotations

import json
import shutil

import pytest

from emogs.cli import main


TINY = {"resolution": 64, "log_every": 10, "num_vote_views": 8, "eval_lpips": False,
        "model": {"num_face": 1500, "num_shell": 1000, "num_mouth": 200}}


def _one_line_error(capsys, command: str, needle: str | None = None) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"emogs {command}: error: "), err
    assert needle is None or needle in err[-1], err


def test_train_another_dataset_into_an_existing_run_is_refused(tiny_run, talking_clip, tmp_path, capsys):
    from emogs.data.prepare import PrepareConfig, prepare

    other = prepare(talking_clip, tmp_path / "other", PrepareConfig(size=64, whisper=False), log=lambda s: None)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {f: (run / f).read_bytes() for f in ("metrics.json", "dataset.json", "test_render.mp4")}
    assert main(["train", str(other), "-o", str(run), "--device", "cpu"]) == 2
    _one_line_error(capsys, "train", "dataset")
    assert all((run / f).read_bytes() == b for f, b in before.items())


@pytest.mark.parametrize("iters", ["0", "-5"])
def test_train_iters_must_be_positive(may_dataset, tmp_path, capsys, iters):
    run = tmp_path / "run"
    assert main(["train", str(may_dataset), "-o", str(run), "--iters", iters, "--device", "cpu",
                 "--config-json", json.dumps(TINY)]) == 2
    _one_line_error(capsys, "train", "--iters")
    assert not (run / "model.safetensors").exists()


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_damaged_run_files_are_one_line_errors(tiny_run, tmp_path, capsys, name):
    from emogs.io.media import write_wav
    import numpy as np

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / name).write_bytes(b"\x00garbage{" * 10)
    wav = tmp_path / "s.wav"
    write_wav(wav, (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32))
    assert main(["render", str(run), "--audio", str(wav), "-o", str(tmp_path / "o.mp4")]) == 2
    _one_line_error(capsys, "render", name)


def test_rerunning_train_on_a_finished_run_says_it_is_complete(tiny_run, may_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = (run / "metrics.json").read_bytes()
    assert main(["train", str(may_dataset), "-o", str(run), "--iters", "20", "--device", "cpu",
                 "--config-json", json.dumps(TINY)]) == 0
    out = capsys.readouterr()
    assert "complete" in (out.out + out.err)
    assert (run / "metrics.json").read_bytes() == before


def test_config_json_values_are_validated(may_dataset, tmp_path, capsys):
    assert main(["train", str(may_dataset), "-o", str(tmp_path / "run"), "--device", "cpu",
                 "--config-json", '{"resolution": "abc"}']) == 2
    _one_line_error(capsys, "train", "resolution")
    assert not (tmp_path / "run").exists()


def test_config_json_text_longer_than_a_file_name(may_dataset, tmp_path, capsys):
    """JSON text too long to be a file name is read as JSON (it once failed with "file name too long"); its
    values are still validated."""
    import json

    text = json.dumps({"resolution": "abc", "run_name_padding_for_a_long_text": "x" * 5000})
    assert main(["train", str(may_dataset), "-o", str(tmp_path / "run"), "--device", "cpu", "--config-json", text]) == 2
    err = capsys.readouterr().err
    assert "too long" not in err and ("resolution" in err or "run_name_padding" in err)
