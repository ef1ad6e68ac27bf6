"""Issue 12, the bad-input sweep: outputs that are inputs, the --force rule, file-system faults, bad
arguments and inputs, for every command that writes. Each case: a one-line error naming the problem and
what to do, exit code 2, nothing earlier overwritten, nothing half-written (docs/errors.md has the table).
Small inputs made here; no shared data."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from _sweep import cli, noise_clip, one_error_line, read_only_runner
from emogs.cli import main
from emogs.errors import InputError


def _fails(capsys, argv: list[str], needle: str, before_work: bool = True) -> str:
    """The command exits 2 with a one-line error containing `needle`; `before_work`: and prints nothing
    else (no progress: the problem was found before any work)."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 or not before_work, err
    assert err[-1].startswith(f"emogs {argv[0]}: error: ") and needle in err[-1], err
    return err[-1]


@pytest.fixture()
def clip(tmp_path) -> Path:
    return noise_clip(tmp_path / "v.mp4")


# --- 1. an output that is an input is refused before any work ---------------------------------------
def test_analyze_output_equal_to_input_is_refused(clip, tmp_path, capsys):
    before = clip.read_bytes()
    _fails(capsys, ["analyze", str(clip), "-o", str(clip)], "is also an input")
    _fails(capsys, ["analyze", str(clip), "-o", str(tmp_path / "sub" / ".." / "v.mp4"), "--force"], "is also an input")
    link = tmp_path / "link.csv"
    link.symlink_to(clip)
    _fails(capsys, ["analyze", str(clip), "-o", str(link), "--force"], "is also an input")
    assert clip.read_bytes() == before


def test_prepare_input_inside_the_output_folder_is_refused(clip, tmp_path, capsys):
    ds = tmp_path / "ds"
    (ds / ".prepare").mkdir(parents=True)
    video = ds / "frames.mp4"
    shutil.copy(clip, video)
    _fails(capsys, ["prepare", str(video), "-o", str(ds), "--force"], "an input of this command")
    assert video.read_bytes() == clip.read_bytes()


def test_train_into_its_own_dataset_is_refused(tmp_path, capsys):
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "background.png").write_bytes(b"plate")
    _fails(capsys, ["train", str(ds), "-o", str(ds)], "an input of this command")
    assert (ds / "background.png").read_bytes() == b"plate" and sorted(os.listdir(ds)) == ["background.png"]


