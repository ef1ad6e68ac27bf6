"""The project's time base, defined once: every dataset, run and render is at 25 fps with 16 kHz mono
audio, so frame i covers audio samples [640 i, 640 (i + 1))."""
from __future__ import annotations

FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
