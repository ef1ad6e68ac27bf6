"""Reading a prepared dataset (format: docs/architecture.md, "Dataset format").

    ds = TalkingHeadDataset("DATASET", split="train", audio_feature="mel")
    item = ds[0]   # dict of numpy arrays

Frames and label maps are decoded once into uint8 memmaps under `DATASET/.cache/` (written to a temp
file, then renamed), and read from there: random access without holding the clip in RAM.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from emogs.errors import InputError
from emogs.data.windows import feature_windows, frame_windows  # noqa: F401 (re-exported)

REQUIRED_FILES = ["manifest.json", "frames.mp4", "audio.wav", "tracks.npz", "labels.mkv", "background.png",
                  "audio_mel.npy"]
MANIFEST_KEYS = ["format_version", "source", "fps", "num_frames", "size", "au_names", "label_names", "splits",
                 "audio", "features"]


def load_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest of a complete, compatible dataset; InputError (one line) otherwise."""
    import json

    import emogs

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such dataset folder")
    mpath = root / "manifest.json"
    if not mpath.is_file():
        hint = " (preparation unfinished: re-run `emogs prepare` to resume)" if (root / ".prepare").is_dir() else ""
        raise InputError(f"{root}: not a complete emogs dataset, manifest.json is missing{hint}")
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise InputError(f"{mpath}: unreadable ({type(e).__name__})") from None
    if not isinstance(m, dict) or any(k not in m for k in MANIFEST_KEYS):
        raise InputError(f"{mpath}: not an emogs dataset manifest")
    if m["format_version"] != emogs.DATASET_FORMAT_VERSION:
        raise InputError(f"{root}: dataset format {m['format_version']}, this emogs reads format "
                         f"{emogs.DATASET_FORMAT_VERSION}; re-run `emogs prepare --force`")
    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    if m["features"].get("whisper") and not (root / "audio_whisper.npy").is_file():
        missing.append("audio_whisper.npy")
    if missing:
        raise InputError(f"{root}: dataset is missing {', '.join(missing)}")
    return m


def _cache_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def _memmap_cache(root: Path, name: str, src: Path, shape: tuple[int, ...], frames: Iterable[np.ndarray]) -> np.ndarray:
    """uint8 array `shape` cached at DATASET/.cache/<name>.<key>.u8 (filled from `frames` once)."""
    cache = root / ".cache"
    cache.mkdir(exist_ok=True)
    path = cache / f"{name}.{_cache_key(src)}.u8"
    if not path.is_file():
        for old in cache.glob(f"{name}.*.u8"):
            old.unlink(missing_ok=True)
        tmp = cache / f".{name}.{os.getpid()}.tmp"
        mm = np.memmap(tmp, np.uint8, "w+", shape=shape)
        n = 0
        for i, f in enumerate(frames):
            if i >= shape[0]:
                break
            mm[i] = f
            n += 1
        mm.flush()
        del mm
        if n != shape[0]:
            tmp.unlink(missing_ok=True)
            raise InputError(f"{src}: holds {n} frames, the manifest says {shape[0]}")
        os.replace(tmp, path)
    return np.memmap(path, np.uint8, "r", shape=shape)


def frames_memmap(root: str | Path, manifest: dict | None = None) -> np.ndarray:
    """All frames as a read-only uint8 memmap (N, S, S, 3)."""
    from emogs.io.media import read_frames

    root = Path(root)
    m = manifest or load_manifest(root)
    shape = (m["num_frames"], m["size"], m["size"], 3)
    return _memmap_cache(root, "frames", root / "frames.mp4", shape, read_frames(root / "frames.mp4"))


def labels_memmap(root: str | Path, manifest: dict | None = None) -> np.ndarray:
    """All label maps as a read-only uint8 memmap (N, S, S)."""
    from emogs.data.labels import read_labels

    root = Path(root)
    m = manifest or load_manifest(root)
    shape = (m["num_frames"], m["size"], m["size"])
    return _memmap_cache(root, "labels", root / "labels.mkv", shape, read_labels(root / "labels.mkv"))


