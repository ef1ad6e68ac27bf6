"""emogs.audio.cache: feature rows found again by the audio, across decoders, never for other audio."""
from __future__ import annotations

import numpy as np

from emogs.audio import cache


def _speechlike(seed: int, n: int = 16000) -> np.ndarray:
    r = np.random.default_rng(seed)
    return (np.sin(np.arange(n) / 7.0) * r.uniform(0.05, 0.6, n // 800).repeat(800)[:n]).astype(np.float32)


def test_off_without_the_env(monkeypatch, tmp_path):
    monkeypatch.delenv(cache.ENV, raising=False)
    assert cache.store_rows(_speechlike(0), "whisper", np.zeros((50, 4))) is None
    assert cache.cached_rows(_speechlike(0), "whisper") is None


def test_found_by_the_audio_across_decoders_and_not_for_other_audio(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV, str(tmp_path / "c"))
    wav = _speechlike(1)
    rows = np.random.default_rng(2).normal(size=(50, 8)).astype(np.float32)
    cache.store_rows(wav, "whisper", rows)
    # the same 16-bit WAV read with /32767 instead of /32768 (OpenCV backend vs PyAV)
    pcm = np.round(wav * 32767)
    other_decoder = (pcm / 32768.0).astype(np.float32)
    got = cache.cached_rows(other_decoder, "whisper")
    assert got is not None and np.abs(got - rows).max() < 1e-2
    assert cache.cached_rows(wav, "mel") is None  # another kind
    assert cache.cached_rows(_speechlike(3), "whisper") is None  # other audio of the same length
    assert cache.cached_rows(wav[:-160], "whisper") is None  # other length
    # a damaged entry is skipped
    for f in (tmp_path / "c").glob("*.npz"):
        f.write_bytes(b"broken")
    assert cache.cached_rows(wav, "whisper") is None


def test_feature_rows_uses_the_cache(monkeypatch, tmp_path):
    from emogs import audio

    monkeypatch.setenv(cache.ENV, str(tmp_path))
    wav = _speechlike(4)
    rows = np.ones((50, 512), np.float32)
    cache.store_rows(wav, "whisper", rows)
    import emogs.audio.whisper as W

    def fail(*a, **k):
        raise AssertionError("Whisper ran although the cache holds the rows")

    monkeypatch.setattr(W, "whisper_features", fail)
    got, rpf = audio.feature_rows(wav, "whisper")
    assert rpf == 2 and got.shape == (50, 512) and np.allclose(got, 1)
