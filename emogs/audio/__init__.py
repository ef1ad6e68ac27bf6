"""emogs.audio: audio features (log-mel, Whisper-base encoder) and voice activity."""
from __future__ import annotations

import numpy as np

ROWS_PER_FRAME = {"mel": 4, "whisper": 2}  # feature rows per 25 fps video frame (100 Hz, 50 Hz)


def feature_rows(wav: np.ndarray, kind: str) -> tuple[np.ndarray, int]:
    """16 kHz mono audio -> (feature rows (R, D) f32, rows per video frame) of the kind a model uses:
    "mel" (log-mel, 80 bins, 100 Hz) or "whisper" (Whisper-base encoder, 512-D, 50 Hz)."""
    if kind == "mel":
        from emogs.audio.features import log_mel

        return np.asarray(log_mel(wav), np.float32), ROWS_PER_FRAME["mel"]
    if kind == "whisper":
        from emogs.audio.cache import cached_rows, store_rows

        rows = cached_rows(wav, kind)
        if rows is None:
            from emogs.audio.whisper import whisper_features

            rows = np.asarray(whisper_features(wav), np.float32)
            store_rows(wav, kind, rows)
        return rows, ROWS_PER_FRAME["whisper"]
    raise ValueError(f"unknown audio feature kind '{kind}' (mel or whisper)")
