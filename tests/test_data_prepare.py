"""`emogs prepare` on short slices of the shared clips, resume / force, and every bad input."""
from __future__ import annotations

import json
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from emogs.errors import InputError

SECONDS = 3.0


def _prepare(video: Path, out: Path, force: bool = False, **cfg):
    from emogs.data.prepare import PrepareConfig, prepare

    cfg.setdefault("max_seconds", SECONDS)
    cfg.setdefault("whisper", False)
    return prepare(video, out, PrepareConfig(**cfg), force=force, log=lambda s: None)


@pytest.fixture(scope="module")
def macron_ds(shared_data: Path, tmp_path_factory) -> Path:
    """30 fps, 512 px source, with Whisper features."""
    out = tmp_path_factory.mktemp("ds") / "macron"
    return _prepare(shared_data / "video" / "macron_50s.mp4", out, whisper=True)


def test_dataset_contents(macron_ds: Path) -> None:
    from emogs.data.dataset import load_manifest
    from emogs.data.labels import read_labels
    from emogs.io.media import probe

    m = load_manifest(macron_ds)
    n, S = m["num_frames"], m["size"]
    assert n == int(SECONDS * 25) and S == 512 and m["fps"] == 25
    v = probe(macron_ds / "frames.mp4")
    assert (v.width, v.height) == (S, S) and abs(v.fps - 25) < 1e-6 and v.num_frames == n
    with wave.open(str(macron_ds / "audio.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (16000, 1, n * 640)
    t = np.load(macron_ds / "tracks.npz")
    assert t["landmarks"].shape == (n, 478, 3) and t["landmarks"].dtype == np.float32
    assert t["blendshapes"].shape == (n, 52) and t["aus"].shape == (n, 17)
    assert t["world_to_cam"].shape == (n, 4, 4) and t["K"].shape == (3, 3)
    assert t["pose_R"].shape == (n, 3) and t["tracked"].dtype == bool and t["confidence"].shape == (n,)
    assert 0 <= t["aus"].min() and t["aus"].max() <= 1
    # landmarks lie inside the crop, and the camera projects the head origin near the face
    lm = t["landmarks"]
    assert lm[..., :2].min() > 0 and lm[..., :2].max() < S
    c = t["K"] @ t["world_to_cam"][:, :3, 3].T  # (3, N) head origin in crop pixels
    uv = (c[:2] / c[2]).T
    assert np.all(np.abs(uv - lm[:, :, :2].mean(1)) < 0.25 * S)
    mel, wh = np.load(macron_ds / "audio_mel.npy"), np.load(macron_ds / "audio_whisper.npy")
    assert mel.shape == (4 * n, 80) and mel.dtype == np.float16 and np.isfinite(mel).all()
    assert wh.shape == (2 * n, 512) and wh.dtype == np.float16 and wh.astype(np.float32).std() > 0.1
    labels = np.stack(list(read_labels(macron_ds / "labels.mkv")))
    assert labels.shape == (n, S, S) and labels.max() <= 6
    for k in range(7):  # every label occurs (torso and background too on this framing)
        assert (labels == k).any(), k
    # mouth zone sits around the lip landmarks, face zones inside the head
    assert np.mean(labels[np.arange(n), lm[:, 13, 1].astype(int), lm[:, 13, 0].astype(int)] >= 5) > 0.9
    bg = cv2.imread(str(macron_ds / "background.png"))
    assert bg.shape == (S, S, 3)
    assert (macron_ds / "report" / "contact_sheet.png").stat().st_size > 10_000
    assert (macron_ds / "report" / "au_tracks.png").stat().st_size > 10_000
    test = min(50, n // 2)  # 2 s minimum, capped at half the clip
    assert m["splits"] == {"train": [0, n - test], "test": [n - test, n]}
    assert m["source"]["fps"] == 30 and len(m["source"]["sha256"]) == 64
    assert len(m["au_names"]) == 17 and len(m["blendshape_names"]) == 52 and len(m["label_names"]) == 7
    assert 0.3 < m["audio"]["speech_fraction"] <= 1


def test_loader(macron_ds: Path) -> None:
    from emogs.data.dataset import TalkingHeadDataset

    for feat, d in (("mel", 80), ("whisper", 512)):
        ds = TalkingHeadDataset(macron_ds, split="test", audio_feature=feat)
        assert len(ds) == 37  # 75 frames: the 2 s minimum test split is capped at half the clip
        it = ds[0]
        assert it["index"] == 38
        assert it["image"].shape == (512, 512, 3) and it["image"].dtype == np.float32 and it["image"].max() <= 1
        assert it["labels"].shape == (512, 512) and it["audio"].shape == (16, d)
        assert it["au_window"].shape == (9, 17) and np.allclose(it["au_window"][4], it["au"])
        assert ds.background.shape == (512, 512, 3)
    # the audio window of frame i is centred on the frame: rows [4i+2-8, 4i+2+8) of the mel features
    mel = np.load(macron_ds / "audio_mel.npy").astype(np.float32)
    ds = TalkingHeadDataset(macron_ds, split="train")
    assert np.array_equal(ds[10]["audio"], mel[34:50])
    assert list((macron_ds / ".cache").glob("frames.*.u8"))
    # cached frames equal a fresh decode
    from emogs.io.media import read_frames

    first = next(iter(read_frames(macron_ds / "frames.mp4")))
    assert np.array_equal((ds[0]["image"] * 255).round().astype(np.uint8), first)


def test_audio_alignment(macron_ds: Path, shared_data: Path) -> None:
    """audio.wav equals the source audio resampled (sample 0 = frame 0)."""
    from emogs.io.media import load_video_audio, read_wav

    # macron's video stream starts 80 ms after its audio: sample 0 of audio.wav is the first frame's time
    src = load_video_audio(shared_data / "video" / "macron_50s.mp4", 16000, SECONDS)
    got = read_wav(macron_ds / "audio.wav")
    gain = json.loads((macron_ds / "manifest.json").read_text())["audio"]["gain"]
    assert len(got) == 75 * 640 and 0.5 < gain <= 1
    k = min(len(src), len(got))
    assert np.abs(src[:k] * gain - got[:k]).max() < 1e-4


def test_256px_input_and_resume(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    """A 256 px source upscaled to 512; an interruption leaves no manifest; a re-run skips finished stages;
    --force redoes them."""
    import emogs.data.prepare as P

    video, out = shared_data / "video" / "lieu_60s_256px.mp4", tmp_path / "lieu"
    calls: list[str] = []
    real = dict(P.STAGE_FUNCS)

    def counting(name):
        def f(ctx):
            calls.append(name)
            return real[name](ctx)
        return f

    def boom(ctx):  # masks runs in a worker thread beside frames: fail once frames.mp4 is written
        import time

        t0 = time.perf_counter()
        while not (ctx.out / "frames.mp4").exists() and time.perf_counter() - t0 < 60:
            time.sleep(0.01)
        raise KeyboardInterrupt

    for name in real:
        monkeypatch.setitem(P.STAGE_FUNCS, name, counting(name))
    monkeypatch.setitem(P.STAGE_FUNCS, "masks", boom)
    with pytest.raises(KeyboardInterrupt):
        _prepare(video, out)
    assert not (out / "manifest.json").exists()
    first = set(calls)  # split (main thread) may have run before the masks failure was seen; mesh runs beside
    assert {"track", "tracks", "audio", "features", "frames"} <= first <= {"track", "tracks", "mesh", "audio",
                                                                           "features", "frames", "split"}
    assert not (out / "labels.mkv").exists()
    with pytest.raises(InputError, match="manifest.json is missing"):
        from emogs.data.dataset import load_manifest

        load_manifest(out)
    frames_mtime = (out / "frames.mp4").stat().st_mtime_ns
    # a stage the interruption caught half way (mesh beside the others, split on the main thread) is not done
    finished = set(json.loads((out / ".prepare" / "state.json").read_text())["stages"])

    calls.clear()
    monkeypatch.setitem(P.STAGE_FUNCS, "masks", counting("masks"))
    _prepare(video, out)
    assert sorted(calls) == sorted(["masks", "report"] + [s for s in ["split", "mesh"] if s not in finished])
    assert (out / "frames.mp4").stat().st_mtime_ns == frames_mtime
    m = json.loads((out / "manifest.json").read_text())
    assert m["size"] == 512 and m["crop"]["side"] == 256 and m["features"]["whisper"] is None

    calls.clear()
    _prepare(video, out)  # complete: nothing to do
    assert calls == []

    calls.clear()
    _prepare(video, out, force=True)
    assert sorted(calls) == sorted(real)
    assert (out / "manifest.json").is_file()
    # other settings on an existing dataset need --force
    with pytest.raises(InputError, match="other settings"):
        _prepare(video, out, size=256)


def test_failure_cancels_background_stages(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    """A stage failing in the main thread stops the masks stage running beside it (no labels.mkv, not
    recorded as done); features that finished are recorded; a re-run redoes only what is missing."""
    import threading
    import time

    import emogs.data.maskstage as MS
    import emogs.data.prepare as P
    from emogs.io.atomic import read_json

    video, out = shared_data / "video" / "may_5s.mp4", tmp_path / "may"
    real_frames, real_compose = P.STAGE_FUNCS["frames"], MS.compose_labels
    per_frame = threading.Event()

    def slow_compose(*a, **k):  # 75 frames x 0.1 s: the masks stage would run 7.5 s if not stopped
        per_frame.set()
        time.sleep(0.1)
        return real_compose(*a, **k)

    failed_at: list[float] = []

    def failing_frames(ctx):
        assert per_frame.wait(60)  # the masks stage is in its per-frame pass
        failed_at.append(time.perf_counter())
        raise RuntimeError("encoder broke")

    monkeypatch.setattr(MS, "compose_labels", slow_compose)
    monkeypatch.setitem(P.STAGE_FUNCS, "frames", failing_frames)
    with pytest.raises(RuntimeError, match="encoder broke"):
        _prepare(video, out)
    assert time.perf_counter() - failed_at[0] < 3.0  # masks stopped within a frame or so (not 7 s)
    done = read_json(out / ".prepare" / "state.json")["stages"]
    assert "masks" not in done and "frames" not in done and "features" in done
    assert not (out / "labels.mkv").exists() and not (out / "manifest.json").exists()
    monkeypatch.setitem(P.STAGE_FUNCS, "frames", real_frames)
    monkeypatch.setattr(MS, "compose_labels", real_compose)
    _prepare(video, out)
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["stages"]) == set(P.STAGES) and "background" not in m["masks"]


def test_read_keyframes_seeking_matches_decoding(macron_ds: Path) -> None:
    """The report's frame picks (seeking to the keyframe before each) equal a decode from the start."""
    from emogs.data.maskstage import _read_keyframes_linear, read_keyframes

    picks = {0: 0, 1: 1, 37: 2, 74: 3}
    for name, gray in (("frames.mp4", False), ("labels.mkv", True)):
        got = read_keyframes(macron_ds / name, picks, 512, gray=gray)
        assert np.array_equal(got, _read_keyframes_linear(macron_ds / name, picks, np.zeros_like(got),
                                                          "gray" if gray else "rgb24"))


def test_parallel_tracking_matches_one_tracker(shared_data: Path) -> None:
    """Runs of frames tracked by two MediaPipe trackers in threads give what one tracker gives."""
    from emogs.data.track import track_video

    video = shared_data / "video" / "may_5s.mp4"
    from emogs.io.media import probe

    info = probe(video)
    one = track_video(video, info.width, info.height, 2.0, workers=1, chunk=1000)
    two = track_video(video, info.width, info.height, 2.0, workers=2, chunk=7)
    assert one.num_frames == two.num_frames == 50
    assert np.array_equal(one.tracked, two.tracked)
    assert np.abs(one.landmarks - two.landmarks).max() < 0.5  # px (identical on the shared clips)
    assert np.abs(one.blendshapes - two.blendshapes).max() < 0.02


# --- bad input ---------------------------------------------------------------------------------------
def _write(path: Path, frames, audio_seconds: float | None = 3.0, fps: float = 25) -> Path:
    from emogs.io.media import write_video

    audio = None
    if audio_seconds:
        t = np.arange(int(audio_seconds * 16000)) / 16000
        audio = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    write_video(path, frames, fps=fps, audio=audio)
    return path


def _source_frames(shared: Path, seconds: float = 3.0) -> list[np.ndarray]:
    from emogs.io.media import read_frames

    return list(read_frames(shared / "video" / "may_5s.mp4", fps=25, max_seconds=seconds))


def _expect_error(video: Path, out: Path, match: str) -> None:
    with pytest.raises(InputError, match=match) as e:
        _prepare(video, out)
    assert "\n" not in str(e.value)
    assert not (out / "manifest.json").exists()


def test_not_a_video(tmp_path: Path) -> None:
    txt = tmp_path / "notes.mp4"
    txt.write_text("hello, this is not a video\n")
    _expect_error(txt, tmp_path / "a", "not a readable media file|no video stream")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    _expect_error(junk, tmp_path / "b", "not a readable media file|no video stream|decod")
    _expect_error(tmp_path / "missing.mp4", tmp_path / "c", "no such file")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_truncated_video(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / "video" / "may_5s.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    _expect_error(cut, tmp_path / "out", "not a readable media file|decod|no video|audio|only")


def test_no_face(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(75)]
    video = _write(tmp_path / "noise.mp4", frames)
    _expect_error(video, tmp_path / "out", "no face found")
    assert not (tmp_path / "out").exists()  # the run made it and cleaned up


def test_two_people(shared_data: Path, tmp_path: Path) -> None:
    faces = [cv2.resize(cv2.imread(str(shared_data / "faces" / f))[..., ::-1], (256, 256))
             for f in ("angelina_jolie.png", "paul_rudd.png")]
    frame = np.ascontiguousarray(np.hstack(faces))
    video = _write(tmp_path / "two.mp4", [frame] * 75)
    _expect_error(video, tmp_path / "out", "two or more people")


def test_face_too_small(shared_data: Path, tmp_path: Path) -> None:
    frames = []
    for f in _source_frames(shared_data):
        big = np.zeros((480, 640, 3), np.uint8)
        big[200:360, 300:460] = cv2.resize(f, (160, 160), interpolation=cv2.INTER_AREA)
        frames.append(big)
    _expect_error(_write(tmp_path / "small.mp4", frames), tmp_path / "out", "face too small")


def test_long_gap(shared_data: Path, tmp_path: Path) -> None:
    frames = _source_frames(shared_data)
    for i in range(30, 55):  # 1 s of black
        frames[i] = np.zeros_like(frames[i])
    _expect_error(_write(tmp_path / "gap.mp4", frames), tmp_path / "out", r"face lost in frames 30-54")


def test_no_audio(shared_data: Path, tmp_path: Path) -> None:
    video = _write(tmp_path / "mute.mp4", _source_frames(shared_data), audio_seconds=None)
    _expect_error(video, tmp_path / "out", "no audio track")


def test_too_short(shared_data: Path, tmp_path: Path) -> None:
    video = _write(tmp_path / "short.mp4", _source_frames(shared_data, 1.5), audio_seconds=1.5)
    _expect_error(video, tmp_path / "out", "only 1.5")


def test_output_folder_holds_other_files(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    _expect_error(shared_data / "video" / "may_5s.mp4", out, "holds other files")
    assert (out / "thesis.tex").read_text() == "precious" and sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    f = tmp_path / "afile"
    f.write_text("x")
    _expect_error(shared_data / "video" / "may_5s.mp4", f, "not a folder")
    assert f.read_text() == "x"


def test_other_video_into_existing_dataset(shared_data: Path, macron_ds: Path) -> None:
    before = (macron_ds / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="another video"):
        _prepare(shared_data / "video" / "may_5s.mp4", macron_ds, whisper=True)
    assert (macron_ds / "manifest.json").read_bytes() == before


def test_cli_error_is_one_line(tmp_path: Path, capsys) -> None:
    from emogs.cli import main

    txt = tmp_path / "x.mp4"
    txt.write_text("no")
    assert main(["prepare", str(txt), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emogs prepare: error:") and "\n" not in err


def test_a_dataset_prepared_before_audio_alignment_redoes_audio_and_features(tmp_path: Path) -> None:
    """State written before `stage_audio` aligned the audio to the first frame (no `audio_lead_s`): audio and
    what depends on it (features) count as not done; the other stages stay done."""
    from dataclasses import asdict

    import emogs.data.prepare as P
    from emogs.io.atomic import write_json

    cfg = P.PrepareConfig()
    stages = {s: {"seconds": 0.0} for s in P.STAGES}
    write_json(tmp_path / P.STATE_DIR / "state.json", {"source_sha256": "x", "config": asdict(cfg), "stages": stages})
    st = P.StageState(tmp_path, "x", cfg)
    st.load_or_reset(force=False)
    assert not st.done("audio") and not st.done("features")
    assert all(st.done(s) for s in P.STAGES if s not in ("audio", "features"))
    stages["audio"]["audio_lead_s"] = 0.0
    write_json(tmp_path / P.STATE_DIR / "state.json", {"source_sha256": "x", "config": asdict(cfg), "stages": stages})
    st = P.StageState(tmp_path, "x", cfg)
    st.load_or_reset(force=False)
    assert all(st.done(s) for s in P.STAGES)
