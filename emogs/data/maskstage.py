"""The masks stage as a whole: two passes over frames.mp4 (keyframes, then every frame)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from emogs.data.masks import (MaskConfig, PersonMasker, background_from_keyframes, background_plate,
                              compose_labels, grabcut_person, keyframe_indices, split_head, upsample_mask)

FPS = 25


def run_masks(root: Path, size: int, work_size: int = 256, cfg: MaskConfig | None = None) -> dict:
    """frames.mp4 + tracks.npz -> labels.mkv, background.png. Returns facts for the manifest."""
    from emogs.data.labels import LabelWriter
    from emogs.data.progress import Progress
    from emogs.face.zones import label_map
    from emogs.io.atomic import atomic_path
    from emogs.io.media import read_frames

    cfg = cfg or MaskConfig(work_size=work_size)
    L = min(size, cfg.work_size)
    r = L / size
    with np.load(root / "tracks.npz") as z:
        lm_S = z["landmarks"]  # (N, 478, 3) crop px
    n = len(lm_S)
    lm_L = lm_S * np.float32(r)
    keys = keyframe_indices(n, FPS, cfg)
    key_set = {int(k): j for j, k in enumerate(keys)}

    # pass 1: keyframes at S and L, GrabCut at L
    key_S = read_keyframes(root / "frames.mp4", key_set, size)
    key_L = np.stack([cv2.resize(f, (L, L), interpolation=cv2.INTER_AREA) for f in key_S])
    key_masks = np.stack([grabcut_person(f, lm_L[k], cfg.grabcut_iters) for f, k in zip(key_L, keys)])
    plate_L, seen_L, motion = background_from_keyframes(key_L, key_masks)
    static = motion < cfg.static_tolerance and seen_L.mean() > 0.1
    masker = PersonMasker(keys, key_masks, lm_L[keys], plate_L if static else None, seen_L, cfg)

    # pass 2: every frame
    head_keys = np.zeros((len(keys), size, size), bool)
    area = np.zeros(n, np.float32)
    prog = Progress("masks", n)
    with LabelWriter(root / "labels.mkv", size, size, FPS) as lw:
        for i, rgb in enumerate(read_frames(root / "frames.mp4")):
            small = cv2.resize(rgb, (L, L), interpolation=cv2.INTER_AREA) if L != size else rgb
            person = upsample_mask(masker(i, small, lm_L[i]), size)
            labels = compose_labels(person, lm_S[i], label_map(lm_S[i], size, size), cfg.neck_drop)
            lw.write(labels)
            area[i] = person.mean()
            if i in key_set:
                head_keys[key_set[i]] = labels >= 2
            prog(i + 1)
    prog.close()
    if lw.count != n:
        raise RuntimeError(f"masks: frames.mp4 has {lw.count} frames, tracks {n}")
    plate = background_plate(key_S, head_keys)
    with atomic_path(root / "background.png") as tmp:
        cv2.imwrite(str(tmp), plate[..., ::-1])
    return {"static_camera": bool(static), "background_motion": round(motion, 2),
            "background_seen": round(float(seen_L.mean()), 3), "keyframes": len(keys),
            "person_area_mean": round(float(area.mean()), 3), "person_area_std": round(float(area.std()), 4)}


def read_keyframes(path: Path, key_set: dict[int, int], size: int, gray: bool = False) -> np.ndarray:
    """Decode a video, converting only the frames in `key_set` {frame index: slot}
    -> (K, S, S, 3) u8 RGB, or (K, S, S) u8 with `gray` (label videos)."""
    import av

    out = np.zeros((len(key_set), size, size) + (() if gray else (3,)), np.uint8)
    last = max(key_set) if key_set else -1
    with av.open(str(path)) as c:
        c.streams.video[0].thread_type = "AUTO"
        for i, frame in enumerate(c.decode(video=0)):
            if i in key_set:
                out[key_set[i]] = frame.to_ndarray(format="gray" if gray else "rgb24")
            if i >= last:
                break
    return out
