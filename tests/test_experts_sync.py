"""emogs.experts.sync (the lip-sync expert) and emogs.eval.lipsync (the metric built on it)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from emogs.experts.sync import (SyncExpert, SyncExpertConfig, audio_windows, load_sync_expert, mouth_windows,
                                sync_loss, video_window_index)

SECONDS = 8  # of acosta (held out from the expert's training)


def test_shipped_weights_load_small_and_described():
    from emogs.experts.weights import load_info, weights_path

    p = weights_path("sync_expert")
    assert p.stat().st_size < 8e6
    info = load_info(p)
    for k in ("config", "train_clips", "held_out_identities", "validation", "seed"):
        assert k in info, k
    assert "acosta" in info["held_out_identities"] and "macron" in info["held_out_identities"]
    assert not any(c.startswith(("acosta", "macron")) for c in info["train_clips"])
    e = load_sync_expert()
    assert not any(p.requires_grad for p in e.parameters()) and not e.training


def test_windows_follow_the_loader_layout():
    from emogs.data.dataset import feature_windows

    cfg = SyncExpertConfig()
    rows = np.arange(400 * 2, dtype=np.float32).reshape(400, 2)
    w = audio_windows(rows, cfg, np.array([0, 10, 99]))
    assert w.shape == (3, cfg.audio_rows, 2)
    np.testing.assert_array_equal(w, feature_windows(rows, 4, [0, 10, 99], cfg.audio_rows // 2))
    # frame 10 covers rows 40..43, its centre is row 42: the window is rows 32..51
    assert w[1, 0, 0] == 32 * 2 and w[1, -1, 0] == 51 * 2
    np.testing.assert_array_equal(video_window_index(100, np.array([0, 50]), 5), [[0, 0, 0, 1, 2], [48, 49, 50, 51, 52]])


def test_tiny_model_shapes_and_loss_gradient_reaches_pixels():
    torch.manual_seed(0)
    cfg = SyncExpertConfig(width=4, embed_dim=16)
    e = SyncExpert(cfg).eval()
    frames = torch.rand(2, cfg.frames, 100, 120, 3, requires_grad=True)
    aff = torch.tensor([[1.0, 0.0, 10.0], [0.0, 1.0, 30.0]]).expand(2, cfg.frames, 2, 3)
    crops = mouth_windows(frames, aff)
    assert crops.shape == (2, cfg.frames, 48, 96, 3)
    audio = torch.randn(2, cfg.audio_rows, cfg.audio_dim)
    for mode in ("cosine", "bce"):
        frames.grad = None
        loss = sync_loss(e, crops if mode == "cosine" else mouth_windows(frames, aff), audio, mode=mode)
        loss.backward(retain_graph=True)
        assert torch.isfinite(loss) and frames.grad is not None and frames.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        sync_loss(e, crops[:, :3], audio)
    flat = torch.full((2, cfg.frames, 48, 96, 3), 0.5, requires_grad=True)  # an untrained render: no texture
    sync_loss(e, flat, audio).backward()
    assert torch.isfinite(flat.grad).all() and flat.grad.abs().max() < 1.0


@pytest.fixture(scope="module")
def acosta(shared_data):
    """SECONDS of acosta at 25 fps: frames, MediaPipe landmarks, aligned audio."""
    from emogs.eval.run import load_aligned_audio
    from emogs.face.tracker import FaceTracker
    from emogs.io.media import read_frames

    clip = shared_data / "video" / "acosta_71s.mp4"
    frames = np.stack(list(read_frames(clip, fps=25, max_seconds=SECONDS)))
    with FaceTracker(video_mode=True) as tr:
        lm = np.stack([tr.track(f, i * 40).landmarks for i, f in enumerate(frames)])
    wav = load_aligned_audio(clip)
    return frames, lm, wav


def test_sync_loss_lower_in_sync_than_shifted(acosta):
    from emogs.experts.crops import crop_affines
    from emogs.experts.sync import audio_features

    frames, lm, wav = acosta
    e = load_sync_expert()
    n = len(frames)
    rows = audio_features(wav, n + 40, e.cfg)
    centres = np.arange(10, n - 10, 3)
    vi = video_window_index(n, centres, e.cfg.frames)
    aff = crop_affines(lm, e.cfg.region)[vi]  # (B, T, 2, 3)
    x = torch.from_numpy(frames[vi]).float() / 255.0
    x.requires_grad_(True)
    crops = mouth_windows(x, aff, e.cfg.region)
    own = sync_loss(e, crops, torch.from_numpy(audio_windows(rows, e.cfg, centres)))
    late = sync_loss(e, crops, torch.from_numpy(audio_windows(rows, e.cfg, centres + 5)))
    early = sync_loss(e, crops, torch.from_numpy(audio_windows(rows, e.cfg, centres - 5)))
    o, la, ea = float(own.detach()), float(late.detach()), float(early.detach())
    assert o < la - 0.05 and o < ea - 0.05, (o, la, ea)
    own.backward()
    assert x.grad.abs().sum() > 0


def test_lipsync_metric_finds_offsets_and_separates_foreign_speech(acosta, shared_data):
    from emogs.eval.lipsync import lipsync_scores
    from emogs.io.media import load_audio

    frames, lm, wav = acosta
    e = load_sync_expert()
    own, curve = lipsync_scores(frames, wav, landmarks=lm, expert=e)
    assert curve.shape == (31,) and abs(own["lipsync_offset_frames"]) <= 1
    late, _ = lipsync_scores(frames, np.concatenate([np.zeros(5 * 640, np.float32), wav]), landmarks=lm, expert=e)
    early, _ = lipsync_scores(frames, wav[5 * 640:], landmarks=lm, expert=e)
    assert abs(late["lipsync_offset_frames"] - 5) <= 1 and abs(early["lipsync_offset_frames"] + 5) <= 1
    other, _ = lipsync_scores(frames, load_audio(shared_data / "audio" / "emotalk_ted1.wav"), landmarks=lm, expert=e)
    assert own["lipsync_conf"] > 2 * other["lipsync_conf"], (own, other)
    assert own["lipsync_score"] > other["lipsync_score"] + 0.1 and own["lipsync_score"] > late["lipsync_score"] + 0.1
    # tracking inside the metric gives the same answer as given landmarks
    tracked, _ = lipsync_scores(frames[:100], wav, expert=e)
    given, _ = lipsync_scores(frames[:100], wav, landmarks=lm[:100], expert=e)
    assert tracked["lipsync_offset_frames"] == given["lipsync_offset_frames"]
    assert tracked["lipsync_conf"] == pytest.approx(given["lipsync_conf"], abs=0.02)


def test_lipsync_metric_nan_without_audio_or_frames(acosta):
    from emogs.eval.lipsync import lipsync_scores

    frames, lm, wav = acosta
    s, _ = lipsync_scores(frames[:10], wav, landmarks=lm[:10])
    assert np.isnan(s["lipsync_conf"])
    s, _ = lipsync_scores(frames[:30], None, landmarks=lm[:30])
    assert np.isnan(s["lipsync_offset_frames"])
