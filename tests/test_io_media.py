"""emogs.io: media decode/encode round trips and atomic writes."""
from __future__ import annotations

import numpy as np
import pytest

from emogs.errors import InputError
from emogs.io import media
from emogs.io.atomic import atomic_path, write_json, read_json


def test_video_roundtrip_with_audio(tmp_path):
    frames = np.zeros((30, 64, 96, 3), np.uint8)
    for i in range(30):
        frames[i, :, : 3 * i] = 200
    audio = np.sin(np.linspace(0, 2 * np.pi * 440 * 1.2, 19200)).astype(np.float32) * 0.5
    p = tmp_path / "v.mp4"
    assert media.write_video(p, frames, fps=25, audio=audio) == 30
    info = media.probe(p)
    assert (info.width, info.height, info.fps, info.has_audio, info.audio_rate) == (96, 64, 25.0, True, 16000)
    back = np.stack(list(media.read_frames(p)))
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 4
    wav = media.load_audio(p)
    assert abs(len(wav) - len(audio)) < 2048
    # resampling 25 -> 10 fps keeps duration
    assert len(list(media.read_frames(p, fps=10))) == 12


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        media.probe(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(InputError, match="not a readable media file"):
        media.probe(junk)
    silent = tmp_path / "silent.mp4"
    media.write_video(silent, np.zeros((5, 32, 32, 3), np.uint8))
    with pytest.raises(InputError, match="no audio"):
        media.load_audio(silent)


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_real_clip_resampled_to_25fps(shared_data):
    p = shared_data / "video" / "macron_50s.mp4"  # 30 fps source
    n = sum(1 for _ in media.read_frames(p, fps=25, max_seconds=2.0))
    assert n == 50


def test_load_audio_max_seconds_is_the_prefix_of_the_whole_decode(tmp_path):
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(3 * 16000) * 0.1).astype(np.float32)
    p = tmp_path / "a.mp4"
    media.write_video(p, np.zeros((75, 32, 32, 3), np.uint8), fps=25, audio=audio)
    whole = media.load_audio(p)
    part = media.load_audio(p, max_seconds=1.3)
    assert len(part) == round(1.3 * 16000)
    np.testing.assert_array_equal(part, whole[: len(part)])
    assert len(media.load_audio(p, max_seconds=60)) == len(whole)  # longer than the file: all of it


def test_the_opencv_backend_reads_and_writes_without_pyav(tmp_path, monkeypatch):
    """EMOGS_MEDIA_BACKEND=opencv (what runs where PyAV is missing, the GPU machine): video through OpenCV,
    the audio beside the video as a WAV, datasets' frames and label maps decoded through it."""
    from emogs.data.labels import LabelWriter, read_labels
    from emogs.io import media

    rng = np.random.default_rng(0)
    frames = [np.full((32, 48, 3), 40 * k, np.uint8) + rng.integers(0, 3, (32, 48, 3), dtype=np.uint8) for k in range(5)]
    wav = (0.1 * np.sin(np.arange(8000) / 10)).astype(np.float32)
    monkeypatch.setenv("EMOGS_MEDIA_BACKEND", "opencv")
    assert media.backend() == "opencv"
    out = tmp_path / "v.mp4"
    assert media.write_video(out, iter(frames), fps=25, audio=wav) == 5
    assert (tmp_path / "v.wav").is_file() and media.probe(out).has_audio
    back = list(media.read_frames(out))
    assert len(back) == 5 and back[0].shape == (32, 48, 3)
    assert all(abs(float(b.mean()) - float(f.mean())) < 4 for b, f in zip(back, frames))
    assert np.allclose(media.load_audio(tmp_path / "v.wav"), wav, atol=1e-4)
    with pytest.raises(InputError, match="PyAV"):
        media.load_audio(out)  # not a WAV
    # a WAV is known by its content, not its name (the studio saves an upload under a server-chosen name)
    (tmp_path / "upload-1").write_bytes((tmp_path / "v.wav").read_bytes())
    assert np.allclose(media.load_audio(tmp_path / "upload-1"), wav, atol=1e-4)
    (tmp_path / "fake.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    with pytest.raises(InputError, match="not a readable WAV"):
        media.load_audio(tmp_path / "fake.wav")
    (tmp_path / "text.wav").write_text("hello")
    with pytest.raises(InputError, match="PyAV"):
        media.load_audio(tmp_path / "text.wav")
    monkeypatch.setenv("EMOGS_MEDIA_BACKEND", "pyav")
    lw = LabelWriter(tmp_path / "l.mkv", 48, 32, 25)
    labs = [np.full((32, 48), k, np.uint8) for k in range(4)]
    for lab in labs:
        lw.write(lab)
    lw.close()
    monkeypatch.setenv("EMOGS_MEDIA_BACKEND", "opencv")
    assert [int(x.max()) for x in read_labels(tmp_path / "l.mkv")] == [0, 1, 2, 3]


def _late_video(path, lead_frames: int, n: int = 25):
    """An MP4 whose audio stream starts `lead_frames` frames (40 ms each) before its video stream; the audio
    is silence with one click at the time of the first video frame."""
    import av

    sr = 16000
    wav = np.zeros(sr * 2, np.float32)
    click = lead_frames * 640
    wav[click: click + 80] = 0.8
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=25)
        vs.width = vs.height = 64
        vs.pix_fmt = "yuv420p"
        a = c.add_stream("pcm_s16le" if str(path).endswith(".mkv") else "aac", rate=sr)
        a.layout = "mono"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 9 * i, np.uint8), format="rgb24")
            f.pts = i + lead_frames
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        pcm = (wav * 32767).astype(np.int16)[None]
        for k in range(0, pcm.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(pcm[:, k:k + 1024].copy(), format="s16", layout="mono")
            af.sample_rate = sr
            af.pts = k
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return click


def test_video_audio_starts_at_the_first_video_frame(tmp_path):
    """A container whose video starts 80 ms after its audio: `load_video_audio` drops the audio before the
    first frame (the click at the first frame's time lands at sample 0), `load_audio` does not."""
    from emogs.io.media import load_audio, load_video_audio, stream_starts

    path = tmp_path / "late.mkv"
    click = _late_video(path, lead_frames=2)
    v0, a0 = stream_starts(path)
    assert abs((v0 - a0) - 0.08) < 1e-3
    raw, aligned = load_audio(path), load_video_audio(path)
    assert abs(int(np.argmax(raw)) - click) <= 2
    assert int(np.argmax(aligned)) <= 2
    assert len(aligned) == len(raw) - click
    assert len(load_video_audio(path, max_seconds=0.5)) == 8000
