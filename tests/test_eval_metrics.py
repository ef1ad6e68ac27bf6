"""emogs.eval metrics validated on real data: CSIM, E-Score classifier, AUE, AU-jerk, sync, LMD, end to end."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from emogs.eval.au_metrics import au_jerk, aue


# --- pure functions --------------------------------------------------------------------------------------
def test_au_jerk_and_aue_on_known_tracks():
    t = np.arange(50, dtype=np.float64)
    lin = np.tile((t / 50)[:, None], (1, 17))
    assert au_jerk(lin) == pytest.approx(0.0, abs=1e-12)
    quad = np.tile((0.001 * t ** 2)[:, None], (1, 17))
    assert au_jerk(quad) == pytest.approx(0.002)  # second difference of 0.001 t^2 is 0.002 per frame^2
    names = [f"AU{i:02d}" for i in range(17)]
    gt = np.zeros((10, 17))
    pred = gt.copy()
    pred[:, 0] = 0.5
    assert aue(pred, gt, names, names[:2]) == pytest.approx(0.25)
    assert aue(pred, gt, names, names[2:]) == 0.0


def test_emotion_labels():
    from emogs.eval.emotion import normalize_label

    assert normalize_label("Surprised") == "surprise" and normalize_label("disgusted") == "disgust"
    assert normalize_label("contempt") is None
    with pytest.raises(ValueError):
        normalize_label("bored")


def test_sync_synthetic_lag_recovery():
    from emogs.eval.sync import band_energy, sync_scores

    rng = np.random.default_rng(0)
    n = 300
    env = np.clip(np.convolve(rng.random(n + 20), np.ones(4) / 4, "same"), 0, None)[:n]  # per-frame loudness
    noise = rng.normal(0, 1, n * 640)
    from scipy.signal import butter, sosfilt

    band = sosfilt(butter(4, [1000, 3000], "bandpass", fs=16000, output="sos"), noise)
    wav = (band * np.repeat(env, 640)).astype(np.float32)
    mouth = env.copy()
    s, curve = sync_scores(mouth, wav)
    assert s["sync_offset_frames"] == 0 and s["sync_mouth_audio_corr"] > 0.8
    late = np.concatenate([np.zeros(3 * 640, np.float32), wav])  # audio 3 frames late
    assert sync_scores(mouth, late)[0]["sync_offset_frames"] == 3
    assert band_energy(wav, n).shape == (n,)


# --- real data ------------------------------------------------------------------------------------------
def _rgb(path):
    import cv2

    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_csim_same_person_beats_different_people(shared_data):
    from emogs.eval.identity import DlibFaceEmbedder, cosine

    emb = DlibFaceEmbedder()
    faces = shared_data / "faces"
    e = {p.name: emb.embed(_rgb(p)) for p in sorted(faces.iterdir()) if p.suffix in (".jpg", ".png")}
    assert all(v is not None for v in e.values()), [k for k, v in e.items() if v is None]
    same = cosine(e["obama.jpg"], e["obama2.jpg"])
    others = [cosine(e[a], e[b]) for a, b in itertools.combinations(e, 2) if {a, b} != {"obama.jpg", "obama2.jpg"}]
    assert same > max(others) + 0.02, (same, max(others))
    assert same > np.mean(others) + 0.08
    # consecutive frames of a clip: near 1
    from emogs.io.media import read_frames

    it = read_frames(shared_data / "video" / "macron_50s.mp4", max_seconds=0.2)
    f0, f1 = next(it), next(it)
    assert cosine(emb.embed(f0), emb.embed(f1)) > 0.98


def test_fer_classifier_on_mead_happy_and_sad(shared_data):
    from emogs.eval.emotion import FER_LABELS, FerClassifier
    from emogs.io.media import read_frames

    fer = FerClassifier()

    def votes(name):
        c = []
        for f in itertools.islice(read_frames(shared_data / "emotion" / name), 0, 100, 5):
            p, _ = fer.predict(f)
            assert p is not None and abs(float(p.sum()) - 1) < 1e-3
            c.append(FER_LABELS[int(p.argmax())])
        return c

    happy = votes("W011_front_happy_level3_001.mp4")
    assert happy.count("happy") >= 0.7 * len(happy)
    sad = votes("W009_front_sad_level3_001.mp4")
    assert sad.count("sad") >= 0.6 * len(sad) and sad.count("happy") < sad.count("sad")


def _track(frames):
    from emogs.face.tracker import FaceTracker

    out = []
    with FaceTracker(video_mode=True) as tr:
        for i, f in enumerate(frames):
            r = tr.track(f, i * 40)
            out.append(r.landmarks if r is not None else np.full((478, 3), np.nan, np.float32))
    return np.stack(out)


def test_sync_separates_own_shifted_and_foreign_audio(shared_data):
    from emogs.eval.landmarks import mouth_opening
    from emogs.eval.run import load_aligned_audio
    from emogs.eval.sync import sync_scores
    from emogs.io.media import load_audio, read_frames

    clip = shared_data / "video" / "acosta_71s.mp4"
    n = 250  # 10 s
    mouth = mouth_opening(_track(read_frames(clip, fps=25, max_seconds=n / 25)))
    wav = load_aligned_audio(clip)[: n * 640 + 16000]
    own, _ = sync_scores(mouth, wav)
    late, _ = sync_scores(mouth, np.concatenate([np.zeros(5 * 640, np.float32), wav]))
    early, _ = sync_scores(mouth, wav[5 * 640:])
    other, _ = sync_scores(mouth, load_audio(shared_data / "audio" / "RD_Radio31_000.wav"))
    c = own["sync_mouth_audio_corr"]
    assert c > 0.25 and abs(own["sync_offset_frames"]) <= 1
    for alt in (late, early, other):
        assert c > alt["sync_mouth_audio_corr"] + 0.2, (own, alt)
    assert abs(late["sync_offset_frames"] - 5) <= 1 and abs(early["sync_offset_frames"] + 5) <= 1
    assert own["sync_confidence"] > other["sync_confidence"]


def test_aue_zero_on_self_and_grows_with_shift(shared_data):
    from emogs.eval.suite import EvalOptions, evaluate_frames
    from emogs.io.media import read_frames

    frames = list(read_frames(shared_data / "video" / "lieu_60s_256px.mp4", fps=25, max_seconds=4.0))
    n = 80
    opts = EvalOptions(groups=("aus", "landmarks"))
    res = {}
    for shift in (0, 2, 8):
        r = evaluate_frames(frames[shift:shift + n], frames[:n], None, opts).metrics
        res[shift] = r["aue_upper"] + r["aue_lower"]
        if shift == 0:
            assert r["aue_upper"] == 0.0 and r["aue_lower"] == 0.0 and r["lmd_mouth"] == 0.0
    assert 0 < res[2] < res[8], res


def test_eval_run_and_eval_videos_end_to_end(shared_data, tmp_path):
    import cv2

    from emogs.eval.run import eval_run, eval_videos
    from emogs.eval.suite import EvalOptions
    from emogs.io.media import load_audio, read_frames, write_video

    clip = shared_data / "video" / "lieu_60s_256px.mp4"
    gt = list(read_frames(clip, fps=25, max_seconds=1.6))
    pred = [cv2.GaussianBlur(f, (7, 7), 2.0) for f in gt]
    wav = load_audio(clip, max_seconds=1.6)
    from emogs.run import RunFolder
    from emogs.train.config import cpu_config

    run = tmp_path / "run"
    RunFolder(run).write_config(cpu_config())  # a run folder as far as eval needs one: config + split render
    write_video(run / "test_render.mp4", [np.concatenate([p, g], 1) for p, g in zip(pred, gt)], audio=wav)
    (run / "render_benchmark.json").write_text(json.dumps({"fps": 42.5}))
    (run / "metrics.json").write_text(json.dumps({"psnr": 30.0}))
    mj = eval_run(run, emotion="neutral", options=EvalOptions(image_stride=4, identity_stride=10))
    m = json.loads(mj.read_text())
    for k in ("psnr", "ssim", "lpips", "psnr_face", "ssim_face", "lpips_face", "lmd_mouth", "lmd_face", "csim_dlib",
              "aue_upper", "aue_lower", "au_jerk", "e_score", "e_agree_gt", "sync_mouth_audio_corr",
              "sync_offset_frames", "sync_confidence", "lipsync_conf", "lipsync_dist", "lipsync_offset_frames",
              "lipsync_score", "lipsync_conf_gt", "fps"):
        assert k in m, k
    assert m["fps"] == 42.5 and m["num_frames"] == len(gt) and m["width"] == 256
    assert 20 < m["psnr"] < 45 and 0 < m["lpips"] < 0.5 and m["csim_dlib"] > 0.9
    assert m["meta"]["inputs"]["train_metrics"] == {"psnr": 30.0}
    out = run / "eval_test"
    assert m["lipsync_conf"] is not None and m["lipsync_score_gt"] is not None
    for f in ("report.md", "au_tracks.png", "sync_lag.png", "lipsync.png", "per_frame.png"):
        assert (out / f).is_file(), f
    assert "| `psnr` |" in (out / "report.md").read_text()
    # eval-videos on the same content as two files agrees with eval RUN on the image metrics
    write_video(tmp_path / "pred.mp4", pred, audio=wav)
    write_video(tmp_path / "gt.mp4", gt)
    m2 = json.loads(eval_videos(tmp_path / "pred.mp4", tmp_path / "gt.mp4", tmp_path / "rep",
                                options=EvalOptions(groups=("image",), image_stride=4)).read_text())
    assert abs(m2["psnr"] - m["psnr"]) < 1.0  # separately encoded files: close, not identical
    assert "lmd_mouth" not in m2
