"""The FER2013 classifier (fer tflite) used by the metrics: it lives in `emogs.face.fer` (training reads its
per-frame scores too: `emogs.data.fer_features`); re-exported here for the metrics' callers."""
from emogs.face.fer import FER_LABELS, UNMAPPED, FerClassifier, haar_cascade_path, normalize_label  # noqa: F401
