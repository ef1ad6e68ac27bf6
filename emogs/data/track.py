"""Prepare stage "track": decode at 25 fps, run MediaPipe on every frame, check the clip, fill short gaps.

Everything here is in *source* pixels (landmarks scaled back from the downscaled tracking frames).
The checks turn a clip that cannot make a dataset into one-line InputErrors: no face, two people,
a face too small, a long tracking gap (named by frame range).
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from emogs.errors import InputError

from emogs.constants import FPS


@dataclass
class RawTracks:
    """Per-frame tracking results at 25 fps, source pixels. N frames."""

    landmarks: np.ndarray    # (N, 478, 3) f32 source px (z in the same pixel scale)
    blendshapes: np.ndarray  # (N, 52) f32
    transform: np.ndarray    # (N, 4, 4) f64 MediaPipe facial transformation (canonical cm -> GL camera)
    tracked: np.ndarray      # (N,) bool, False = no face (filled by interpolation)
    num_faces: np.ndarray    # (N,) int, faces MediaPipe found
    confidence: np.ndarray   # (N,) f32, fraction of landmarks inside the image (0 where untracked)
    width: int               # source frame size
    height: int

    def save(self, path: Path) -> None:
        np.savez(path, landmarks=self.landmarks, blendshapes=self.blendshapes, transform=self.transform,
                 tracked=self.tracked, num_faces=self.num_faces, confidence=self.confidence,
                 size=np.array([self.width, self.height]))

    @classmethod
    def load(cls, path: Path) -> "RawTracks":
        z = np.load(path)
        w, h = (int(v) for v in z["size"])
        return cls(z["landmarks"], z["blendshapes"], z["transform"], z["tracked"], z["num_faces"],
                   z["confidence"], w, h)

    @property
    def num_frames(self) -> int:
        return len(self.tracked)


def tracking_size(width: int, height: int, max_side: int = 640) -> tuple[int, int]:
    """Downscaled (even) frame size for tracking; sources no larger than `max_side` stay as they are."""
    s = min(1.0, max_side / max(width, height))
    return max(2, int(round(width * s / 2)) * 2), max(2, int(round(height * s / 2)) * 2)


def track_video(path: Path, width: int, height: int, max_seconds: float | None, max_side: int = 640,
                progress: Callable[[int], None] | None = None, workers: int = 2, chunk: int = 50) -> RawTracks:
    """Decode `path` at 25 fps (downscaled to at most `max_side`), track every frame. No checks.

    The decoded frames are cut into runs of `chunk` consecutive frames, tracked by `workers` threads
    with one MediaPipe FaceLandmarker (VIDEO mode) each: MediaPipe releases the GIL, so two trackers
    use both cores (about 1.6x faster). Each tracker sees increasing timestamps (runs are handed out in
    order). The results equal those of one tracker over the whole clip: bit-identical landmarks,
    blendshapes and transforms on macron_50s and acosta_71s (runs of 50 frames); tests check a 2 s clip
    cut into runs of 7. At most `workers` runs wait besides the ones being tracked (memory)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from emogs.face.tracker import FaceTracker
    from emogs.io.media import read_frames

    tw, th = tracking_size(width, height, max_side)
    scale = np.array([width / tw, height / th, width / tw], np.float32)
    local = threading.local()
    trackers: list[FaceTracker] = []

    def track_run(start: int, frames: list[np.ndarray]) -> list:
        tr = getattr(local, "tracker", None)
        if tr is None:
            tr = local.tracker = FaceTracker(video_mode=True, max_faces=2)
            trackers.append(tr)
        return [tr.track(rgb, int(round((start + j) * 1000 / FPS))) for j, rgb in enumerate(frames)]

    results: list = []
    pending: deque[Future] = deque()

    def collect(block_until: int) -> None:  # in order, so progress counts finished frames
        while len(pending) > block_until:
            results.extend(pending.popleft().result())
            if progress:
                progress(len(results))

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        run: list[np.ndarray] = []
        start = 0
        for i, rgb in enumerate(read_frames(path, fps=FPS, size=(tw, th), max_seconds=max_seconds)):
            run.append(rgb)
            if len(run) == chunk:
                pending.append(pool.submit(track_run, start, run))
                run, start = [], i + 1
                collect(workers)  # at most `workers` runs waiting besides the ones being tracked
        if run:
            pending.append(pool.submit(track_run, start, run))
        collect(0)
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True)
        for tr in trackers:
            tr.close()
    if not results:
        raise InputError(f"{path}: no video frames could be decoded")
    ok = np.array([r is not None for r in results])
    nf = np.array([r.num_faces if r else 0 for r in results], np.int32)
    conf = np.array([r.confidence if r else 0.0 for r in results], np.float32)
    lms = np.stack([r.landmarks * scale if r else np.zeros((478, 3), np.float32) for r in results])
    bss = np.stack([r.blendshapes if r else np.zeros(52, np.float32) for r in results])
    tfs = np.stack([r.transform if r else np.eye(4) for r in results])
    return RawTracks(lms.astype(np.float32), bss.astype(np.float32), tfs, ok, nf, conf, width, height)


