"""AU -> ICT-FaceKit expression coefficients: what each of the 17 Action Units drives at intensity 1.

The inverse of the analysis mapping (`emogs.face.aus.AU_TABLE`, docs/au_mapping.md; `emogs.mesh.aus` reads
AUs from fitted coefficients through the same names): each AU drives the ARKit-named shapes its analysis
reads, on both sides (AU intensities are bilateral). Muscles and appearance changes from FACS: P. Ekman,
W. V. Friesen, J. C. Hager, *Facial Action Coding System: The Manual* (2002). docs/mesh.md has the table
with the reasons; `tests/test_mesh_au_table.py` checks the round trip table -> coefficients -> analysis ->
the same AU (and no other AU above a small threshold, except AU25 with AU26 either way: FACS codes a jaw drop
with parted lips as 25+26, ICT's jawOpen parts the lips, and a wide lip parting needs the jaw).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AUDrive:
    au: str
    facs: str                   # FACS name
    muscle: str                 # FACS muscular basis
    shapes: dict[str, float]    # ICT expression name -> coefficient at AU intensity 1
    why: str


AU_DRIVES: list[AUDrive] = [
    AUDrive("AU01", "inner brow raiser", "frontalis, pars medialis", {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0},
            "raises the medial brow ends; browInnerUp is that movement"),
    AUDrive("AU02", "outer brow raiser", "frontalis, pars lateralis", {"browOuterUp_L": 1.0, "browOuterUp_R": 1.0},
            "raises the lateral brow ends"),
    AUDrive("AU04", "brow lowerer", "corrugator supercilii, depressor supercilii, procerus",
            {"browDown_L": 1.0, "browDown_R": 1.0}, "lowers the brows and draws them together"),
    AUDrive("AU05", "upper lid raiser", "levator palpebrae superioris", {"eyeWide_L": 1.0, "eyeWide_R": 1.0},
            "raises the upper lid, widening the eye"),
    AUDrive("AU06", "cheek raiser", "orbicularis oculi, pars orbitalis", {"cheekSquint_L": 1.0, "cheekSquint_R": 1.0},
            "lifts the infraorbital cheek and narrows the eye from below; ICT's cheekSquint is that geometry"),
    AUDrive("AU07", "lid tightener", "orbicularis oculi, pars palpebralis", {"eyeSquint_L": 1.0, "eyeSquint_R": 1.0},
            "tightens the lids, raising the lower lid"),
    AUDrive("AU09", "nose wrinkler", "levator labii superioris alaeque nasi", {"noseSneer_L": 1.0, "noseSneer_R": 1.0},
            "pulls the nose wings and the skin beside the nose up"),
    AUDrive("AU10", "upper lip raiser", "levator labii superioris", {"mouthUpperUp_L": 1.0, "mouthUpperUp_R": 1.0},
            "raises the upper lip"),
    AUDrive("AU12", "lip corner puller", "zygomaticus major", {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0},
            "pulls the lip corners up and back"),
    AUDrive("AU14", "dimpler", "buccinator", {"mouthDimple_L": 1.0, "mouthDimple_R": 1.0},
            "tightens the lip corners inwards, dimpling the cheek"),
    AUDrive("AU15", "lip corner depressor", "depressor anguli oris (triangularis)",
            {"mouthFrown_L": 1.0, "mouthFrown_R": 1.0}, "pulls the lip corners down"),
    AUDrive("AU17", "chin raiser", "mentalis", {"mouthShrugLower": 1.0},
            "pushes the chin boss and the lower lip up"),
    AUDrive("AU20", "lip stretcher", "risorius with platysma", {"mouthStretch_L": 1.0, "mouthStretch_R": 1.0},
            "pulls the lip corners laterally"),
    AUDrive("AU23", "lip tightener", "orbicularis oris", {"mouthPress_L": 1.0, "mouthPress_R": 1.0},
            "tightens and narrows the lips; ARKit has no separate AU23 / AU24 (lip pressor) shape"),
    AUDrive("AU25", "lips part", "depressor labii inferioris, or relaxation of mentalis / orbicularis oris",
            {"mouthLowerDown_L": 1.0, "mouthLowerDown_R": 1.0},
            "the lower lip is drawn down; a wider parting than it gives (0.675 cm) adds jawOpen (the analysis "
            "reads the lip opening)"),
    AUDrive("AU26", "jaw drop", "masseter relaxed; temporalis, internal pterygoid relaxed", {"jawOpen": 1.0},
            "the mandible lowers; ICT's jawOpen also parts the lips (FACS 25+26)"),
    AUDrive("AU45", "blink", "relaxation of levator palpebrae superioris; orbicularis oculi, pars palpebralis",
            {"eyeBlink_L": 1.0, "eyeBlink_R": 1.0}, "closes the lids"),
]
AU_DRIVE: dict[str, AUDrive] = {d.au: d for d in AU_DRIVES}

# How far the shapes must go for an AU at intensity 1 to move the face as much as a strong real expression:
# real / ICT change of a landmark feature, measured on the MEAD level-3 clips of both speakers by
# `scripts/calibrate_au_drive.py` (docs/mesh/au_drive.json, docs/mesh.md). ICT's lip-corner depressor moves
# the corners a third of what a real AU15 does, its lid raiser a little less than a real AU05; the brow, smile
# and cheek shapes already reach a real strong expression at 1 (measured gains 0.17-1.09), and a drive is
# never made weaker than its shape at 1. Rendering moves a shape by gain x the AU's change from the person's
# default (`drive_matrix(calibrated=True)`, emogs.Avatar.expressions); the analysis mapping and its round trip
# (`au_to_expression`) use the uncalibrated table.
AU_GAIN: dict[str, float] = {"AU05": 1.2, "AU15": 2.5}  # the shapes go past 1 (linear, extrapolated) only here
# AUs that a drive is expected to raise besides its own (anatomical co-occurrence)
CO_ACTIVATION: dict[str, tuple[str, ...]] = {"AU26": ("AU25",), "AU25": ("AU26",)}


# AU25's analysis channel is the vertical inner-lip opening (cm, `emogs.mesh.aus.lip_gap`), not a
# coefficient. On ICT's mean face mouthLowerDown_L/R = 1 opens the lips 0.675 cm and jawOpen 3.26 cm per
# unit (both linear; measured by tests/test_mesh_au_table.py): AU25 uses the lower lip first and the jaw
# beyond its reach (then AU26 co-activates: FACS codes a wide lip parting as 25+26).
AU25_GAP_LOWER_LIP = 0.675
AU25_GAP_PER_JAW = 3.26


def au_coefficient(au: str, intensity, ramps: dict | None = None):
    """The value the AU's analysis channel must take at `intensity` in [0, 1]: the inverse of the analysis
    ramp (`emogs.mesh.aus.MESH_RAMPS`, baseline "none"), so that the analysis reads `intensity` back. A
    coefficient value, or for AU25 the lip opening in cm."""
    from emogs.mesh.aus import MESH_RAMPS

    lo, hi = (ramps or MESH_RAMPS)[au]
    return np.where(np.asarray(intensity) > 0, lo + np.asarray(intensity, np.float64) * (hi - lo), 0.0)


def au_to_expression(aus, names: tuple[str, ...] | list[str], au_names: list[str] | None = None,
                     ramps: dict | None = None, clip: bool = True) -> np.ndarray:
    """AU intensities (..., A) (or a {AU: intensity} dict) -> ICT expression coefficients (..., E) in the
    order `names` (e.g. `FaceModel.expression_names`): each AU's shapes (`AU_DRIVES`) at
    `au_coefficient(AU, intensity)`. Contributions add; `clip` keeps them in [0, 1]."""
    from emogs.face.aus import AU_NAMES

    au_names = list(au_names or AU_NAMES)
    if isinstance(aus, dict):
        v = np.zeros(len(au_names), np.float32)
        for k, x in aus.items():
            v[au_names.index(k)] = x
        aus = v
    a = np.asarray(aus, np.float64)
    coef = np.stack([au_coefficient(au, a[..., i], ramps) for i, au in enumerate(au_names)], -1)  # (..., A)
    jaw = np.zeros(a.shape[:-1])
    if "AU25" in au_names:  # a lip opening in cm: the lower lip first, the jaw beyond it
        k = au_names.index("AU25")
        gap = coef[..., k].copy()
        coef[..., k] = np.minimum(1.0, gap / AU25_GAP_LOWER_LIP)
        jaw = np.maximum(0.0, gap - AU25_GAP_LOWER_LIP) / AU25_GAP_PER_JAW
    out = coef @ drive_matrix(names, au_names)
    if "jawOpen" in names:
        out[..., list(names).index("jawOpen")] += jaw
    return (np.clip(out, 0.0, 1.0) if clip else out).astype(np.float32)


def drive_matrix(names, au_names: list[str] | None = None, calibrated: bool = False,
                 gains: dict[str, float] | None = None) -> np.ndarray:
    """(A, E) matrix: row a = the pattern of coefficients AU a drives (weights of `AU_DRIVES`); with
    `calibrated`, times the measured `AU_GAIN` (what rendering a mesh-rigged head uses: emogs.Avatar), where
    `gains` (AU -> gain, e.g. a run's person calibration, `emogs.mesh.drive_calibration`) overrides it."""
    from emogs.face.aus import AU_NAMES

    au_names = list(au_names or AU_NAMES)
    names = list(names)
    table = {**AU_GAIN, **(gains or {})}
    M = np.zeros((len(au_names), len(names)), np.float32)
    for i, au in enumerate(au_names):
        g = table.get(au, 1.0) if calibrated else 1.0
        for shape, w in AU_DRIVE[au].shapes.items():
            if shape in names:
                M[i, names.index(shape)] = w * g
    return M
