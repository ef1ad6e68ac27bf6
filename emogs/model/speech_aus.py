"""Speech-driven lower-face AUs: a per-person ridge regression from the audio feature window to the AUs that
speech moves (lips part, jaw drop, chin raiser, lip stretcher / tightener).

Why: the per-person head learns much of its mouth motion from the tracked lower-face AUs it is given in
training (AU25 / AU26 above all), so rendering new speech with those AUs held at the default leaves the mouth
nearly still (docs/new_speech_sync.md). At render time the speech AUs therefore follow the audio: their
predicted deviation from the training mean is added wherever the user did not set them (`ControlPlan.mask`).

Fit on the training split of the dataset (`fit`), saved beside the model as RUN/speech_aus.safetensors (no
pickle), applied by `emogs.Avatar`. Features: the model's own audio window (2*audio_window rows centred on the
frame), each row normalised over its feature dimension (as the model's LayerNorm does, so loudness does not
matter), flattened and standardised; ridge in dual form; ridge strength by contiguous 5-fold cross-validation;
per-AU gain from the out-of-fold predictions (ridge shrinks); AUs whose out-of-fold correlation stays below
`MIN_R` are left alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emogs.face.aus import AU_NAMES

SPEECH_AUS = ("AU17", "AU20", "AU23", "AU25", "AU26")
ALPHAS = (1e2, 1e3, 1e4, 3e4)  # ridge strengths tried (times the feature count / 1000)
MIN_R = 0.3  # out-of-fold correlation an AU needs to be driven by speech
FILE = "speech_aus.safetensors"


def _rows_norm(x: np.ndarray) -> np.ndarray:
    """(..., D) per-row normalisation over the feature dimension."""
    return (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-5)


def window_features(rows: np.ndarray, rows_per_frame: int, frames: np.ndarray, half: int) -> np.ndarray:
    """(R, D) feature rows -> (len(frames), 2*half*D) flattened, row-normalised windows (as the model sees)."""
    from emogs.data.dataset import feature_windows

    w = feature_windows(rows, rows_per_frame, frames, half).astype(np.float32)  # (F, 2*half, D)
    return _rows_norm(w).reshape(len(frames), -1)


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

    def deviation_from_rows(self, rows: np.ndarray, rows_per_frame: int, num_frames: int, half: int,
                            chunk: int = 1024) -> np.ndarray:
        """(R, D) audio feature rows -> (num_frames, k) predicted deviation, `chunk` frames at a time (the
        flattened windows of a long clip would not fit in memory at once)."""
        out = np.zeros((num_frames, len(self.au_index)), np.float32)
        for s in range(0, num_frames, chunk):
            ids = np.arange(s, min(num_frames, s + chunk))
            out[ids] = self.predict_deviation(window_features(rows, rows_per_frame, ids, half))
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

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        from emogs.io.atomic import atomic_path

        t = dict(au_index=self.au_index.astype(np.int64), mean_x=self.mean_x, std_x=self.std_x,
                 weight=self.weight, mean_y=self.mean_y)
        with atomic_path(Path(path)) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, str(tmp),
                      metadata={"info": json.dumps(self.info)})

    @classmethod
    def load(cls, path: str | Path) -> "SpeechAUs":
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            t = {k: f.get_tensor(k) for k in f.keys()}
            info = json.loads((f.metadata() or {}).get("info", "{}"))
        return cls(t["au_index"].astype(np.int64), t["mean_x"], t["std_x"], t["weight"], t["mean_y"], info)


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


def fit(dataset: str | Path, audio_feature: str, audio_window: int) -> SpeechAUs:
    """Fit on the dataset's training split (features and tracked AUs as `emogs prepare` wrote them)."""
    from emogs.data.dataset import load_manifest

    root = Path(dataset)
    m = load_manifest(root)
    rows = np.load(root / f"audio_{audio_feature}.npy", mmap_mode="r")
    rpf = rows.shape[0] // m["num_frames"]
    a, b = m["splits"]["train"]
    with np.load(root / "tracks.npz", allow_pickle=False) as z:
        aus = z["aus"][a:b]
    s = fit_arrays(window_features(rows, rpf, np.arange(a, b), audio_window), aus)
    s.info.update(audio_feature=audio_feature, audio_window=audio_window)
    return s


def main(argv: list[str] | None = None) -> int:
    """python -m emogs.model.speech_aus RUN DATASET: fit for a run trained before runs carried the file."""
    import argparse

    from emogs.train.config import load_run_config

    p = argparse.ArgumentParser(prog="python -m emogs.model.speech_aus")
    p.add_argument("run", type=Path)
    p.add_argument("dataset", type=Path)
    a = p.parse_args(argv)
    from emogs.data.dataset import load_manifest
    from emogs.errors import InputError
    from emogs.io.atomic import read_json

    want = read_json(a.run / "dataset.json")["manifest"]["source"]["sha256"]
    if load_manifest(a.dataset)["source"]["sha256"] != want:
        raise InputError(f"{a.dataset} is not the dataset {a.run} was trained on")
    mc = load_run_config(a.run / "config.json").model
    s = fit(a.dataset, mc.audio_feature, mc.audio_window)
    s.save(a.run / FILE)
    print(json.dumps(s.info, indent=1))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
