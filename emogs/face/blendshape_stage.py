"""MediaPipe's blendshape stage on its own: 478 face landmarks (pixels) -> the 52 blendshape scores.

MediaPipe's FaceLandmarker runs three networks: a face detector, the landmark network (image -> 478 landmarks)
and the blendshape network (146 of those landmarks, x and y in image pixels -> 52 scores). This module runs the
third one alone, from the same `face_landmarker.task` bundle (`face_blendshapes.tflite`, LiteRT), with the
landmark subset of MediaPipe's `face_blendshapes_graph.cc` (`kLandmarksSubsetIdxs`). On landmarks from
`emogs.face.tracker.FaceTracker` it reproduces the tracker's blendshapes to ~1e-6 (tests/test_face_aus.py).

What it is for: asking what the blendshape estimator reads from a *landmark* motion without rendering pixels,
e.g. a mesh drive's projected motion added to a person's tracked landmarks (`emogs.mesh.drive_calibration`).
It is the estimator's second stage only: what the landmark network sees in a rendered image is not modelled.
"""
from __future__ import annotations

import os
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np

# mediapipe/tasks/cc/vision/face_landmarker/face_blendshapes_graph.cc, kLandmarksSubsetIdxs (146 indices)
LANDMARK_SUBSET: tuple[int, ...] = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80,
    81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152, 153,
    154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246, 249,
    251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314,
    317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382,
    384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473,
    474, 475, 476, 477)
assert len(LANDMARK_SUBSET) == 146

_lock = threading.Lock()
_interp = None


def _interpreter():
    global _interp
    with _lock:
        if _interp is None:
            from ai_edge_litert.interpreter import Interpreter

            from emogs.io.assets import face_landmarker_task

            task = face_landmarker_task()
            out = Path(tempfile.gettempdir()) / f"emogs_face_blendshapes_{os.stat(task).st_size}.tflite"
            if not out.is_file():
                data = zipfile.ZipFile(task).read("face_blendshapes.tflite")
                tmp = out.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, out)
            it = Interpreter(model_path=str(out), num_threads=1)
            it.allocate_tensors()
            if tuple(it.get_input_details()[0]["shape"]) != (1, len(LANDMARK_SUBSET), 2):
                raise RuntimeError(f"unexpected blendshape model input {it.get_input_details()[0]['shape']}")
            _interp = it
        return _interp


def blendshapes_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(..., 478, >= 2) landmarks in image pixels -> (..., 52) blendshape scores (MediaPipe's order,
    `emogs.face.aus.BLENDSHAPE_NAMES`). Landmarks with a non-finite value give NaN scores."""
    lm = np.asarray(landmarks, np.float32)
    if lm.ndim < 2 or lm.shape[-2] != 478 or lm.shape[-1] < 2:
        raise ValueError(f"expected (..., 478, 2+) landmarks, got {lm.shape}")
    flat = lm.reshape(-1, 478, lm.shape[-1])
    it = _interpreter()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = np.full((len(flat), 52), np.nan, np.float32)
    with _lock:
        for k, x in enumerate(flat):
            sub = x[list(LANDMARK_SUBSET), :2]
            if not np.isfinite(sub).all():
                continue
            it.set_tensor(i, np.ascontiguousarray(sub[None]))
            it.invoke()
            out[k] = it.get_tensor(o).reshape(-1)
    return out.reshape(lm.shape[:-2] + (52,))