def gaps(tracked: np.ndarray) -> list[tuple[int, int]]:
    """Runs of untracked frames as half-open [start, end) index ranges."""
    t = np.concatenate([[True], tracked.astype(bool), [True]])
    d = np.diff(t.astype(np.int8))
    return list(zip(np.flatnonzero(d == -1).tolist(), np.flatnonzero(d == 1).tolist()))


def face_height(landmarks: np.ndarray) -> np.ndarray:
    """Landmark bounding-box height (forehead to chin), (..., 478, 3) -> (...)."""
    return np.ptp(landmarks[..., 1], axis=-1)


@dataclass(frozen=True)
class TrackChecks:
    max_gap_seconds: float = 0.5      # longer gaps are an error
    max_multi_face_fraction: float = 0.1  # frames with >1 face beyond this fraction: "two people"
    min_face_px: float = 96.0         # median face height in source pixels


def check_tracks(rt: RawTracks, name: str, c: TrackChecks = TrackChecks()) -> None:
    """Raise InputError if the clip cannot make a one-person dataset."""
    n = rt.num_frames
    if not rt.tracked.any():
        raise InputError(f"{name}: no face found in any of the {n} frames (faces smaller than about a "
                         "tenth of the frame height are not detected)")
    multi = float((rt.num_faces > 1).mean())
    if multi > c.max_multi_face_fraction:
        raise InputError(f"{name}: two or more people: {multi:.0%} of frames show more than one face "
                         "(prepare needs one person)")
    fh = float(np.median(face_height(rt.landmarks[rt.tracked])))
    if fh < c.min_face_px:
        raise InputError(f"{name}: face too small: {fh:.0f} px tall (landmarks, median), need at least "
                         f"{c.min_face_px:.0f} px; use a closer or higher-resolution video")
    max_gap = int(math.floor(c.max_gap_seconds * FPS + 1e-9))
    long_gaps = [(s, e) for s, e in gaps(rt.tracked) if e - s > max_gap]
    if long_gaps:
        s, e = max(long_gaps, key=lambda g: g[1] - g[0])
        more = f" (and {len(long_gaps) - 1} more)" if len(long_gaps) > 1 else ""
        raise InputError(f"{name}: face lost in frames {s}-{e - 1} ({s / FPS:.2f}-{e / FPS:.2f} s at 25 fps, "
                         f"{(e - s) / FPS:.2f} s > {c.max_gap_seconds} s){more}; trim the clip")


def fill_gaps(rt: RawTracks) -> RawTracks:
    """Linearly interpolate landmarks, blendshapes and transforms over untracked frames (edges held)."""
    idx = np.flatnonzero(rt.tracked)
    n = rt.num_frames
    if len(idx) == n:
        return rt
    t = np.arange(n)

    def interp(a: np.ndarray) -> np.ndarray:
        flat = a.reshape(n, -1).astype(np.float64)
        out = np.stack([np.interp(t, idx, flat[idx, j]) for j in range(flat.shape[1])], 1)
        return out.reshape(a.shape).astype(a.dtype)

    tf = interp(rt.transform)
    tf[..., :3, :3] = _orthonormalize(tf[..., :3, :3])
    return RawTracks(interp(rt.landmarks), interp(rt.blendshapes), tf, rt.tracked.copy(), rt.num_faces,
                     rt.confidence, rt.width, rt.height)


def _orthonormalize(m: np.ndarray) -> np.ndarray:
    """Nearest rotation times the mean singular value (MediaPipe matrices carry a scale). (..., 3, 3)."""
    u, s, vt = np.linalg.svd(m)
    r = u @ vt
    flip = np.linalg.det(r) < 0
    if np.any(flip):
        u[flip, :, -1] *= -1
        r = u @ vt
    return r * s.mean(-1)[..., None, None]