def test_demo_video_inside_the_demo_folder_is_refused(clip, tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    video = out / "me.mp4"
    shutil.copy(clip, video)
    _fails(capsys, ["demo", "--video", str(video), "-o", str(out)], "an input of this command")
    assert sorted(os.listdir(out)) == ["me.mp4"]


# --- the overwrite rule: a finished output is replaced only with --force ------------------------------
def test_existing_outputs_need_force(clip, talking_clip, tmp_path, capsys):
    csv = tmp_path / "a.csv"
    csv.write_text("earlier result")
    _fails(capsys, ["analyze", str(clip), "-o", str(csv)], "exists; pass --force")
    # --force on a clip with no face: an error, and the earlier result is still there
    _fails(capsys, ["analyze", str(clip), "-o", str(csv), "--force"], "no face found", before_work=False)
    assert csv.read_text() == "earlier result"
    assert main(["analyze", str(talking_clip), "-o", str(csv), "--force"]) == 0
    assert csv.read_text().startswith("frame,timestamp,success")
    capsys.readouterr()

    video = tmp_path / "s.mp4"
    video.write_bytes(b"earlier video")
    _fails(capsys, ["synth", "-o", str(video), "--text", "Hi.", "--events", "none", "--size", "128"], "exists")
    assert video.read_bytes() == b"earlier video"
    (tmp_path / "t.gt.csv").write_text("earlier csv")  # a side file of the output counts too
    _fails(capsys, ["synth", "-o", str(tmp_path / "t.mp4"), "--text", "Hi.", "--events", "none", "--size", "128"],
           "t.gt.csv: exists")
    assert not (tmp_path / "t.mp4").exists()

    rep = tmp_path / "report"
    rep.mkdir()
    (rep / "metrics.json").write_text("{}")
    _fails(capsys, ["eval-videos", str(clip), str(clip), "-o", str(rep)], "earlier report")
    assert (rep / "metrics.json").read_text() == "{}"


# --- 7. file-system faults: found before the work ---------------------------------------------------
def test_output_is_a_folder_or_below_a_file(clip, tmp_path, capsys):
    folder = tmp_path / "out.csv"
    folder.mkdir()
    _fails(capsys, ["analyze", str(clip), "-o", str(folder)], "is a folder")
    mp4dir = tmp_path / "x.mp4"
    mp4dir.mkdir()
    _fails(capsys, ["synth", "-o", str(mp4dir), "--text", "Hi.", "--events", "none"], "is a folder")
    afile = tmp_path / "afile"
    afile.write_text("keep")
    _fails(capsys, ["analyze", str(clip), "-o", str(afile / "out.csv")], "is a file, not a folder")
    _fails(capsys, ["prepare", str(clip), "-o", str(afile)], "not a folder")
    _fails(capsys, ["eval-videos", str(clip), str(clip), "-o", str(afile)], "is a file")
    _fails(capsys, ["train", str(tmp_path), "-o", str(afile)], "is a file")
    _fails(capsys, ["demo", "--quick", "-o", str(afile)], "is a file")
    assert afile.read_text() == "keep"


def test_read_only_output_folder_is_reported_before_any_work(clip, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (tmp_path / "run").mkdir()
    wav = tmp_path / "speech.wav"
    from emogs.io.media import write_wav

    write_wav(wav, (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32))
    cases = {
        "analyze": ["analyze", str(clip), "-o", str(ro / "a.csv")],
        "synth": ["synth", "-o", str(ro / "s.mp4"), "--text", "Hi.", "--events", "none"],
        "prepare": ["prepare", str(clip), "-o", str(ro / "ds")],
        "eval-videos": ["eval-videos", str(clip), str(clip), "-o", str(ro / "rep")],
        "train": ["train", str(tmp_path), "-o", str(ro / "run")],
        "render": ["render", str(tmp_path / "run"), "--audio", str(wav), "-o", str(ro / "r.mp4")],
        "demo": ["demo", "--quick", "-o", str(ro / "demo")],
    }
    script = f"""
        import contextlib, io, json, time
        from emogs.cli import main
        out = {{}}
        for name, argv in {json.dumps(cases)}.items():
            err = io.StringIO()
            t = time.monotonic()
            with contextlib.redirect_stderr(err):
                rc = main(argv)
            out[name] = [rc, err.getvalue(), time.monotonic() - t]
        print(json.dumps(out))
    """
    res = read_only_runner(ro)(script)
    for name, (rc, err, _secs) in res.items():
        assert rc == 2, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "cannot write" in lines[0] and lines[0].startswith(f"emogs {name}: error:"), \
            (name, lines)
    assert os.listdir(ro) == []


def test_os_errors_during_work_are_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import emogs.face.analyze as an

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "a.csv"))

    monkeypatch.setattr(an, "analyze_video", full)
    _fails(capsys, ["analyze", "x.mp4", "-o", str(tmp_path / "a.csv")], "no space left on device; free some disk")


# --- inputs: folders, no face, bad numbers -------------------------------------------------------
def test_a_folder_given_as_an_input_file(tmp_path, capsys):
    d = tmp_path / "d.mp4"
    d.mkdir()
    _fails(capsys, ["analyze", str(d), "-o", str(tmp_path / "a.csv")], "is a folder")
    _fails(capsys, ["prepare", str(d), "-o", str(tmp_path / "ds")], "is a folder")
    _fails(capsys, ["eval-videos", str(d), str(d), "-o", str(tmp_path / "r")], "is a folder")
    _fails(capsys, ["demo", "--video", str(d), "-o", str(tmp_path / "demo")], "is a folder")
    (tmp_path / "run").mkdir()
    _fails(capsys, ["render", str(tmp_path / "run"), "--audio", str(d), "-o", str(tmp_path / "o.mp4")], "is a folder")
    _fails(capsys, ["eval", str(tmp_path / "afile")], "run folder")
    assert not (tmp_path / "ds").exists() and not (tmp_path / "demo").exists()


