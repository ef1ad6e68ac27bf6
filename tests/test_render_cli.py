"""`emogs render` and `emogs.Avatar`: new speech with AU / emotion controls on a tiny trained run, and the
bad inputs of issue 6 (silent or unreadable audio, unknown AUs, an incompatible run, nothing overwritten)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from emogs.cli import main
from emogs.io import media


def _speech(shared_data, seconds: float) -> np.ndarray:
    return media.load_audio(shared_data / "audio" / "emotalk_happy.wav", 16000, max_seconds=seconds)


def test_render_cli_with_controls_matches_audio_length(tiny_run, shared_data, tmp_path):
    wav_path = tmp_path / "speech.wav"
    wav = _speech(shared_data, 1.93)  # not a whole number of frames: the video covers it, rounded up
    media.write_wav(wav_path, wav)
    out = tmp_path / "out.mp4"
    rc = main(["render", str(tiny_run), "--audio", str(wav_path), "-o", str(out), "--au", "AU04=1.0@0.5-1.5",
               "--emotion", "happy:0.5", "--no-blinks"])
    assert rc == 0
    info = media.probe(out)
    frames = media.frames_for_audio(len(wav))
    assert (info.fps, info.has_audio, info.audio_rate, info.codec) == (25.0, True, 16000, "h264")
    assert len(list(media.read_frames(out))) == frames == 49
    assert abs(len(media.load_audio(out)) - len(wav)) < 1100  # AAC priming/padding only


def test_render_from_a_video_track_stereo_48k(tiny_run, shared_data, tmp_path):
    # a video file as the speech source (stereo 48 kHz AAC inside an MP4)
    out = tmp_path / "from_video.mp4"
    src = shared_data / "video" / "lieu_60s_256px.mp4"
    clip = tmp_path / "clip.mp4"  # a 1.2 s stereo 48 kHz excerpt keeps the test short
    import av

    with av.open(str(src)) as i, av.open(str(clip), "w") as o:
        ins = i.streams.audio[0]
        os_ = o.add_stream("aac", rate=48000)
        os_.layout = "stereo"
        for frame in i.decode(ins):
            if frame.time > 1.2:
                break
            frame.pts = None
            for pkt in os_.encode(frame):
                o.mux(pkt)
        for pkt in os_.encode():
            o.mux(pkt)
    assert main(["render", str(tiny_run), "--audio", str(clip), "-o", str(out), "--pose", "static"]) == 0
    assert media.probe(out).duration == pytest.approx(len(media.load_audio(clip)) / 16000, abs=0.05)


def test_avatar_api_returns_frames_and_side_by_side(tiny_run, shared_data, tmp_path):
    from emogs import Avatar

    av = Avatar.load(tiny_run, device="cpu")
    wav = _speech(shared_data, 1.0)
    frames = av.render(wav, au={"AU01": (1.0, 0.2, 0.8)}, emotion="sad", quiet=True)
    assert frames.shape == (25, 64, 64, 3) and frames.dtype == np.uint8
    neutral = av.render(wav, base="neutral", blinks=False, quiet=True)
    assert not np.array_equal(frames, neutral)  # the controls reach the pixels
    res = av.render(wav, tmp_path / "sbs.mp4", au="AU04=1@0.2-0.8", side_by_side=True, quiet=True)
    info = media.probe(res.path)  # a 64 px render is shown 4x (256 px) beside a 384 x 256 plot
    assert res.frames == 25 and (info.width, info.height) == (256 + 384, 256)


def test_render_bad_inputs_clear_errors_and_nothing_overwritten(tiny_run, shared_data, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"earlier result")
    silent = tmp_path / "silent.wav"
    media.write_wav(silent, np.zeros(16000, np.float32))
    speech = tmp_path / "speech.wav"
    media.write_wav(speech, _speech(shared_data, 1.0))
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\x00garbage" * 100)

    def fails(args: list[str], needle: str) -> None:
        assert main(["render", str(tiny_run), "-o", str(out), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
        assert out.read_bytes() == b"earlier result"

    fails(["--audio", str(silent)], "silent")
    fails(["--audio", str(junk)], "not a readable media file")
    fails(["--audio", str(tmp_path / "missing.wav")], "no such file")
    fails(["--audio", str(speech), "--au", "AU13=0.5"], "AU13")
    fails(["--audio", str(speech), "--au", "AU12=8"], "AU12")
    fails(["--audio", str(speech), "--au", "AU01=1@3-2"], "AU01")
    fails(["--audio", str(speech), "--emotion", "hapy"], "happy")
    # silent audio renders an idle head when asked to
    assert main(["render", str(tiny_run), "--audio", str(silent), "-o", str(tmp_path / "idle.mp4"),
                 "--allow-silent"]) == 0
    assert media.probe(tmp_path / "idle.mp4").has_audio


def test_incompatible_run_is_refused(tiny_run, shared_data, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    old = tmp_path / "old_run"
    shutil.copytree(tiny_run, old, ignore=shutil.ignore_patterns("checkpoints"))
    tensors = load_file(str(old / "model.safetensors"))
    save_file(tensors, str(old / "model.safetensors"), metadata={"run_format_version": "0"})
    speech = tmp_path / "speech.wav"
    media.write_wav(speech, _speech(shared_data, 1.0))  # (the first 0.5 s are silent: refused before the run)
    assert main(["render", str(old), "--audio", str(speech), "-o", str(tmp_path / "x.mp4")]) == 2
    assert "run format version 0" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "nope"), "--audio", str(speech), "-o", str(tmp_path / "x.mp4")]) == 2


def test_requested_aus_are_clamped_to_the_training_range(tiny_run):
    from emogs import Avatar

    av = Avatar.load(tiny_run, device="cpu")
    lo, hi = av.training_range()
    req = np.ones((5, 17), np.float32)
    warnings: list[str] = []
    out = av.clamp_to_training(req, warn=warnings.append)
    assert np.all(out <= np.clip(hi + 0.1, 0, 1) + 1e-6)
    cut = [n for n, h in zip(__import__("emogs.face.aus", fromlist=["AU_NAMES"]).AU_NAMES, hi) if h + 0.1 < 0.98]
    assert cut and all(any(w.startswith(n) for w in warnings) for n in cut)
