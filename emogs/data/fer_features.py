"""Per-frame FER2013 emotion scores of a dataset (the `fer` package's tflite classifier, `emogs.face.fer`), cached
once beside the dataset: DATASET/fer.npz. The EmoTaG head's emotion latent is conditioned on them at training
time (docs/fewshot.md, "Semantic emotion guidance").

fer.npz: probs (N, 7) f32 in FER_LABELS order (frames without a face box: the mean of the frames with one, or
neutral when none has one) | found (N,) bool (a box was found: Haar, else the MediaPipe landmarks' box) |
labels (7,) | method "FER2013 (fer tflite)". Frames are streamed from frames.mp4 (never all in memory);
`emogs.train.fewshot_pack.subset_dataset` cuts the file with the frames, and `pack-dataset` / `pack-fewshot`
carry it to the GPU machine (whose image has no `ai_edge_litert`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from emogs.errors import InputError

FER_FILE = "fer.npz"
FER_METHOD = "FER2013 (fer tflite)"


def landmark_box(lm: np.ndarray, size: int) -> tuple[int, int, int, int] | None:
    """(478, >=2) landmarks in crop px -> (x0, y0, x1, y1), None when they are missing (zeros / NaN)."""
    xy = np.asarray(lm, np.float32)[:, :2]
    if not np.isfinite(xy).all() or float(np.ptp(xy[:, 0])) < 4 or float(np.ptp(xy[:, 1])) < 4:
        return None
    x0, y0 = np.clip(xy.min(0), 0, size - 1)
    x1, y1 = np.clip(xy.max(0), 0, size - 1)
    return int(x0), int(y0), int(x1), int(y1)


def compute_fer_features(root: str | Path, classifier=None, log: Callable[[str], None] | None = None
                         ) -> dict[str, np.ndarray]:
    """FER2013 scores of every frame of the dataset at `root` (streamed) -> the fer.npz arrays (not written)."""
    from emogs.data.dataset import load_manifest
    from emogs.face.fer import FER_LABELS, NEUTRAL, FerClassifier
    from emogs.io.media import read_frames

    root = Path(root)
    man = load_manifest(root)
    n, size = int(man["num_frames"]), int(man["size"])
    fer = classifier or FerClassifier()
    lms = None
    if (root / "tracks.npz").is_file():
        with np.load(root / "tracks.npz", allow_pickle=False) as z:
            lms = z["landmarks"] if "landmarks" in z.files else None
    probs = np.zeros((n, len(FER_LABELS)), np.float32)
    found = np.zeros(n, bool)
    i = -1
    for i, frame in enumerate(read_frames(root / "frames.mp4")):
        if i >= n:
            break
        box = landmark_box(lms[i], size) if lms is not None and i < len(lms) else None
        p, _ = fer.predict(frame, box)
        if p is not None:
            probs[i], found[i] = p, True
    if i + 1 < n:
        raise InputError(f"{root}: frames.mp4 has {i + 1} frames, the manifest says {n}")
    if found.any():
        probs[~found] = probs[found].mean(0)
    else:
        probs[:, NEUTRAL] = 1.0
    if log:
        top = np.bincount(probs[found].argmax(1), minlength=len(FER_LABELS)) if found.any() else np.zeros(7, int)
        log(f"[fer] {root.name}: {int(found.sum())}/{n} frames with a face box; top class "
            + ", ".join(f"{FER_LABELS[k]} {int(c)}" for k, c in enumerate(top) if c)
            + f"; mean e = 1 - p(neutral) {float(1 - probs[:, NEUTRAL].mean()):.3f}")
    return dict(probs=probs, found=found, labels=np.array(FER_LABELS), method=np.array(FER_METHOD))


def write_fer_features(root: str | Path, d: dict[str, np.ndarray]) -> Path:
    from emogs.io.atomic import atomic_path

    path = Path(root) / FER_FILE
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **d)
    return path


def load_fer_features(root: str | Path, num_frames: int | None = None) -> np.ndarray | None:
    """(N, 7) the cached FER2013 scores of a dataset, None when it has none; InputError for a stale file."""
    from emogs.face.fer import FER_LABELS

    path = Path(root) / FER_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        probs, labels = z["probs"].astype(np.float32), [str(x) for x in z["labels"]]
    if labels != FER_LABELS or probs.ndim != 2:
        raise InputError(f"{path}: not FER2013 scores in this emogs's class order; delete it to recompute")
    if num_frames is not None and len(probs) != num_frames:
        raise InputError(f"{path}: {len(probs)} frames, the dataset has {num_frames}; delete it to recompute")
    return probs


def ensure_fer_features(root: str | Path, log: Callable[[str], None] = print) -> np.ndarray:
    """The dataset's FER2013 scores (N, 7): the cache, else computed now and cached (kept in memory only when
    the folder is read-only). InputError when they can be neither read nor computed (no `ai_edge_litert`)."""
    from emogs.data.dataset import load_manifest

    root = Path(root)
    n = int(load_manifest(root)["num_frames"])
    probs = load_fer_features(root, n)
    if probs is not None:
        return probs
    try:
        d = compute_fer_features(root, log=log)
    except ImportError as e:
        raise InputError(f"{root}: no {FER_FILE} (FER2013 scores for the emotion guidance) and the classifier "
                         f"cannot run here ({e}); compute it where it can (`emogs fer-features DATASET`) or set "
                         "model.emotion_dim 0") from None
    try:
        write_fer_features(root, d)
    except OSError as e:
        log(f"[fer] {root}: cannot cache {FER_FILE} ({e.strerror or e}); kept in memory")
    return d["probs"]
