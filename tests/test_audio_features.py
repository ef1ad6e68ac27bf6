"""Audio features: log-mel framing/alignment, Whisper encoder features, VAD."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emogs.audio.features import log_mel


def test_log_mel_shape_and_alignment() -> None:
    n = 16000 * 2 + 123
    wav = np.zeros(n, np.float32)
    m = log_mel(wav)
    assert m.shape == (int(np.ceil(n / 160)), 80) and m.dtype == np.float32
    # a click at sample 640 * 10 shows in the rows of video frame 10 (rows 40..43), not far away
    wav[640 * 10 + 300] = 1.0
    e = log_mel(wav).mean(1)
    assert 40 <= int(np.argmax(e)) <= 43
    assert e[30] < e.max() - 1 and e[55] < e.max() - 1


def test_log_mel_frequency_axis() -> None:
    t = np.arange(16000) / 16000
    lo = log_mel(np.sin(2 * np.pi * 300 * t).astype(np.float32)).mean(0)
    hi = log_mel(np.sin(2 * np.pi * 4000 * t).astype(np.float32)).mean(0)
    assert np.argmax(lo) < np.argmax(hi)
    # absolute scale: a quieter copy gives lower values (no per-clip normalisation)
    assert log_mel(0.1 * np.sin(2 * np.pi * 300 * t).astype(np.float32)).mean() < lo.mean()


def test_whisper_features_and_vad(shared_data: Path) -> None:
    from emogs.audio.vad import speech_fraction
    from emogs.audio.whisper import whisper_features
    from emogs.io.media import load_audio

    wav = load_audio(shared_data / "audio" / "obama_5s.wav", 16000)
    f = whisper_features(wav)
    assert f.shape == (int(np.ceil(len(wav) / 320)), 512) and np.isfinite(f).all()
    silent = whisper_features(np.zeros_like(wav))
    assert np.abs(f - silent).mean() > 0.1  # speech changes the features
    assert speech_fraction(wav) > 0.8
    assert speech_fraction(np.zeros(32000, np.float32)) == 0.0
    rng = np.random.default_rng(0)
    assert speech_fraction((0.01 * rng.standard_normal(32000)).astype(np.float32)) < 0.2
