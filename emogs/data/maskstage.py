"""The masks stage as a whole: two passes over the clip's cropped frames (keyframes, then every frame).

The frames come from a callable `frames(keep)` yielding the S x S RGB crops in order (None for frames
not in `keep` when `keep` is given). `emogs prepare` passes the crop of the source video
(`emogs.data.crop.crop_frames`), so this stage needs no frames.mp4 and runs beside the frames stage;
without it the stage reads DATASET/frames.mp4 (the lossy re-encode of the same crop).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Collection, Iterable

import cv2
import numpy as np

from emogs.data.masks import (MaskConfig, PersonMasker, background_from_keyframes, background_plate,
                              compose_labels, grabcut_person, keyframe_indices, upsample_mask)

from emogs.constants import FPS
FrameSource = Callable[[Collection[int] | None], Iterable[np.ndarray | None]]


class Cancelled(RuntimeError):
    """Raised inside the stage when the run it belongs to is being abandoned (another stage failed)."""


def video_frames(path: Path) -> FrameSource:
    """A FrameSource reading a video that already holds the S x S crops (DATASET/frames.mp4)."""
    from emogs.io.media import read_frames

    def frames(keep: Collection[int] | None) -> Iterable[np.ndarray | None]:
        if keep is None:
            yield from read_frames(path)
            return
        for i, frame in enumerate(read_frames(path, raw=True)):
            yield frame.to_ndarray(format="rgb24") if i in keep else None
    return frames


def run_masks(root: Path, size: int, work_size: int = 256, cfg: MaskConfig | None = None,
              frames: FrameSource | None = None, cancelled: Callable[[], bool] | None = None) -> dict:
    """Cropped frames + tracks.npz -> labels.mkv, background.png. Returns facts for the manifest.

    `frames`: where the crops come from (default: root/frames.mp4). `cancelled`: polled once a frame;
    when it returns True the stage stops with `Cancelled` (nothing is written)."""
    from emogs.data.labels import LabelWriter
    from emogs.data.progress import Progress
    from emogs.face.zones import label_map
    from emogs.io.atomic import atomic_path

    cfg = cfg or MaskConfig(work_size=work_size)
    frames = frames or video_frames(root / "frames.mp4")
    cancelled = cancelled or (lambda: False)
    L = min(size, cfg.work_size)
    r = L / size
    with np.load(root / "tracks.npz") as z:
        lm_S = z["landmarks"]  # (N, 478, 3) crop px
    n = len(lm_S)
    lm_L = lm_S * np.float32(r)
    keys = keyframe_indices(n, FPS, cfg)
    key_set = {int(k): j for j, k in enumerate(keys)}

    def check() -> None:
        if cancelled():
            raise Cancelled("masks: cancelled")

    # pass 1: keyframes at S and L, GrabCut at L (two threads: OpenCV releases the GIL)
    key_S = np.zeros((len(keys), size, size, 3), np.uint8)
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = {}
        for i, rgb in enumerate(frames(key_set)):
            if rgb is None:
                continue
            check()
            j = key_set[i]
            key_S[j] = rgb
            small = cv2.resize(rgb, (L, L), interpolation=cv2.INTER_AREA) if L != size else rgb
            jobs[j] = (small, pool.submit(grabcut_person, small, lm_L[i], cfg.grabcut_iters))
        if len(jobs) != len(keys):
            raise RuntimeError(f"masks: found {len(jobs)} of {len(keys)} keyframes")
        key_L = np.stack([jobs[j][0] for j in range(len(keys))])
        key_masks = np.stack([jobs[j][1].result() for j in range(len(keys))])
    plate_L, seen_L, motion = background_from_keyframes(key_L, key_masks)
    static = motion < cfg.static_tolerance and seen_L.mean() > 0.1
    masker = PersonMasker(keys, key_masks, lm_L[keys], plate_L if static else None, seen_L, cfg)

    # pass 2: every frame
    head_keys = np.zeros((len(keys), size, size), bool)
    area = np.zeros(n, np.float32)
    prog = Progress("masks", n)
    with LabelWriter(root / "labels.mkv", size, size, FPS) as lw:
        for i, rgb in enumerate(frames(None)):
            check()
            if i >= n:
                raise RuntimeError(f"masks: the video has more frames than the {n} tracked")
            small = cv2.resize(rgb, (L, L), interpolation=cv2.INTER_AREA) if L != size else rgb
            person = upsample_mask(masker(i, small, lm_L[i]), size)
            labels = compose_labels(person, lm_S[i], label_map(lm_S[i], size, size), cfg.neck_drop)
            lw.write(labels)
            area[i] = np.count_nonzero(person) / person.size
            if i in key_set:
                head_keys[key_set[i]] = labels >= 2
            prog(i + 1)
        prog.close()
        if lw.count != n:
            raise RuntimeError(f"masks: the video has {lw.count} frames, tracks {n}")
    plate = background_plate(key_S, head_keys)
    with atomic_path(root / "background.png") as tmp:
        cv2.imwrite(str(tmp), plate[..., ::-1])
    return {"static_camera": bool(static), "background_motion": round(motion, 2),
            "background_seen": round(float(seen_L.mean()), 3), "keyframes": len(keys),
            "person_area_mean": round(float(area.mean()), 3), "person_area_std": round(float(area.std()), 4)}


def read_keyframes(path: Path, key_set: dict[int, int], size: int, gray: bool = False) -> np.ndarray:
    """Decode the frames in `key_set` {frame index: slot} of a video -> (K, S, S, 3) u8 RGB, or (K, S, S)
    u8 with `gray` (label videos). Decoding starts at the last keyframe before each wanted frame (seeking
    past the ones in between), so sparse picks from an all-intra video (labels.mkv) cost a few frames;
    frame i is the one with the i-th smallest timestamp."""
    out = np.zeros((len(key_set), size, size) + (() if gray else (3,)), np.uint8)
    if not key_set:
        return out
    fmt = "gray" if gray else "rgb24"
    try:
        return _read_keyframes_seeking(path, key_set, out, fmt)
    except _NoSeek:  # timestamps that do not identify frames: decode from the start
        return _read_keyframes_linear(path, key_set, out, fmt)


class _NoSeek(Exception):
    pass


def _read_keyframes_seeking(path: Path, key_set: dict[int, int], out: np.ndarray, fmt: str) -> np.ndarray:
    import bisect

    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in c.demux(s) if p.size]
        pts = sorted(t for t, _ in packets if t is not None)
        if len(pts) != len(packets) or len(set(pts)) != len(pts):
            raise _NoSeek
        index = {t: i for i, t in enumerate(pts)}
        starts = sorted(index[t] for t, key in packets if key)  # frame indices of keyframes
        s.thread_type = "AUTO"
        frames, at = None, len(pts)  # decoder iterator; index of the next frame it gives (unknown: past the end)
        for target in sorted(key_set):
            k = starts[bisect.bisect_right(starts, target) - 1] if starts and starts[0] <= target else 0
            if frames is None or not (k <= at <= target):  # the decoder is not on the way to `target`: seek
                c.seek(pts[k], stream=s, backward=True)
                frames, at = c.decode(s), k
            for frame in frames:
                i = index.get(frame.pts)
                if i is None:
                    continue
                at = i + 1
                if i == target:
                    out[key_set[i]] = frame.to_ndarray(format=fmt)
                    break
                if i > target:  # the seek landed past it (should not happen with exact keyframe times)
                    raise _NoSeek
            else:
                raise _NoSeek
    return out


def _read_keyframes_linear(path: Path, key_set: dict[int, int], out: np.ndarray, fmt: str) -> np.ndarray:
    import av

    last = max(key_set)
    with av.open(str(path)) as c:
        c.streams.video[0].thread_type = "AUTO"
        for i, frame in enumerate(c.decode(video=0)):
            if i in key_set:
                out[key_set[i]] = frame.to_ndarray(format=fmt)
            if i >= last:
                break
    return out
