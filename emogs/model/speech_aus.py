"""Speech-driven lower-face AUs: a per-person ridge regression from the audio feature window to the AUs that
speech moves (lips part, jaw drop, chin raiser, lip stretcher / tightener).

Why: the per-person head learns much of its mouth motion from the tracked lower-face AUs it is given in
training (AU25 / AU26 above all), so rendering new speech with those AUs held at the default leaves the mouth
nearly still (docs/new_speech_sync.md). At render time the speech AUs therefore follow the audio: their
predicted deviation from the training mean is added wherever the user did not set them (`ControlPlan.mask`).

Fitted on the training split's arrays (`fit_arrays`, called by training), stored in the run folder by
`emogs.run` (`to_arrays` / `from_arrays`), applied by `emogs.Avatar`. Pure: arrays in, arrays out. Features: the model's own audio window (2*audio_window rows centred on the
frame), each row normalised over its feature dimension (as the model's LayerNorm does, so loudness does not
matter), flattened and standardised; ridge in dual form; ridge strength by contiguous 5-fold cross-validation;
per-AU gain from the out-of-fold predictions (ridge shrinks); AUs whose out-of-fold correlation stays below
`MIN_R` are left alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from emogs.face.aus import AU_NAMES

SPEECH_AUS = ("AU17", "AU20", "AU23", "AU25", "AU26")
ALPHAS = (1e2, 1e3, 1e4, 3e4)  # ridge strengths tried (times the feature count / 1000)
MIN_R = 0.3  # out-of-fold correlation an AU needs to be driven by speech


def _rows_norm(x: np.ndarray) -> np.ndarray:
    """(..., D) per-row normalisation over the feature dimension."""
    return (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-5)


def window_features(windows: np.ndarray) -> np.ndarray:
    """(F, 2*half, D) audio feature windows (as the model sees them, `emogs.data.windows.feature_windows`)
    -> (F, 2*half*D) flattened, row-normalised features."""
    w = np.asarray(windows, np.float32)
    return _rows_norm(w).reshape(len(w), -1)


def _ridge(X: np.ndarray, Y: np.ndarray, alpha: float) -> np.ndarray:
    """Dual-form ridge: (N, P), (N, K) -> W (P, K) = X^T (X X^T + alpha I)^-1 Y."""
    G = X @ X.T
    G[np.diag_indices_from(G)] += alpha
    return X.T @ np.linalg.solve(G, Y)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


@dataclass
class SpeechAUs:
    au_index: np.ndarray  # (k,) indices into AU_NAMES of the AUs driven by speech
    mean_x: np.ndarray  # (P,)
    std_x: np.ndarray  # (P,)
    weight: np.ndarray  # (P, k) includes the per-AU gain
    mean_y: np.ndarray  # (k,) training-mean of those AUs
    info: dict  # fit report: alpha, out-of-fold r per AU, gain, kind, window

    def predict_deviation(self, feats: np.ndarray) -> np.ndarray:
        """(F, P) window features -> (F, k) predicted AU deviation from the training mean."""
        return ((feats - self.mean_x) / self.std_x) @ self.weight

    def deviation(self, windows_of: Callable[[np.ndarray], np.ndarray], num_frames: int,
                  chunk: int = 1024) -> np.ndarray:
        """-> (num_frames, k) predicted deviation, `chunk` frames at a time (the flattened windows of a long
        clip would not fit in memory at once); `windows_of(frame ids)` gives their (n, 2*half, D) windows."""
        out = np.zeros((num_frames, len(self.au_index)), np.float32)
        for s in range(0, num_frames, chunk):
            ids = np.arange(s, min(num_frames, s + chunk))
            out[ids] = self.predict_deviation(window_features(windows_of(ids)))
        return out

    def add_deviation(self, au: np.ndarray, mask: np.ndarray, dev: np.ndarray) -> np.ndarray:
        """(F, 17) planned AUs, (F, 17) user share, (F, k) speech deviation -> (F, 17): the deviation added
        where the user did not set the AU, clipped to [0, 1]."""
        out = au.astype(np.float32).copy()
        k = self.au_index
        out[:, k] = np.clip(out[:, k] + (1 - mask[:, k]) * dev, 0, 1)
        return out

    def apply(self, au: np.ndarray, mask: np.ndarray, feats: np.ndarray) -> np.ndarray:
        """(F, 17) planned AUs, (F, 17) user share, (F, P) window features -> `add_deviation` of their
        prediction."""
        return self.add_deviation(au, mask, self.predict_deviation(feats))

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """(named arrays, info) for storage."""
        return dict(au_index=self.au_index.astype(np.int64), mean_x=self.mean_x, std_x=self.std_x,
                    weight=self.weight, mean_y=self.mean_y), dict(self.info)

    @classmethod
    def from_arrays(cls, t: dict[str, np.ndarray], info: dict) -> "SpeechAUs":
        """Inverse of `to_arrays`; ValueError when the arrays do not fit together."""
        s = cls(np.asarray(t["au_index"]).astype(np.int64), np.asarray(t["mean_x"], np.float32),
                np.asarray(t["std_x"], np.float32), np.asarray(t["weight"], np.float32),
                np.asarray(t["mean_y"], np.float32), dict(info))
        k, P = len(s.au_index), len(s.mean_x)
        if s.weight.shape != (P, k) or s.std_x.shape != (P,) or s.mean_y.shape != (k,) or \
                (k and (s.au_index.min() < 0 or s.au_index.max() >= len(AU_NAMES))):
            raise ValueError("speech-AU arrays do not fit together")
        return s


def fit_arrays(feats: np.ndarray, aus: np.ndarray, folds: int = 5) -> SpeechAUs:
    """(N, P) window features, (N, 17) tracked AUs of the training frames -> SpeechAUs."""
    idx = np.array([AU_NAMES.index(n) for n in SPEECH_AUS])
    Y = aus[:, idx].astype(np.float64)
    mean_x, std_x = feats.mean(0), feats.std(0) + 1e-6
    X = ((feats - mean_x) / std_x).astype(np.float64)
    N, P = X.shape
    mean_y = Y.mean(0)
    edges = np.linspace(0, N, folds + 1).astype(int)
    best = None
    for a in ALPHAS:
        alpha = a * P / 1000.0
        oof = np.zeros_like(Y)
        for i in range(folds):  # contiguous folds: neighbouring frames never straddle train / validation
            va = np.zeros(N, bool)
            va[edges[i]:edges[i + 1]] = True
            ym = Y[~va].mean(0)
            oof[va] = X[va] @ _ridge(X[~va], Y[~va] - ym, alpha) + ym
        rs = np.array([_corr(oof[:, j], Y[:, j]) for j in range(len(idx))])
        if best is None or rs.mean() > best[1].mean():
            best = (alpha, rs, oof)
    alpha, rs, oof = best
    gain = np.ones(len(idx))
    for j in range(len(idx)):  # least-squares slope of the truth on the out-of-fold prediction
        d = oof[:, j] - oof[:, j].mean()
        gain[j] = np.clip((d * (Y[:, j] - Y[:, j].mean())).sum() / max((d * d).sum(), 1e-12), 1.0, 3.0)
    W = _ridge(X, Y - mean_y, alpha) * gain
    keep = rs >= MIN_R
    info = dict(alpha=alpha, aus=list(SPEECH_AUS), oof_r={n: round(float(r), 3) for n, r in zip(SPEECH_AUS, rs)},
                gain={n: round(float(g), 3) for n, g in zip(SPEECH_AUS, gain)},
                driven=[n for n, k in zip(SPEECH_AUS, keep) if k], frames=int(N), min_r=MIN_R)
    return SpeechAUs(idx[keep], mean_x.astype(np.float32), std_x.astype(np.float32),
                     W[:, keep].astype(np.float32), mean_y[keep].astype(np.float32), info)
