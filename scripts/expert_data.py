"""Training data for the experts (scripts/train_sync_expert.py, scripts/train_aunet.py): prepared datasets
-> a cache of landmark-aligned crops, read back as numpy memmaps.

    python scripts/expert_data.py --data /work/prep --cache /work/scratch-sync/cache   # build / update

For every prepared dataset `DATA/<clip>/` (a folder with manifest.json; nested folders are searched too)
the cache holds `CACHE/<clip>/`:
  mouth.u8   (N, 60, 120) gray mouth windows: `emogs.experts.crops.MOUTH` with a 1.25x margin (augmentation
             crops the 48x96 network input out of it)
  face.u8    (N, 128, 128, 3) RGB face crops: `FACE` with a 1.143x margin (-> 112x112)
  info.json  clip name, identity, num_frames, has_speech, the dataset's path and manifest time (a changed
             dataset is re-cached), crop regions
Audio features and AU tracks are read from the dataset itself (audio_mel.npy, audio_whisper.npy,
tracks.npz). The datasets are only read.
"""
from __future__ import annotations

import argparse
import json
import os
import math
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from emogs.experts.crops import FACE, MOUTH, crop_affines, crop_numpy, to_gray

MOUTH_CACHE = MOUTH.scaled(1.25)  # 60 x 120
FACE_CACHE = FACE.scaled(128 / 112, 128, 128)
SPEECH_MIN = 0.2  # a clip "has speech" when the manifest's VAD speech fraction is at least this


def schedule_lr(a, step: int, elapsed: float) -> float | None:
    """The experts' learning rate at `step` (100-step warm-up, cosine decay over `a.steps` steps or `a.minutes`
    of wall time), or None once the run is over."""
    budget = a.minutes * 60
    if (a.steps and step >= a.steps) or (not a.steps and elapsed >= budget):
        return None
    frac = step / a.steps if a.steps else elapsed / budget
    return a.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def identity(clip: str) -> str:
    """Person of a clip name: clips of one person share it (andrew_ng_25s, andrew_ng_clip2_27s -> andrew_ng;
    pcavs_downey_741400104_12s -> pcavs_downey; W009_front_happy_level3_001 -> W009)."""
    m = re.match(r"^(W\d{3})_", clip)
    if m:
        return m.group(1)
    m = re.match(r"^(pcavs_[a-z_]+?)_\d+_", clip)
    if m:
        return m.group(1)
    return re.sub(r"(_clip\d+)?_\d+s(_\d+px)?$", "", clip)


def find_datasets(data: Path) -> list[Path]:
    """Every folder under `data` (itself included) with a manifest.json, sorted by clip name."""
    found = [p.parent for p in data.rglob("manifest.json") if ".prepare" not in p.parts]
    return sorted(found, key=lambda p: p.name)


def _has_speech(manifest: dict) -> bool:
    a = manifest.get("audio") or {}
    return bool(a.get("num_samples")) and (a.get("speech_fraction") or 0.0) >= SPEECH_MIN \
        and not a.get("synthetic_silence", False)


def cache_clip(ds: Path, cache: Path, force: bool = False) -> dict:
    """Build CACHE/<clip>/ for one dataset (skipped when up to date); returns its info."""
    import torch

    from emogs.io.atomic import write_json
    from emogs.io.media import read_frames

    man = json.loads((ds / "manifest.json").read_text())
    out = cache / ds.name
    info_path = out / "info.json"
    stamp = (ds / "manifest.json").stat().st_mtime_ns
    if info_path.is_file() and not force:
        info = json.loads(info_path.read_text())
        if info.get("manifest_mtime_ns") == stamp:
            return info
    out.mkdir(parents=True, exist_ok=True)
    n = int(man["num_frames"])
    with np.load(ds / "tracks.npz") as z:
        lm = z["landmarks"]
    am = crop_affines(lm, MOUTH_CACHE)
    af = crop_affines(lm, FACE_CACHE)
    mouth = np.lib.format.open_memmap(out / ".mouth.tmp.npy", "w+", np.uint8, (n, MOUTH_CACHE.height, MOUTH_CACHE.width))
    face = np.lib.format.open_memmap(out / ".face.tmp.npy", "w+", np.uint8, (n, FACE_CACHE.height, FACE_CACHE.width, 3))
    buf, k = [], 0
    t0 = time.monotonic()

    def flush():
        nonlocal buf, k
        if not buf:
            return
        fr = np.stack(buf)
        j = slice(k, k + len(fr))
        m = crop_numpy(fr, am[j], MOUTH_CACHE)
        mouth[j] = to_gray(torch.from_numpy(m).float()).round().clamp(0, 255).to(torch.uint8).numpy()
        face[j] = crop_numpy(fr, af[j], FACE_CACHE)
        k += len(fr)
        buf = []

    for f in read_frames(ds / "frames.mp4"):
        if k + len(buf) >= n:
            break
        buf.append(f)
        if len(buf) == 64:
            flush()
    flush()
    if k != n:
        raise RuntimeError(f"{ds}: decoded {k} frames, manifest says {n}")
    mouth.flush(), face.flush()
    del mouth, face
    os.replace(out / ".mouth.tmp.npy", out / "mouth.npy")
    os.replace(out / ".face.tmp.npy", out / "face.npy")
    info = {"clip": ds.name, "identity": identity(ds.name), "num_frames": n, "has_speech": _has_speech(man),
            "speech_fraction": (man.get("audio") or {}).get("speech_fraction"), "dataset": str(ds.resolve()),
            "manifest_mtime_ns": stamp, "mouth_region": asdict(MOUTH_CACHE), "face_region": asdict(FACE_CACHE),
            "has_whisper": bool(man["features"].get("whisper")), "seconds": round(time.monotonic() - t0, 1)}
    write_json(info_path, info)
    return info


