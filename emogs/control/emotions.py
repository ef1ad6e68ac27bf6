"""Emotion presets from the FACS / EMFACS prototypes (docs/controls.md has the table and citations).

Prototype AU combinations: Ekman & Friesen (1978) FACS; Friesen & Ekman (1983) EMFACS-7; as tabulated in
Ekman, Friesen & Hager (2002) FACS Investigator's Guide and Matsumoto et al. (2008). Intensities at
INTENSITY = 1 are ours: a clear, natural expression around FACS level D (0.8) for the defining AUs,
with the prototype's own letter where it gives one (5B -> 0.4). FACS letters map A..E -> 0.2..1.0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emogs.control.defaults import EMOTION_NAMES as _NAMES
from emogs.control.names import AU_INDEX, AU_NAMES, NUM_AUS
from emogs.control.parse import EmotionSpec

# AUs a preset never touches unless its prototype names them: blinks, and the speech-articulation AUs
# (lips part / jaw drop) that the audio drives.
PRESERVED_AUS: tuple[str, ...] = ("AU45", "AU25", "AU26")


@dataclass(frozen=True)
class Emotion:
    name: str
    facs: str                 # the prototype as published
    aus: dict[str, float]     # our realisation at intensity 1
    note: str = ""


EMOTIONS: dict[str, Emotion] = {e.name: e for e in (
    Emotion("happy", "6+12", {"AU06": 0.8, "AU12": 1.0}),
    Emotion("sad", "1+4+15", {"AU01": 0.8, "AU04": 0.6, "AU15": 0.8}),
    Emotion("surprised", "1+2+5B+26", {"AU01": 0.9, "AU02": 0.9, "AU05": 0.4, "AU26": 0.6},
            "5B = slight upper-lid raise"),
    Emotion("fear", "1+2+4+5+7+20+26",
            {"AU01": 0.8, "AU02": 0.6, "AU04": 0.6, "AU05": 0.8, "AU07": 0.4, "AU20": 0.7, "AU26": 0.5}),
    Emotion("angry", "4+5+7+23", {"AU04": 1.0, "AU05": 0.6, "AU07": 0.7, "AU23": 0.8}),
    Emotion("disgusted", "9+15+16", {"AU09": 0.9, "AU10": 0.5, "AU15": 0.5},
            "AU16 (lower lip depressor) is not in the 17-AU set; AU10 (upper lip raiser, EMFACS's other "
            "disgust family) stands in"),
    Emotion("contempt", "R12A+R14A", {"AU12": 0.4, "AU14": 0.7},
            "unilateral (right side) in FACS; the AU tracks have no laterality, so this is bilateral and "
            "reads as a tight smirk; raised above trace (A) so it is visible"),
    Emotion("neutral", "-", {}, "all preset-scope AUs pulled to 0"),
)}
EMOTION_NAMES: tuple[str, ...] = tuple(EMOTIONS)
if EMOTION_NAMES != _NAMES:
    raise ImportError("emogs.control.defaults.EMOTION_NAMES must list the presets of EMOTIONS in order")


def emotion_scope(name: str) -> np.ndarray:
    """(17,) bool: the AUs a preset sets (all but PRESERVED_AUS, plus any AU its prototype names)."""
    emo = EMOTIONS[name]
    scope = np.array([n not in PRESERVED_AUS or n in emo.aus for n in AU_NAMES])
    return scope


def emotion_vector(name: str) -> np.ndarray:
    """(17,) float: the preset's AU values at intensity 1 (0 for scope AUs it does not name)."""
    v = np.zeros(NUM_AUS)
    for au, x in EMOTIONS[name].aus.items():
        v[AU_INDEX[au]] = x
    return v


def emotion_layer(spec: EmotionSpec, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """-> value (F, 17), weight (F, 17). Blended as au = (1 - w) * below + w * value with w = intensity on
    the preset's scope: on a neutral base this is exactly prototype * intensity; intensity 0 changes nothing."""
    value = np.broadcast_to(emotion_vector(spec.name), (num_frames, NUM_AUS)).copy()
    weight = np.zeros((num_frames, NUM_AUS))
    weight[:, emotion_scope(spec.name)] = spec.intensity
    return value, weight
