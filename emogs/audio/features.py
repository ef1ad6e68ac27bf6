"""Log-mel spectrogram features at 100 Hz, pure numpy (no torchaudio).

Row r of `log_mel(wav)` describes audio samples [160 r, 160 (r + 1)) of 16 kHz audio (a 25 ms Hann
window centred on that 10 ms hop), so video frame i at 25 fps <-> rows [4 i, 4 i + 4).
The scale is absolute (no per-clip normalisation), so features of new audio at render time are
comparable with those of the training clip.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from emogs.constants import SAMPLE_RATE
HOP = 160  # 10 ms
WIN = 400  # 25 ms
N_FFT = 512
N_MELS = 80
ROWS_PER_SECOND = SAMPLE_RATE // HOP  # 100


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=4)
def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sr: int = SAMPLE_RATE,
                   fmin: float = 20.0, fmax: float = 7600.0) -> np.ndarray:
    """Triangular HTK-mel filters, area-normalised (Slaney style). -> (n_mels, n_fft // 2 + 1) f32."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)  # (F,)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return fb.astype(np.float32)


def num_rows(num_samples: int) -> int:
    """Feature rows for `num_samples` of 16 kHz audio (one per started 10 ms hop)."""
    return int(math.ceil(num_samples / HOP))


def log_mel(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """16 kHz mono float waveform (L,) -> log10 mel power (ceil(L / 160), 80) float32, roughly in [-1, 2]."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"log_mel expects {SAMPLE_RATE} Hz audio, got {sample_rate}")
    wav = np.asarray(wav, np.float32).reshape(-1)
    t = num_rows(len(wav))
    if t == 0:
        return np.zeros((0, N_MELS), np.float32)
    left = (WIN - HOP) // 2  # 120: window r spans [160 r - 120, 160 r + 280)
    need = (t - 1) * HOP + WIN
    padded = np.zeros(need, np.float32)
    padded[left:left + len(wav)] = wav[: need - left]
    frames = np.lib.stride_tricks.sliding_window_view(padded, WIN)[::HOP][:t]  # (T, WIN)
    spec = np.fft.rfft(frames * np.hanning(WIN + 1)[:-1].astype(np.float32), n=N_FFT, axis=-1)  # (T, F)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    mel = power @ mel_filterbank().T  # (T, 80)
    return ((np.log10(np.maximum(mel, 1e-8)) + 4.0) / 4.0).astype(np.float32)