def test_analyze_a_clip_with_no_face_is_an_error_and_writes_nothing(clip, tmp_path, capsys):
    out = tmp_path / "a.csv"
    _fails(capsys, ["analyze", str(clip), "-o", str(out)], "no face found in any of the 75 frames", before_work=False)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_analyze_warns_about_frames_without_a_face(talking_clip, tmp_path, capsys):
    from emogs.io.media import read_frames, write_video

    frames = list(read_frames(talking_clip, max_seconds=1.2))
    frames[5:10] = [np.zeros_like(frames[0])] * 5
    v = tmp_path / "gap.mp4"
    write_video(v, frames, 25)
    assert main(["analyze", str(v), "-o", str(tmp_path / "g.csv")]) == 0
    assert "warning: no face in 5 of 30 frames" in capsys.readouterr().err


def test_synth_bad_voice_and_head_motion(tmp_path, capsys):
    out = tmp_path / "s.mp4"
    _fails(capsys, ["synth", "-o", str(out), "--voice", "xx-nope"], "no such voice")
    for bad in ("nan", "inf", "-1", "50"):
        _fails(capsys, ["synth", "-o", str(out), "--head-motion", bad], "--head-motion must be")
    _fails(capsys, ["synth", "-o", str(out), "--text", "   "], "--text is empty")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_synth_face_model_offers_only_what_exists(capsys):
    with pytest.raises(SystemExit) as e:
        main(["synth", "-o", "x.mp4", "--face-model", "ict"])
    assert e.value.code == 2 and "invalid choice: 'ict'" in capsys.readouterr().err


@pytest.mark.parametrize("fps", [0, -25, "abc", True, None, "nan"])
def test_au_timeline_with_a_bad_fps(tmp_path, fps):
    from emogs.control.timeline import load_timeline

    p = tmp_path / "tl.json"
    p.write_text(json.dumps({"fps": fps, "keyframes": [{"frame": 0, "AU12": 0.2}, {"frame": 25, "AU12": 0.8}]}))
    with pytest.raises(InputError, match='"fps" must be a positive number') as e:
        load_timeline(p)
    assert "\n" not in str(e.value)
    p.write_text(json.dumps({"fps": 50, "keyframes": [{"frame": 0, "AU12": 0.2}, {"frame": 25, "AU12": 0.8}]}))
    assert load_timeline(p).end_time == pytest.approx(0.5)


def test_render_argument_errors_come_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """A typo in a control fails in a second: nothing is loaded before every argument has been checked."""
    import emogs.avatar
    from emogs.io.media import write_wav

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(emogs.avatar.Avatar, "load", no_load)
    run = tmp_path / "run"
    run.mkdir()
    wav = tmp_path / "s.wav"
    write_wav(wav, (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32))
    tl = tmp_path / "tl.json"
    tl.write_text('{"fps": 0, "keyframes": [{"frame": 0, "AU12": 0.2}]}')
    out = tmp_path / "o.mp4"
    base = ["render", str(run), "--audio", str(wav), "-o", str(out)]
    _fails(capsys, [*base, "--au", "AU13=0.5"], "AU13")
    _fails(capsys, [*base, "--emotion", "hapy"], "happy")
    _fails(capsys, [*base, "--au-timeline", str(tl)], '"fps" must be a positive number')
    _fails(capsys, [*base, "--au-timeline", str(tmp_path)], "is a folder")
    _fails(capsys, [*base, "--au-from", str(tmp_path / "nope.mp4")], "--au-from")
    _fails(capsys, [*base, "--pose", "static", "--pose-from", str(wav)], "choose one")
    _fails(capsys, [*base, "--batch", "0"], "--batch")
    _fails(capsys, [*base, "--size", "8"], "--size")
    _fails(capsys, ["render", str(run), "--audio", str(wav), "-o", str(wav)], "is also an input")
    _fails(capsys, ["render", str(run), "--audio", str(wav), "-o", str(run / "model.safetensors")], "is also an input")
    out.write_bytes(b"earlier")
    _fails(capsys, base, "exists; pass --force")
    assert out.read_bytes() == b"earlier"
    with pytest.raises(AssertionError, match="model was loaded"):  # every check passed: now it loads
        main([*base, "--force"])


