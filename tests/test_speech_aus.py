"""Speech-driven lower-face AUs (emogs.model.speech_aus): fit, gating by the user's mask, storage in the run
folder (emogs.run)."""
from __future__ import annotations

import numpy as np

from emogs.face.aus import AU_NAMES
from emogs.data.windows import feature_windows
from emogs.model.speech_aus import SPEECH_AUS, SpeechAUs, fit_arrays, window_features

I25, I26, I17 = AU_NAMES.index("AU25"), AU_NAMES.index("AU26"), AU_NAMES.index("AU17")


def _data(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(4 * n, 10)).astype(np.float32)  # 4 rows per frame, 10-d features
    feats = window_features(feature_windows(rows, 4, np.arange(n), 2))  # (n, 40)
    aus = np.full((n, 17), 0.2, np.float32)
    drive = feats[:, 17] - feats[:, 23]  # a linear function of the audio window
    aus[:, I25] = 0.3 + 0.05 * drive + 0.01 * rng.normal(size=n)
    aus[:, I26] = 0.2 + 0.04 * drive + 0.01 * rng.normal(size=n)
    aus[:, I17] = 0.3 + 0.05 * rng.normal(size=n)  # unrelated to the audio
    return feats, aus


def test_fit_drives_the_aus_the_audio_explains_and_only_those():
    feats, aus = _data()
    s = fit_arrays(feats[:500], aus[:500])
    driven = [AU_NAMES[k] for k in s.au_index]
    assert "AU25" in driven and "AU26" in driven
    assert "AU17" not in driven
    assert s.info["oof_r"]["AU25"] > 0.8 and s.info["oof_r"]["AU17"] < 0.3
    dev = s.predict_deviation(feats[500:])  # held-out frames
    j = list(s.au_index).index(I25)
    assert np.corrcoef(dev[:, j], aus[500:, I25])[0, 1] > 0.8


def test_apply_adds_speech_only_where_the_user_did_not_set_the_au(tmp_path):
    feats, aus = _data()
    s = fit_arrays(feats[:500], aus[:500])
    plan = np.full((100, 17), 0.3, np.float32)
    mask = np.zeros((100, 17), np.float32)
    mask[50:, I25] = 1.0  # the user set AU25 on the second half
    out = s.apply(plan, mask, feats[500:])
    assert out[:50, I25].std() > 0.01  # follows the audio where free
    assert np.array_equal(out[50:, I25], plan[50:, I25])  # the user's value where set
    other = [k for k in range(17) if k not in s.au_index]
    assert np.array_equal(out[:, other], plan[:, other])
    assert out.min() >= 0 and out.max() <= 1
    from emogs.run import RunFolder

    run = RunFolder(tmp_path)
    run.write_speech_aus(s)
    back = run.speech_aus()
    assert np.array_equal(back.au_index, s.au_index) and back.info == s.info
    assert np.allclose(back.apply(plan, mask, feats[500:]), out)


def test_window_features_are_loudness_invariant():
    rows = np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32)
    a = window_features(feature_windows(rows, 4, np.arange(10), 2))
    b = window_features(feature_windows(rows + 3.0, 4, np.arange(10), 2))  # a log-mel level shift (louder audio)
    assert np.allclose(a, b, atol=1e-4)
    assert set(SPEECH_AUS) <= set(AU_NAMES)


def test_training_writes_speech_aus_and_the_avatar_applies_them(tiny_run):
    from emogs.audio import feature_rows
    from emogs.avatar import Avatar
    from emogs.io.media import read_wav

    assert (tiny_run / "speech_aus.safetensors").is_file()
    av = Avatar.load(tiny_run, device="cpu")
    assert av.speech is not None
    wav = read_wav(tiny_run / "test_audio.wav") if (tiny_run / "test_audio.wav").is_file() else None
    if wav is None:
        wav = np.random.default_rng(0).normal(scale=0.1, size=32000).astype(np.float32)
    F = len(wav) * 25 // 16000
    plan = av.plan(F, au="AU25=0.9@0.5-1.0", blinks=False)
    rows, rpf = feature_rows(wav, av.model.cfg.audio_feature)
    assert np.array_equal(av.effective_au(plan, rows, rpf, speech_aus=False), plan.au)
    eff = av.effective_au(plan, rows, rpf)
    free = [k for k in range(17) if k not in av.speech.au_index]
    assert np.array_equal(eff[:, free], plan.au[:, free])
    set_ = plan.mask[:, I25] == 1
    assert np.array_equal(eff[set_, I25], plan.au[set_, I25])  # the user's AU25 wins where fully set


def test_chunked_prediction_from_rows_matches_one_pass():
    feats, aus = _data()
    s = fit_arrays(feats[:500], aus[:500])
    rows = np.random.default_rng(0).normal(size=(4 * 600, 10)).astype(np.float32)
    one = s.predict_deviation(window_features(feature_windows(rows, 4, np.arange(600), 2)))
    chunked = s.deviation(lambda ids: feature_windows(rows, 4, ids, 2), 600, chunk=64)
    assert np.allclose(chunked, one, atol=1e-5)


def test_a_damaged_speech_aus_file_is_a_clear_error(tiny_run, tmp_path):
    import shutil

    import pytest

    from emogs.avatar import Avatar
    from emogs.errors import InputError

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "speech_aus.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="speech_aus.safetensors: unreadable"):
        Avatar.load(run, device="cpu")
