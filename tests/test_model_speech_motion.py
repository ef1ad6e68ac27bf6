"""Speech -> mesh-motion prior: shapes, bounds, smoothing, the shipped weights, fine-tuning."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from emogs.errors import InputError
from emogs.model.speech_motion import (FEATURES, PRIOR_FEATURE, SPEECH_COEFFS, SpeechMotion, SpeechMotionConfig, coeff_index,
                                       expand, fine_tune, load_speech_motion, merge_members, predict_rows,
                                       save_speech_motion, smooth_time, weights_path)


def tiny(feature="mel", **kw) -> SpeechMotion:
    torch.manual_seed(0)
    return SpeechMotion(SpeechMotionConfig.for_feature(feature, width=16, layers=2, **kw)).eval()


@pytest.mark.parametrize("feature", ["mel", "whisper"])
def test_shapes_and_bounds(feature):
    net = tiny(feature)
    c = net.cfg
    assert (c.dim, c.rows_per_frame) == (FEATURES[feature]["dim"], FEATURES[feature]["rows_per_frame"])
    w = torch.randn(5, 2 * c.half, c.dim)
    assert net(w).shape == (5, len(SPEECH_COEFFS))
    assert net(w.reshape(1, 5, 2 * c.half, c.dim)).shape == (1, 5, len(SPEECH_COEFFS))  # any batch shape
    with torch.no_grad():
        net.gain.fill_(50.0)  # huge deviations still give coefficients in [0, 1]
        for mean in (torch.zeros(len(SPEECH_COEFFS)), torch.ones(len(SPEECH_COEFFS)), torch.full((5, 23), 0.4)):
            p = net.predict(w, mean)
            assert p.shape == (5, 23) and float(p.min()) >= 0.0 and float(p.max()) <= 1.0
    with pytest.raises(ValueError, match="expected windows"):
        net(torch.randn(5, 2 * c.half + 1, c.dim))


def test_members_are_averaged_and_person_scale_applies():
    one = tiny(members=1)
    many = tiny(members=3)
    assert sum(p.numel() for p in many.parameters()) > 2.5 * sum(p.numel() for p in one.parameters())
    w = torch.randn(4, 2 * one.cfg.half, one.cfg.dim)
    with torch.no_grad():
        heads = many.head[-1]
        heads.weight.zero_()
        K = len(SPEECH_COEFFS)
        heads.bias.copy_(torch.cat([torch.full((K,), float(m)) for m in range(3)]))  # members output 0, 1, 2
        torch.testing.assert_close(many(w), torch.ones(4, K))                       # their mean
        torch.testing.assert_close(many.deviation(w, scale=torch.full((K,), 5.0)), torch.ones(4, K))  # no person_norm
    pn = tiny(person_norm=True)
    scale = torch.linspace(0.01, 0.2, len(SPEECH_COEFFS))
    with torch.no_grad():
        torch.testing.assert_close(pn.deviation(w, scale), pn(w) * scale)
        torch.testing.assert_close(pn.deviation(w), pn(w) * pn.ref_scale)


def test_merged_members_average_the_nets_and_round_trip(tmp_path):
    nets = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        n = SpeechMotion(SpeechMotionConfig.for_feature("whisper", width=16, layers=2, members=2))
        with torch.no_grad():
            for p in n.parameters():
                p.normal_(0, 0.2)  # distinct, non-trivial members
        nets.append(n.eval())
    m = merge_members(nets)
    assert m.cfg.members == 6
    w = torch.randn(7, 2 * m.cfg.half, m.cfg.dim)
    with torch.no_grad():
        ref = sum(n(w) for n in nets) / 3
        assert float((nets[0](w) - ref).abs().max()) > 1e-3  # the nets differ, so the check means something
        torch.testing.assert_close(m(w), ref, atol=1e-5, rtol=1e-4)
    save_speech_motion(m, tmp_path / "m.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(load_speech_motion(path=tmp_path / "m.safetensors")(w), ref, atol=1e-5, rtol=1e-4)
    other = SpeechMotion(SpeechMotionConfig.for_feature("whisper", width=16, layers=3, members=2))
    with pytest.raises(ValueError, match="configs differ"):
        merge_members([nets[0], other])
    shifted = SpeechMotion(nets[0].cfg)
    shifted.feat_mean.fill_(1.0)
    with pytest.raises(ValueError, match="feat_mean"):
        merge_members([nets[0], shifted])


def test_predict_rows_chunks_lag_and_smoothing():
    net = tiny()
    rng = np.random.default_rng(0)
    n = 60
    rows = rng.normal(size=(4 * n, 80)).astype(np.float32)
    raw = predict_rows(net, rows, n, chunk=7, smooth=0)
    whole = predict_rows(net, rows, n, chunk=1000, smooth=0)
    np.testing.assert_allclose(raw, whole, atol=1e-5)  # chunking changes nothing
    lagged = predict_rows(net, rows, n, chunk=1000, smooth=0, lag=3)
    np.testing.assert_allclose(lagged[:-3], raw[3:], atol=1e-5)  # frame t reads the window of t + 3
    sm = predict_rows(net, rows, n, smooth=1.5)
    assert np.abs(np.diff(sm, axis=0)).mean() < np.abs(np.diff(raw, axis=0)).mean()
    mean = np.full(len(SPEECH_COEFFS), 0.5, np.float32)
    ab = predict_rows(net, rows, n, mean=mean, smooth=0)
    np.testing.assert_allclose(ab, np.clip(raw + mean, 0, 1), atol=1e-5)
    x = rng.normal(size=(30, 2)).astype(np.float32)
    np.testing.assert_allclose(smooth_time(x, 2.0).mean(0), x.mean(0), atol=0.15)  # roughly mean-preserving


def test_expand_into_full_expression():
    names = [f"c{i}" for i in range(10)] + list(SPEECH_COEFFS)
    base = np.linspace(0, 1, len(names)).astype(np.float32)
    pred = np.random.default_rng(0).uniform(size=(4, len(SPEECH_COEFFS))).astype(np.float32)
    full = expand(pred, base, names)
    assert full.shape == (4, len(names))
    np.testing.assert_allclose(full[:, :10], np.broadcast_to(base[:10], (4, 10)))
    np.testing.assert_allclose(full[:, coeff_index(names)], pred)
    with pytest.raises(ValueError, match="lack"):
        coeff_index(names[:12])


def test_save_load_roundtrip_and_errors(tmp_path):
    net = tiny("whisper")
    with torch.no_grad():
        net.gain.uniform_(1, 2)
        net.feat_mean.normal_()
    p = tmp_path / "m.safetensors"
    save_speech_motion(net, p, {"note": "test"})
    assert p.with_suffix(".json").is_file()
    back = load_speech_motion("whisper", path=p)
    w = torch.randn(3, 2 * net.cfg.half, net.cfg.dim)
    torch.testing.assert_close(back(w), net(w))
    assert back.cfg == net.cfg
    with pytest.raises(InputError, match="not found"):
        load_speech_motion("mel", path=tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="damaged"):
        load_speech_motion("mel", path=bad)
    with pytest.raises(InputError, match="feature kind"):
        load_speech_motion("wav2vec")


def test_shipped_weights_load():
    import json

    assert PRIOR_FEATURE == "whisper"
    assert weights_path(PRIOR_FEATURE).is_file(), f"shipped weights missing: {weights_path(PRIOR_FEATURE)}"
    net = load_speech_motion()
    assert net.cfg.feature == PRIOR_FEATURE and not net.training
    assert sum(p.numel() for p in net.parameters()) < 500_000
    info = json.loads(weights_path(PRIOR_FEATURE).with_suffix(".json").read_text())
    assert "macron" in info["held_out_identities"] and "acosta" in info["held_out_identities"]
    assert not set(info["held_out_identities"]) & {v["identity"] for v in info["train_clips"].values()}


def test_no_mel_prior_is_shipped_and_asking_for_one_says_so():
    assert not weights_path("mel").is_file()
    with pytest.raises(InputError, match="no 'mel' prior is shipped"):
        load_speech_motion("mel")


def test_shipped_weights_follow_a_held_out_speaker(shared_data):
    """First 5 s of macron (a held-out identity): predicted jawOpen correlates with MediaPipe's jawOpen."""
    from emogs.audio.whisper import whisper_features
    from emogs.face.aus import BLENDSHAPE_NAMES
    from emogs.face.tracker import FaceTracker
    from emogs.io.media import load_audio, read_frames

    video = shared_data / "video" / "macron_50s.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    jaw_bs = []
    with FaceTracker(video_mode=True) as tr:
        for i, f in enumerate(read_frames(video, fps=25, size=(256, 256), max_seconds=5.0)):
            r = tr.track(f, i * 40)
            jaw_bs.append(np.nan if r is None else r.blendshapes[BLENDSHAPE_NAMES.index("jawOpen")])
    jaw_bs = np.array(jaw_bs)
    rows = whisper_features(load_audio(video, 16000, max_seconds=5.0))
    net = load_speech_motion()
    n = min(len(jaw_bs), len(rows) // net.cfg.rows_per_frame)
    pred = predict_rows(net, rows, n)[:, SPEECH_COEFFS.index("jawOpen")]
    ok = np.isfinite(jaw_bs[:n])
    assert ok.mean() > 0.9
    r = np.corrcoef(pred[ok], jaw_bs[:n][ok])[0, 1]
    assert r > 0.4, f"jawOpen r {r:.2f}"


def test_fine_tune_reduces_error_on_a_toy_problem():
    """A random network fine-tuned on a person whose jawOpen follows the window's mean energy."""
    rng = np.random.default_rng(0)
    net = tiny(dropout=0.0)
    c = net.cfg
    n = 400
    energy = np.convolve(rng.normal(size=n + 20), np.ones(5) / 5, "same")[10:-10]
    windows = rng.normal(scale=0.3, size=(n, 2 * c.half, c.dim)).astype(np.float32)
    windows[:, :, :20] += energy[:, None, None].astype(np.float32)
    targets = np.full((n, len(SPEECH_COEFFS)), 0.1, np.float32)
    targets[:, 0] = 0.2 + 0.1 * energy
    ft = fine_tune(net, windows, targets, steps=150, lr=3e-3, batch=8, eval_every=10)
    rep = ft.fine_tune_report
    assert rep["frames_tail"] == 80 and rep["frames_fit"] == 320
    assert rep["tail_mse_after"] < 0.5 * rep["tail_mse_before"]
    assert rep["tail_jaw_r_after"] > 0.5
    # the pretrained module itself is untouched
    w = torch.from_numpy(windows[:8])
    assert not torch.allclose(ft(w), net(w))
    with pytest.raises(ValueError, match="too short"):
        fine_tune(net, windows[:5], targets[:5])