def cache_video(video: Path, cache: Path, force: bool = False) -> dict:
    """CACHE/<clip>/ for a video that `emogs prepare` does not take (no audio: the MEAD emotion clips,
    pretrain/noaudio): frames at 25 fps, MediaPipe tracking and AUs as prepare computes them
    (`emogs.face.analyze.analyze_frames`, clip baseline), crops as above; tracks.npz kept in the cache."""
    from emogs.face.analyze import analyze_frames
    from emogs.io.atomic import atomic_path, write_json
    from emogs.io.media import read_frames

    out = cache / video.stem
    info_path = out / "info.json"
    stamp = video.stat().st_mtime_ns
    if info_path.is_file() and not force:
        info = json.loads(info_path.read_text())
        if info.get("manifest_mtime_ns") == stamp:
            return info
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    frames = np.stack(list(read_frames(video, fps=25.0)))
    res = analyze_frames(frames, 25.0, total=len(frames))
    ok = res["success"]
    if ok.sum() < 25:
        raise RuntimeError(f"{video}: only {ok.sum()} frames with a face")
    lm = res["landmarks"].astype(np.float32)
    lm[~ok] = np.nan
    with atomic_path(out / "tracks.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, aus=res["aus"].astype(np.float32), tracked=ok, confidence=res["confidence"].astype(np.float32),
                     landmarks=lm)
    am, af = crop_affines(lm, MOUTH_CACHE), crop_affines(lm, FACE_CACHE)
    import torch

    m = crop_numpy(frames, am, MOUTH_CACHE)
    np.save(out / "mouth.npy", to_gray(torch.from_numpy(m).float()).round().clamp(0, 255).to(torch.uint8).numpy())
    np.save(out / "face.npy", crop_numpy(frames, af, FACE_CACHE))
    info = {"clip": video.stem, "identity": identity(video.stem), "num_frames": int(len(frames)),
            "has_speech": False, "speech_fraction": None, "dataset": None, "video": str(video.resolve()),
            "tracks_in_cache": True, "manifest_mtime_ns": stamp, "mouth_region": asdict(MOUTH_CACHE),
            "face_region": asdict(FACE_CACHE), "has_whisper": False, "seconds": round(time.monotonic() - t0, 1)}
    write_json(info_path, info)
    return info


class Clip:
    """One cached clip, opened read-only: crops as memmaps, audio features and tracks in memory."""

    def __init__(self, cache_dir: Path):
        self.info = json.loads((cache_dir / "info.json").read_text())
        self.name, self.identity = self.info["clip"], self.info["identity"]
        self.n = int(self.info["num_frames"])
        self.dir = cache_dir
        self.ds = Path(self.info["dataset"]) if self.info.get("dataset") else None
        self._mouth = self._face = None
        self._feat: dict[str, np.ndarray] = {}
        self._tracks = None

    @property
    def mouth(self) -> np.ndarray:
        if self._mouth is None:
            self._mouth = np.load(self.dir / "mouth.npy", mmap_mode="r")
        return self._mouth

    @property
    def face(self) -> np.ndarray:
        if self._face is None:
            self._face = np.load(self.dir / "face.npy", mmap_mode="r")
        return self._face

    def features(self, kind: str) -> np.ndarray:
        """(R * N, D) float32 audio feature rows ('mel': 4 per frame, 'whisper': 2 per frame)."""
        if kind not in self._feat:
            self._feat[kind] = np.load(self.ds / f"audio_{kind}.npy").astype(np.float32)
        return self._feat[kind]

    @property
    def tracks(self) -> dict[str, np.ndarray]:
        if self._tracks is None:
            src = self.dir if self.info.get("tracks_in_cache") else self.ds
            with np.load(src / "tracks.npz") as z:
                self._tracks = {k: z[k] for k in ("aus", "tracked", "confidence")}
                if "blendshapes" in z.files:
                    from emogs.eval.landmarks import mouth_opening

                    self._tracks["blendshapes"] = z["blendshapes"]
                    self._tracks["mouth_opening"] = np.nan_to_num(mouth_opening(z["landmarks"])).astype(np.float32)
        return self._tracks


def open_clips(cache: Path, names: list[str] | None = None) -> list[Clip]:
    dirs = sorted(p.parent for p in cache.glob("*/info.json"))
    clips = [Clip(d) for d in dirs]
    return [c for c in clips if names is None or c.name in names]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of prepared datasets (searched recursively)")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--videos", type=Path, nargs="*", default=[],
                    help="videos without audio (not preparable) to track and cache directly, e.g. MEAD clips")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    todo = [(cache_clip, ds) for ds in find_datasets(a.data)] + [(cache_video, v) for v in a.videos]
    for fn, src in todo:
        info = fn(src, a.cache, a.force)
        print(f"{info['clip']:45s} {info['identity']:28s} {info['num_frames']:5d} frames  speech={info['has_speech']}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
