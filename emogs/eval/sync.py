"""Audio-visual synchrony without SyncNet: mouth opening vs. speech-band energy, lag-searched correlation.

What it measures, exactly:
  mouth[t]  = inner-lip gap / outer-eye-corner distance from MediaPipe landmarks of frame t
              (`emogs.eval.landmarks.mouth_opening`), a dimensionless opening track.
  energy[t] = log10 power (dB) of the audio in the 1-3 kHz band (the F2 region, where lip aperture and the
              acoustic envelope are most coherent) over frame t's samples [640 t, 640 (t+1)) at 16 kHz,
              Hann-windowed.
  Both are high-passed (minus a centred 1 s = 25-frame moving average) to remove slow drifts (posture,
  loudness), then
  r(lag)    = Pearson correlation of mouth[t] with energy[t + lag], for lag in [-max_lag, max_lag] frames,
              over the overlapping frames.
Reported:
  sync_mouth_audio_corr   r(0): higher = mouth opens when the speech band is loud, at the same frame.
  sync_offset_frames      argmax_lag r(lag); > 0 means the audio is late relative to the video by that
                          many frames (the audio must be moved earlier to best match the mouth).
  sync_best_corr          r at that lag.
  sync_confidence         r(best) - median over lags of r: how much the peak stands out (like SyncNet's
                          confidence, but a correlation difference, not a distance).
This is a weak, interpretable proxy (on real in-sync talking-head video r(0) is only ~0.2-0.45; see
docs/eval.md); it is NOT SyncNet's LSE-C/LSE-D and its numbers are not comparable with them.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

BAND_HZ = (1000.0, 3000.0)
HIGHPASS_FRAMES = 25
MAX_LAG = 15


def band_energy(wav: np.ndarray, num_frames: int, sample_rate: int = 16000, fps: float = 25.0,
                band: tuple[float, float] = BAND_HZ) -> np.ndarray:
    """Per-video-frame log band power in dB: mono float wav -> (num_frames,). Missing audio is silence."""
    hop = int(round(sample_rate / fps))
    w = np.zeros(num_frames * hop, np.float64)
    m = min(len(wav), len(w))
    w[:m] = wav[:m]
    frames = w.reshape(num_frames, hop) * np.hanning(hop)
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (N, hop//2+1)
    f = np.fft.rfftfreq(hop, 1.0 / sample_rate)
    e = spec[:, (f >= band[0]) & (f <= band[1])].sum(axis=1)
    return 10.0 * np.log10(e + 1e-10)


def highpass(x: np.ndarray, win: int = HIGHPASS_FRAMES) -> np.ndarray:
    """x minus its centred moving average over `win` frames: (N,) -> (N,)."""
    return x - uniform_filter1d(x.astype(np.float64), win, mode="nearest")


def lag_correlation(mouth: np.ndarray, energy: np.ndarray, max_lag: int = MAX_LAG) -> np.ndarray:
    """r(lag) = corr(mouth[t], energy[t + lag]) for lag = -max_lag..max_lag: (N,), (N,) -> (2 max_lag + 1,).
    NaN entries of `mouth` (no face) are dropped pairwise."""
    out = np.full(2 * max_lag + 1, np.nan)
    n = min(len(mouth), len(energy))
    for k, lag in enumerate(range(-max_lag, max_lag + 1)):
        if lag >= 0:
            x, y = mouth[: n - lag], energy[lag:n]
        else:
            x, y = mouth[-lag:n], energy[: n + lag]
        ok = ~(np.isnan(x) | np.isnan(y))
        if ok.sum() >= 10 and x[ok].std() > 0 and y[ok].std() > 0:
            out[k] = float(np.corrcoef(x[ok], y[ok])[0, 1])
    return out


def _fill_nan(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN gaps (so the moving average is defined); all-NaN stays NaN."""
    ok = ~np.isnan(x)
    if ok.all() or not ok.any():
        return x
    idx = np.arange(len(x))
    return np.interp(idx, idx[ok], x[ok])


def min_sync_frames(max_lag: int = MAX_LAG) -> int:
    """Shortest track `sync_scores` measures (shorter ones give NaN): 4 x the largest lag."""
    return 4 * max_lag


def sync_scores(mouth: np.ndarray, wav: np.ndarray, sample_rate: int = 16000, fps: float = 25.0,
                max_lag: int = MAX_LAG) -> tuple[dict[str, float], np.ndarray]:
    """Sync metrics (see module doc) and the lag curve (2 max_lag + 1,) for a mouth-opening track (N,)."""
    n = len(mouth)
    nan = {k: float("nan") for k in ("sync_mouth_audio_corr", "sync_offset_frames", "sync_best_corr",
                                     "sync_confidence")}
    if n < min_sync_frames(max_lag) or np.isnan(mouth).all():
        return nan, np.full(2 * max_lag + 1, np.nan)
    missing = np.isnan(mouth)
    m = highpass(_fill_nan(mouth))
    m[missing] = np.nan  # interpolated frames do not vote
    e = highpass(band_energy(wav, n, sample_rate, fps))
    curve = lag_correlation(m, e, max_lag)
    if np.isnan(curve).all():
        return nan, curve
    k = int(np.nanargmax(curve))
    return {"sync_mouth_audio_corr": float(curve[max_lag]), "sync_offset_frames": float(k - max_lag),
            "sync_best_corr": float(curve[k]),
            "sync_confidence": float(curve[k] - np.nanmedian(curve))}, curve
