"""Control defaults defined once, in a module light enough for the CLI's argument parser (no numpy)."""
from __future__ import annotations

DEFAULT_EASE = 0.2  # seconds of smoothstep ramp at each end of a ranged --au
EMOTION_NAMES: tuple[str, ...] = ("happy", "sad", "surprised", "fear", "angry", "disgusted", "contempt", "neutral")
