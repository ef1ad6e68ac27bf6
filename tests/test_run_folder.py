"""The run room (emogs.run): one reader/writer of RUN/, its identity and completeness, older runs, damaged
files, and the commands standing on it (train's checks before work, render, export)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from emogs.cli import main
from emogs.errors import InputError
from emogs.run import RunFolder, open_run


def _snapshot(run) -> dict[str, int]:
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_trained_run_describes_itself(tiny_run):
    r = open_run(tiny_run)
    info = r.info()
    assert info["format_version"] == 2 and info["status"] == "complete" and info["iterations"] == 20
    assert info["dataset"]["sha256"] and info["dataset"]["num_frames"] > 0
    assert r.is_complete() and r.model_config().variant == "full" and r.render_settings()["resolution"] == 64
    assert r.train_cameras().shape[1:] == (4, 4) and r.background().dtype == np.uint8
    assert r.speech_aus() is not None
    with pytest.raises(InputError, match="no such run folder"):
        open_run(tiny_run.parent / "nope")
    with pytest.raises(InputError, match="not a run folder"):
        open_run(tiny_run / "previews")


def test_finished_run_is_left_alone_and_other_data_is_refused(tiny_run, may_dataset, tmp_path, capsys):
    from emogs.data.prepare import PrepareConfig, prepare

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = _snapshot(run)
    assert main(["train", str(may_dataset), "-o", str(run), "--device", "cpu"]) == 0
    cap = capsys.readouterr()
    assert "is complete" in cap.out + cap.err
    assert _snapshot(run) == before  # nothing rewritten
    other = tmp_path / "other"  # the same clip prepared with other settings (3 s instead of 4)
    prepare(_may_video(may_dataset), other, PrepareConfig(size=128, whisper=False, max_seconds=3))
    capsys.readouterr()
    assert main(["train", str(other), "-o", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "was trained on" in err and "choose a new -o" in err and err.count("\n") == 1
    assert _snapshot(run) == before
    # a folder of other files is not a run to write into
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    assert main(["train", str(may_dataset), "-o", str(junk), "--device", "cpu"]) == 2
    assert "holds other files" in capsys.readouterr().err and (junk / "notes.txt").read_text() == "mine"


def _may_video(ds):
    return json.loads((ds / "manifest.json").read_text())["source"]["path"]


@pytest.mark.parametrize("args,msg", [
    (["--iters", "0"], "--iters must be at least 1"),
    (["--iters", "-5"], "--iters must be at least 1"),
    (["--config-json", '{"resolution": "abc"}'], "resolution must be int"),
    (["--config-json", '{"model": {"no_such": 1}}'], "unknown"),
    (["--config-json", '[1, 2]'], "JSON object"),
    (["--config-json", '{"resolution": 4}'], "resolution = 4 is out of range"),
])
def test_bad_training_settings_are_refused_before_any_work(may_dataset, tmp_path, capsys, args, msg):
    run = tmp_path / "run"
    assert main(["train", str(may_dataset), "-o", str(run), "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1, err
    assert not run.exists()


@pytest.mark.parametrize("name,garbage", [("config.json", b"{not json"), ("model.safetensors", b"\x00" * 64),
                                           ("dataset.json", b"[]")])
def test_damaged_run_files_are_one_line_errors(tiny_run, shared_data, tmp_path, capsys, name, garbage):
    from emogs.io import media

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / name).write_bytes(garbage)
    speech = tmp_path / "s.wav"
    media.write_wav(speech, media.load_audio(shared_data / "audio" / "emotalk_happy.wav", 16000, max_seconds=1.5))
    assert main(["render", str(run), "--audio", str(speech), "-o", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert name in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "x.mp4").exists()


def test_format_1_runs_still_render(tiny_run, tmp_path):
    """A run written before run.json existed: identity from dataset.json, weights' metadata says format 1."""
    from safetensors.torch import load_file, save_file

    from emogs.avatar import Avatar

    old = tmp_path / "old"
    shutil.copytree(tiny_run, old, ignore=shutil.ignore_patterns("checkpoints"))
    (old / "run.json").unlink()
    t = load_file(str(old / "model.safetensors"))
    save_file(t, str(old / "model.safetensors"), metadata={"run_format_version": "1"})
    r = RunFolder(old)
    assert r.format_version() == 1 and r.info()["status"] == "complete"
    av = Avatar.load(old, device="cpu")
    new = Avatar.load(tiny_run, device="cpu")
    wav = np.random.default_rng(0).normal(scale=0.1, size=8000).astype(np.float32)
    assert np.array_equal(av.render(wav, quiet=True), new.render(wav, quiet=True))


def test_export_writes_a_ply_at_an_expression(tiny_run, tmp_path):
    from emogs.render.ply import load_ply

    a, b, c = tmp_path / "a.ply", tmp_path / "b.ply", tmp_path / "c.ply"
    assert main(["export", str(tiny_run), "-o", str(a)]) == 0
    assert main(["export", str(tiny_run), "-o", str(b), "--au", "AU04=1", "--au", "AU01=0"]) == 0
    assert main(["export", str(tiny_run), "-o", str(c), "--canonical"]) == 0
    pa, pb, pc = load_ply(a), load_ply(b), load_ply(c)
    n = len(RunFolder(tiny_run).load_model()[1].gaussians)
    assert pa["means"].shape == (n, 3) == pb["means"].shape == pc["means"].shape
    assert not np.allclose(pa["means"].numpy(), pb["means"].numpy())  # the AU edit moved the face
    assert main(["export", str(tiny_run), "-o", str(tmp_path / "x.obj")]) == 2


def test_rendering_does_not_stand_on_training(tiny_run, tmp_path):
    """Loading and rendering a head imports nothing of `emogs.train` (the import graph of the rooms)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\nfrom emogs.avatar import Avatar\n"
            f"av = Avatar.load({str(tiny_run)!r}, device='cpu')\n"
            "av.render(np.random.default_rng(0).normal(scale=0.1, size=4000).astype(np.float32), quiet=True)\n"
            "import emogs.eval.controls, emogs.eval.run\n"
            "bad = sorted(m for m in sys.modules if m.startswith('emogs.train'))\n"
            "print('TRAIN:', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TRAIN: []" in out.stdout, out.stdout