class TalkingHeadDataset:
    """Frames of one split with everything training needs per frame (see module docstring).

    `ds[i]` (i is the position inside the split) -> dict:
      index (int frame index in the clip), image (S,S,3) f32 [0,1], labels (S,S) u8, world_to_cam (4,4),
      K (3,3), audio (2*audio_window, D) feature rows centred on the frame's centre time,
      au (17,), au_window (au_window, 17) centred, edge-padded, blendshapes (52,), landmarks (478,3).
    With `mesh=True` (a dataset with the fitted face mesh, DATASET/mesh.npz): the cameras (world_to_cam, K)
    are the mesh fit's (world = the ICT model frame) and items also carry `expression` (E,), the fitted
    expression coefficients; `ds.mesh` holds the whole file (identity, expression, names, ...).
    """

    def __init__(self, root: str | Path, split: str = "train", audio_feature: str = "mel",
                 audio_window: int = 8, au_window: int = 9, mesh: bool = False) -> None:
        self.root = Path(root)
        self.manifest = m = load_manifest(self.root)
        self.mesh: dict[str, np.ndarray] | None = None
        if mesh:
            p = self.root / "mesh.npz"
            if not p.is_file():
                raise InputError(f"{self.root}: no fitted face mesh (mesh.npz); re-run `emogs prepare` with "
                                 "ICT-FaceKit available (--mesh on), or train the free model (--model free)")
            with np.load(p, allow_pickle=False) as z:
                self.mesh = {k: z[k] for k in z.files}
        if split not in (*m["splits"], "all"):
            raise InputError(f"unknown split '{split}' (have {', '.join(m['splits'])}, all)")
        a, b = (0, m["num_frames"]) if split == "all" else m["splits"][split]
        self.indices = np.arange(a, b)
        if audio_feature not in ("mel", "whisper"):
            raise InputError(f"audio_feature must be 'mel' or 'whisper', got '{audio_feature}'")
        if audio_feature == "whisper" and not m["features"].get("whisper"):
            raise InputError(f"{self.root}: has no Whisper features (prepared with --no-whisper)")
        self.audio_feature, self.audio_window, self.au_window = audio_feature, audio_window, au_window
        self.audio = np.load(self.root / f"audio_{audio_feature}.npy", mmap_mode="r")  # (R*N, D) f16
        self.rows_per_frame = self.audio.shape[0] // m["num_frames"]
        with np.load(self.root / "tracks.npz") as z:
            self.tracks = {k: z[k] for k in z.files}
        lm = self.tracks.get("landmarks")
        if lm is not None and lm.shape[-1] == 2:  # packed for travel without depth (emogs.train.gpu): z = 0
            self.tracks["landmarks"] = np.concatenate([lm, np.zeros_like(lm[..., :1])], -1)
        self.frames = frames_memmap(self.root, m)
        self.labels = labels_memmap(self.root, m)
        self._background: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_frames(self) -> int:
        return int(self.manifest["num_frames"])

    @property
    def background(self) -> np.ndarray:
        """Background plate (S, S, 3) f32 in [0, 1]."""
        if self._background is None:
            import cv2

            bgr = cv2.imread(str(self.root / "background.png"), cv2.IMREAD_COLOR)
            self._background = bgr[..., ::-1].astype(np.float32) / 255.0
        return self._background

    def audio_rows(self, frame: int) -> np.ndarray:
        """(2*audio_window, D) f32 feature rows centred on frame `frame` (edge rows repeated)."""
        return np.asarray(feature_windows(self.audio, self.rows_per_frame, [frame], self.audio_window)[0], np.float32)

    def au_rows(self, frame: int) -> np.ndarray:
        """(au_window, 17) AUs of the frames around `frame`, edge-padded."""
        return frame_windows(self.tracks["aus"], np.array([frame]), self.au_window)[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        f = int(self.indices[i])
        t = self.tracks
        cams = self.mesh if self.mesh is not None else t
        item = {
            "index": f,
            "image": self.frames[f].astype(np.float32) / 255.0,
            "labels": np.array(self.labels[f]),
            "world_to_cam": cams["world_to_cam"][f],
            "K": cams["K"],
            "audio": self.audio_rows(f),
            "au": t["aus"][f],
            "au_window": self.au_rows(f),
            "blendshapes": t["blendshapes"][f],
            "landmarks": t["landmarks"][f],
        }
        if self.mesh is not None:
            item["expression"] = self.mesh["expression"][f].astype(np.float32)
        return item
