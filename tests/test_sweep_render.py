"""Issue 12 on a trained run (the tiny run of tests/conftest.py): render and eval cases of the sweep.
Truncated speech, the AU table after clamping, --force, the side-by-side plot, eval's report folder and
its note on sync for short clips, and killed renders (SIGTERM cleans up, SIGKILL is swept next time)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from _sweep import ROOT, env
from emogs.cli import main
from emogs.io import media


def _speech(shared_data, seconds: float) -> np.ndarray:
    """`seconds` of speech (the file's first 0.5 s are silence)."""
    return media.load_audio(shared_data / "audio" / "emotalk_happy.wav", 16000, max_seconds=0.5 + seconds)[8000:]


def test_truncated_wav_renders_what_is_there_with_a_warning(tiny_run, shared_data, tmp_path, capsys):
    full = tmp_path / "full.wav"
    media.write_wav(full, np.tile(_speech(shared_data, 2.0), 4))  # 8 s
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + int(0.47 * 32000)])
    out = tmp_path / "o.mp4"
    assert main(["render", str(tiny_run), "--audio", str(cut), "-o", str(out), "--pose", "static"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "declares 8.00 s of audio but only 0.47 s" in err
    assert len(list(media.read_frames(out))) == 12


def test_render_table_shows_the_clamped_aus_and_force_replaces(tiny_run, shared_data, tmp_path, capsys):
    from emogs import Avatar

    wav = tmp_path / "s.wav"
    media.write_wav(wav, _speech(shared_data, 0.6))
    out = tmp_path / "o.mp4"
    out.write_bytes(b"earlier")
    args = ["render", str(tiny_run), "--audio", str(wav), "-o", str(out), "--au", "AU12=1.0", "--no-blinks"]
    assert main(args) == 2 and "exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"earlier"
    assert main([*args, "--force"]) == 0
    assert media.probe(out).has_audio
    err = capsys.readouterr().err
    assert "AUs sent to the model (clamped to the training range)" in err
    row = next(ln for ln in err.splitlines() if ln.strip().startswith("AU12 "))
    mean, lo, hi = (float(v) for v in row.split()[1:4])
    top = min(1.0, Avatar.load(tiny_run, device="cpu").training_range()[1][8] + 0.1)
    assert hi == pytest.approx(top, abs=0.006) and hi < 1.0 and "1.00-1.00 (clamped)" in row


def test_side_by_side_plot_is_readable_at_small_sizes(tiny_run, shared_data, tmp_path):
    from emogs import Avatar

    av = Avatar.load(tiny_run, device="cpu")
    res = av.render(_speech(shared_data, 0.4), tmp_path / "sbs.mp4", au="AU04=1@0.1-0.3", side_by_side=True,
                    quiet=True)
    frames = list(media.read_frames(res.path))
    assert frames[0].shape == (256, 640, 3)  # 64 px render enlarged 4x beside a 384 x 256 plot
    render = frames[0][:, :256]
    assert np.abs(render[::4, ::4].astype(int) - render[1::4, 1::4]).mean() < 6  # nearest-neighbour blocks


def test_eval_report_folder_rules_and_the_sync_note(tiny_run, tmp_path, capsys):
    rep = tmp_path / "ev"
    args = ["eval", str(tiny_run), "-o", str(rep), "--image-stride", "10", "--identity-stride", "25"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(rep / "metrics.json")  # progress went to stderr
    assert "eval: note: sync metrics n/a: the clip has 50 frames" in err and "needs at least 60" in err
    m = json.loads((rep / "metrics.json").read_text())
    assert any(n.startswith("sync metrics n/a") for n in m["meta"]["notes"])
    assert m["sync_mouth_audio_corr"] is None
    before = (rep / "metrics.json").read_bytes()
    assert main(args) == 2 and "earlier report" in capsys.readouterr().err
    assert (rep / "metrics.json").read_bytes() == before
    train_metrics = (tiny_run / "metrics.json").read_bytes()
    assert main(["eval", str(tiny_run), "-o", str(tiny_run), "--force"]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert (tiny_run / "metrics.json").read_bytes() == train_metrics


def _start_render(run, wav, out) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "emogs.cli", "render", str(run), "--audio", str(wav), "-o",
                             str(out), "--pose", "static"], cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_temp(folder, proc, timeout=240.0) -> list:
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        tmp = list(folder.glob(".o.tmp.*"))
        if tmp and tmp[0].stat().st_size > 0:
            return tmp
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the render never started writing")


@pytest.mark.slow
def test_killed_renders_leave_no_hidden_temp_files(tiny_run, shared_data, tmp_path):
    wav = tmp_path / "s.wav"
    media.write_wav(wav, np.tile(_speech(shared_data, 2.0), 3))  # 6 s: a render that takes a while
    out = tmp_path / "o.mp4"
    p = _start_render(tiny_run, wav, out)  # SIGTERM: the render cleans up after itself
    _wait_for_temp(tmp_path, p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143 and "terminated" in err
    assert not list(tmp_path.glob(".o.tmp.*")) and not out.exists()
    p = _start_render(tiny_run, wav, out)  # SIGKILL: nothing can clean up ...
    stale = _wait_for_temp(tmp_path, p)
    p.kill()
    p.wait(60)
    assert stale[0].exists() and not out.exists()
    p = _start_render(tiny_run, wav, out)  # ... so the next render of that file sweeps it
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-2000:]
    assert not list(tmp_path.glob(".o.tmp.*")) and media.probe(out).duration == pytest.approx(6.0, abs=0.1)