def test_truncated_wav_is_reported(tmp_path):
    from emogs.io.media import load_audio, write_wav

    full = tmp_path / "full.wav"
    write_wav(full, (0.3 * np.sin(np.arange(8 * 16000) / 5)).astype(np.float32))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + int(0.47 * 32000)])  # header still says 8 s
    warns: list[str] = []
    wav = load_audio(cut, warn=warns.append)
    assert len(wav) == pytest.approx(0.47 * 16000, abs=2)
    assert len(warns) == 1 and "declares 8.00 s" in warns[0] and "only 0.47 s" in warns[0]
    load_audio(full, warn=warns.append)
    assert len(warns) == 1


# --- 2. prepare's stderr: the native-log redirect is one for the process ------------------------------
def test_quiet_native_logs_from_overlapping_threads_restores_stderr():
    """Two threads whose quiet sections overlap (A enters, B enters, A leaves, B leaves): the old code let
    B save the redirected descriptor and 'restore' /dev/null; stderr must be the real one afterwards."""
    from emogs.face.tracker import _quiet_native_logs

    before = os.fstat(2)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with _quiet_native_logs():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b():
        a_in.wait(5)
        with _quiet_native_logs():
            b_in.set()
            a_out.wait(5)
            seen["inside"] = os.fstat(2)

    ts = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    null = os.stat(os.devnull)
    assert (seen["inside"].st_dev, seen["inside"].st_ino) == (null.st_dev, null.st_ino)  # still quiet for B


def test_prepare_no_face_error_reaches_stderr(tmp_path):
    """The issue saw an empty stderr in 2 of 2 runs; the two tracker threads now share one redirect."""
    clip = noise_clip(tmp_path / "noise.mp4", seconds=3.0, size=256)
    r = cli("prepare", clip, "-o", tmp_path / "ds", "--size", "64", "--no-whisper")
    assert r.returncode == 2
    one_error_line(r.stderr, "no face found", "prepare")
    assert "track 75/75 frames" in r.stderr  # the progress before the error came through too
    assert not (tmp_path / "ds").exists()


# --- 9. temporary files, progress ---------------------------------------------------------------------
def test_stale_temp_files_of_killed_writers_are_swept(tmp_path):
    from emogs.io.atomic import write_text

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.tmp.{dead.pid}.abcd1234.mp4"
    stale.write_bytes(b"half a video")
    live = tmp_path / f".out.tmp.{os.getppid()}.efgh5678.mp4"  # a running process's: left alone
    live.write_bytes(b"being written")
    other = tmp_path / f".other.tmp.{dead.pid}.ijkl.mp4"  # another target's: swept when that is written
    other.write_bytes(b"x")
    write_text(tmp_path / "out.mp4", "done")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "out.mp4").read_text() == "done"


def test_progress_never_shows_more_done_than_total(capsys):
    from emogs.data.progress import Progress
    from emogs.face.analyze import _progress

    p = Progress("track", 161)
    p.done = 163
    assert "163 frames" in p._text() and "/161" not in p._text()
    p.done = 100
    assert "100/161" in p._text()
    _progress(163, 161, 1.0, end=True)
    assert "163 frames" in capsys.readouterr().err


# --- 10. threads ------------------------------------------------------------------------------------
def test_thread_choice(monkeypatch):
    import torch

    from emogs import runtime

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("EMOGS_THREADS", raising=False)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 4)
    monkeypatch.setattr(runtime, "busy_other_cores", lambda probe_s=0.3: 2.7)
    assert runtime.pick_threads() == 1  # 4 cores, ~3 busy elsewhere
    monkeypatch.setattr(runtime, "busy_other_cores", lambda probe_s=0.3: 0.2)
    assert runtime.pick_threads() == 4
    monkeypatch.setattr(runtime, "busy_other_cores", lambda probe_s=0.3: 9.0)
    assert runtime.pick_threads() == 1  # never 0
    monkeypatch.setenv("EMOGS_THREADS", "3")
    assert runtime.pick_threads() == 3
    old = torch.get_num_threads()
    try:
        monkeypatch.setenv("EMOGS_THREADS", "1")
        assert runtime.configure_threads(fresh=True) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)
        runtime._last.clear()


