"""Voice activity detection with Silero VAD (ONNX, shipped inside faster-whisper), via onnxruntime."""
from __future__ import annotations

import numpy as np

from emogs.constants import SAMPLE_RATE


def speech_segments(wav: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]]:
    """16 kHz mono float waveform -> [(start_sample, end_sample), ...] of detected speech."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    wav = np.asarray(wav, np.float32).reshape(-1)
    if len(wav) < 512:
        return []
    opts = VadOptions(threshold=threshold, min_silence_duration_ms=300, speech_pad_ms=30)
    return [(int(s["start"]), int(s["end"])) for s in get_speech_timestamps(wav, opts, sampling_rate=SAMPLE_RATE)]


def speech_fraction(wav: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of the clip's samples that lie in detected speech, in [0, 1]."""
    n = len(np.asarray(wav).reshape(-1))
    if n == 0:
        return 0.0
    return float(sum(e - s for s, e in speech_segments(wav, threshold)) / n)
