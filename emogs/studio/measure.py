"""AUs measured on rendered frames, for the page's requested-vs-measured plot.

MediaPipe FaceLandmarker in image mode (every frame detected on its own: the studio measures a frame now
and then, not a continuous video) and `emogs.face.aus.aus_from_blendshapes` with the canonical-face
landmark baseline (a single frame has no clip of its own to take a resting face from). Small renders are
upscaled to 256 px first: the landmarker's face crop is 256 px.
"""
from __future__ import annotations

import numpy as np

MIN_SIDE = 256


class RenderAUMeter:
    """`meter(rgb uint8 (H, W, 3))` -> (17,) AUs in [0, 1], or None when no face is found."""

    def __init__(self) -> None:
        self._tracker = None

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        import cv2

        from emogs.face.aus import aus_from_blendshapes
        from emogs.face.tracker import FaceTracker

        if self._tracker is None:
            self._tracker = FaceTracker(video_mode=False, max_faces=1)
        h, w = rgb.shape[:2]
        if min(h, w) < MIN_SIDE:
            s = MIN_SIDE / min(h, w)
            rgb = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
        res = self._tracker.track(np.ascontiguousarray(rgb))
        if res is None:
            return None
        return aus_from_blendshapes(res.blendshapes, res.landmarks, baseline="canonical")

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