def test_every_command_and_the_avatar_api_pick_threads(monkeypatch, tmp_path, capsys):
    from emogs import runtime
    from emogs.avatar import Avatar

    calls = []
    monkeypatch.setattr(runtime, "configure_threads", lambda *a, **k: calls.append(1) or 1)
    assert main(["analyze", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "a.csv")]) == 2
    assert calls == [1]
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(InputError, match="model.safetensors"):
        Avatar.load(run)
    assert calls == [1, 1]
    import torch

    old = torch.get_num_threads()
    try:  # an explicit choice is kept
        with pytest.raises(InputError, match="model.safetensors"):
            Avatar.load(run, threads=1)
        assert calls == [1, 1] and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)


# --- 11. smaller things ------------------------------------------------------------------------------
def test_render_and_eval_help_spell_emotions_the_same_way(capsys):
    from emogs.control.emotions import EMOTION_NAMES

    spelled = "|".join(EMOTION_NAMES)
    for cmd in ("render", "eval", "eval-videos"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert spelled in "".join(capsys.readouterr().out.split()), cmd  # (argparse may wrap the list)


def test_au_table_shows_what_the_model_receives():
    from emogs.control.plan import build_plan

    plan = build_plan(50, au="AU12=1.0", blinks=False)
    sent = plan.au.copy()
    sent[:, 8] = 0.4  # AU12 clamped to the training range
    text = plan.summary(sent=sent)
    assert "AUs sent to the model" in text
    row = next(ln for ln in text.splitlines() if ln.strip().startswith("AU12"))
    assert row.split()[1:4] == ["0.40", "0.40", "0.40"] and "1.00-1.00 (clamped)" in row


def test_dataset_au_plot_has_an_intensity_scale(tmp_path, monkeypatch):
    import matplotlib.figure

    from emogs.data.report import au_plot
    from emogs.face.aus import AU_NAMES

    seen = []
    real = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: (seen.append(self),
                                                                                   real(self, *a, **k)))
    aus = np.random.default_rng(0).random((60, 17))
    au_plot(tmp_path / "au.png", aus, AU_NAMES, np.ones(60, bool), 40)
    axes = seen[0].axes
    assert len(axes) == 17 and all(list(ax.get_yticks()) == [0, 0.5, 1] for ax in axes)
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["0", "", "1"]


def test_side_by_side_panel_layout():
    from emogs.control.plot import plot_requested_vs_measured

    req = np.zeros((50, 17))
    req[10:30, 0] = 1.0
    img, (x0, y0, x1, y1) = plot_requested_vs_measured(req, req * 0.8, [f"AU{i}" for i in range(17)], 25, 384, 256,
                                                       return_axes=True)
    assert img.shape == (256, 384, 3)
    below = img[y1 + 30:, x0:x1]  # tick labels and the legend live below the axes, not over the tracks
    assert (below < 128).any()
    assert 0 < x0 < x1 <= 384 and 0 < y0 < y1 < 256 - 40


def test_eval_progress_goes_to_stderr(capsys):
    from emogs.eval.suite import EvalOptions, evaluate_frames

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(30)]
    evaluate_frames(iter(frames), iter(frames), None, EvalOptions(groups=("image",), progress=True))
    out, err = capsys.readouterr()
    assert out == "" and "eval: 25 frames" in err


def test_eval_says_why_sync_is_not_available_on_short_clips(talking_clip):
    from emogs.eval.suite import EvalOptions, evaluate_frames
    from emogs.io.media import load_audio, read_frames

    frames = list(read_frames(talking_clip, max_seconds=1.6))
    res = evaluate_frames(iter(frames), iter(frames), load_audio(talking_clip),
                          EvalOptions(groups=("sync",)))
    assert np.isnan(res.metrics["sync_mouth_audio_corr"])
    assert any(n.startswith("sync metrics n/a: the clip has 40 frames") for n in res.notes), res.notes
