"""An opt-in cache of audio feature rows, for machines that cannot compute them (a GPU image without
faster-whisper) and for re-rendering the same speech. Off unless EMOGS_FEATURE_CACHE names a folder.

An entry is found by the audio itself, not by a file name: same length and the same 100 Hz envelope (mean
|sample| over 10 ms blocks) within 1e-3, so the same WAV decoded by PyAV or by OpenCV's backend (scaling
that differs by 3e-5) finds the same entry, and different speech never does. Entries are .npz files
(rows, envelope), written atomically."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

ENV = "EMOGS_FEATURE_CACHE"
BLOCK = 160  # samples per envelope value (10 ms at 16 kHz)
TOLERANCE = 1e-3


def cache_dir() -> Path | None:
    d = os.environ.get(ENV)
    return Path(d) if d else None


def envelope(wav: np.ndarray) -> np.ndarray:
    n = len(wav) // BLOCK * BLOCK
    env = np.abs(np.asarray(wav[:n], np.float64)).reshape(-1, BLOCK).mean(1)
    if n < len(wav):
        env = np.append(env, np.abs(np.asarray(wav[n:], np.float64)).mean())
    return env.astype(np.float32)


def _prefix(wav: np.ndarray, kind: str) -> str:
    return f"{kind}_{len(wav)}_"


def cached_rows(wav: np.ndarray, kind: str) -> np.ndarray | None:
    """The cached (R, D) float32 rows of `kind` for this audio, or None (no cache, or not in it)."""
    d = cache_dir()
    if d is None or not d.is_dir():
        return None
    env = envelope(wav)
    for f in sorted(d.glob(_prefix(wav, kind) + "*.npz")):
        try:
            with np.load(f, allow_pickle=False) as z:
                if z["envelope"].shape == env.shape and float(np.abs(z["envelope"] - env).max()) < TOLERANCE:
                    return z["rows"].astype(np.float32)
        except (OSError, ValueError, KeyError):
            continue  # a damaged entry is skipped, never trusted
    return None


def store_rows(wav: np.ndarray, kind: str, rows: np.ndarray) -> Path | None:
    """Write the rows to the cache (when one is set); returns the entry's path."""
    d = cache_dir()
    if d is None:
        return None
    from emogs.io.atomic import atomic_path

    d.mkdir(parents=True, exist_ok=True)
    env = envelope(wav)
    path = d / (_prefix(wav, kind) + hashlib.sha256(env.tobytes()).hexdigest()[:16] + ".npz")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, rows=np.asarray(rows, np.float16 if kind == "whisper" else np.float32),
                                envelope=env)
    return path
