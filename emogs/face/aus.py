"""Facial Action Units (FACS) from MediaPipe blendshapes and landmarks.

FACS = Ekman, Friesen & Hager (2002), *Facial Action Coding System: The Manual* (Research Nexus).
The 17 AUs are OpenFace's intensity set. MediaPipe's 52 blendshapes follow Apple ARKit's names; most
are one muscle action each and map onto one AU (table `AU_TABLE`). Two AUs have no usable blendshape
on real faces (MediaPipe's cheekSquint* and noseSneer* stay ~0): AU06 and AU09 add evidence measured
from the landmarks after removing head pose and face size (`geometry_features`). Every AU is then a
linear ramp `clip((raw - lo) / (hi - lo), 0, 1)` whose `lo`/`hi` were measured on MEAD clips by
`scripts/au_mead_table.py --calibrate` (docs/au_mapping.md has the table, the numbers and the limits).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AU_NAMES: list[str] = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14",
                       "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45"]
UPPER_AUS: list[str] = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU45"]
LOWER_AUS: list[str] = [a for a in AU_NAMES if a not in UPPER_AUS]
AU_INDEX: dict[str, int] = {a: i for i, a in enumerate(AU_NAMES)}

# MediaPipe FaceLandmarker blendshape order (ARKit names; Left/Right = the subject's side).
BLENDSHAPE_NAMES: list[str] = [
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight"]
BS_INDEX: dict[str, int] = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}


@dataclass(frozen=True)
class AUSource:
    au: str
    name: str          # FACS name
    muscle: str        # FACS muscular basis
    blendshapes: tuple[str, ...]  # averaged (L/R pairs are averaged: AU intensity is bilateral)
    geometry: tuple[str, ...]     # landmark features (see GEOMETRY_NAMES) that add evidence
    why: str


# The mapping table. Blendshape meanings from ARKit's ARFaceAnchor.BlendShapeLocation docs (which
# MediaPipe's model was trained to reproduce); AU meanings from the FACS manual (Ekman et al. 2002).
AU_TABLE: list[AUSource] = [
    AUSource("AU01", "inner brow raiser", "frontalis, pars medialis", ("browInnerUp",), (),
             "browInnerUp raises the inner brow ends: the medial frontalis action"),
    AUSource("AU02", "outer brow raiser", "frontalis, pars lateralis", ("browOuterUpLeft", "browOuterUpRight"), (),
             "browOuterUp raises the lateral brow ends"),
    AUSource("AU04", "brow lowerer", "corrugator supercilii, depressor supercilii, procerus",
             ("browDownLeft", "browDownRight"), (), "browDown lowers and draws the brows together"),
    AUSource("AU05", "upper lid raiser", "levator palpebrae superioris", ("eyeWideLeft", "eyeWideRight"), (),
             "eyeWide widens the eye by raising the upper lid"),
    AUSource("AU06", "cheek raiser", "orbicularis oculi, pars orbitalis",
             ("cheekSquintLeft", "cheekSquintRight", "eyeSquintLeft", "eyeSquintRight"), ("cheek_raise",),
             "cheekSquint is the direct match but stays ~0 on real faces; AU06 narrows the eye from below "
             "(eyeSquint) and lifts the infraorbital cheek, which the landmarks measure (cheek_raise)"),
    AUSource("AU07", "lid tightener", "orbicularis oculi, pars palpebralis", ("eyeSquintLeft", "eyeSquintRight"),
             (), "eyeSquint tightens and narrows the lids"),
    AUSource("AU09", "nose wrinkler", "levator labii superioris alaeque nasi", ("noseSneerLeft", "noseSneerRight"),
             ("nose_lip_raise", "ala_raise"),
             "noseSneer is the direct match but stays ~0 on real faces; AU09 pulls the alae and the upper "
             "lip towards the brows, which the landmarks measure (ala_raise, nose_lip_raise)"),
    AUSource("AU10", "upper lip raiser", "levator labii superioris", ("mouthUpperUpLeft", "mouthUpperUpRight"), (),
             "mouthUpperUp raises the upper lip"),
    AUSource("AU12", "lip corner puller", "zygomaticus major", ("mouthSmileLeft", "mouthSmileRight"), (),
             "mouthSmile pulls the lip corners up and back"),
    AUSource("AU14", "dimpler", "buccinator", ("mouthDimpleLeft", "mouthDimpleRight"), (),
             "mouthDimple tightens the lip corners inwards, dimpling the cheek"),
    AUSource("AU15", "lip corner depressor", "depressor anguli oris", ("mouthFrownLeft", "mouthFrownRight"), (),
             "mouthFrown pulls the lip corners down"),
    AUSource("AU17", "chin raiser", "mentalis", ("mouthShrugLower",), (),
             "mouthShrugLower pushes the chin boss and lower lip up"),
    AUSource("AU20", "lip stretcher", "risorius, platysma", ("mouthStretchLeft", "mouthStretchRight"), (),
             "mouthStretch pulls the lip corners laterally"),
    AUSource("AU23", "lip tightener", "orbicularis oris", ("mouthPressLeft", "mouthPressRight"), (),
             "mouthPress tightens and presses the lips (ARKit has no separate AU23/AU24: both land here)"),
    AUSource("AU25", "lips part", "depressor labii, relaxed mentalis / orbicularis oris", ("jawOpen",), ("lip_gap",),
             "AU25 is the lips being apart; with landmarks it is the inner-lip gap itself, without them "
             "jawOpen is the best proxy (the lips part whenever the jaw drops)"),
    AUSource("AU26", "jaw drop", "masseter relaxed, digastric", ("jawOpen",), (),
             "jawOpen lowers the mandible"),
    AUSource("AU45", "blink", "relaxation of levator palpebrae, orbicularis oculi pars palpebralis",
             ("eyeBlinkLeft", "eyeBlinkRight"), (), "eyeBlink closes the lids"),
]
assert [s.au for s in AU_TABLE] == AU_NAMES

# -- landmark geometry -------------------------------------------------------------------------------
# Landmarks that move little with expression (nose ridge and tip, eye corners, face sides at the ears):
# the frame every landmark is expressed in after pose and size are removed. Forehead and glabella
# points are left out on purpose: they move with AU01/02/04 and would drag the frame (measured: with
# them, the cheek appears to rise in angry faces because the frame follows the lowered brows).
RIGID_LANDMARKS: list[int] = [4, 5, 195, 197, 6, 127, 356, 234, 454, 93, 323, 33, 263, 133, 362]
GEOMETRY_NAMES: list[str] = ["cheek_raise", "lid_raise", "eye_aperture", "ala_raise", "nose_lip_raise", "lip_gap"]
# (right, left) landmark pairs; "right" = the subject's right (image left)
_CHEEK = [(117, 346), (118, 347), (119, 348)]  # infraorbital cheek, just below the lower lid orbit
_LOWER_LID, _UPPER_LID = (145, 374), (159, 386)
_EYE_CORNERS = ((33, 133), (263, 362))  # (outer, inner) right eye, left eye
_ALA = (98, 327)  # alar crease / nostril wing base
_NOSE_TIP, _UPPER_LIP, _LIP_IN_UP, _LIP_IN_LOW = 1, 0, 13, 14


def frontalize(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks (..., 478, 3) in pixels (y down, z towards the scene) -> (..., 478, 3) in MediaPipe's
    canonical face frame (cm, y up, z towards the viewer): the similarity (rotation, scale,
    translation) that best maps the `RIGID_LANDMARKS` onto the canonical mesh is applied to all.
    Removes head pose and face size, so distances are comparable across frames and people."""
    from emogs.face.camera import canonical_face_mesh

    canon = canonical_face_mesh()[0].astype(np.float64)[RIGID_LANDMARKS]  # (K, 3)
    P = np.asarray(landmarks, np.float64) * np.array([1.0, -1.0, -1.0])  # (..., 478, 3) y up, z to viewer
    src = P[..., RIGID_LANDMARKS, :]
    ms, md = src.mean(-2, keepdims=True), canon.mean(0)
    a, b = src - ms, canon - md
    H = a.swapaxes(-1, -2) @ b  # (..., 3, 3)
    U, S, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.ones(S.shape)
    D[..., 2] = d
    R = (U * D[..., None, :]) @ Vt  # row-vector rotation: a @ R ~ b
    s = (S * D).sum(-1) / (a ** 2).sum((-1, -2))
    return s[..., None, None] * ((P - ms) @ R) + md


def geometry_features(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks (..., 478, 3) px -> (..., G) features in canonical cm (`GEOMETRY_NAMES`), each oriented so
    that larger = more of the action:
    cheek_raise     infraorbital cheek height (mean of 117/118/119 and 346/347/348) [AU06, also AU09/AU10]
    lid_raise       lower-lid centre (145/374) above the eye-corner line [AU06, AU07]
    eye_aperture    upper (159/386) minus lower (145/374) lid height [AU05 up, AU06/07/45 down]
    ala_raise       alae (98/327) height relative to the nose tip (1) [AU09]
    nose_lip_raise  minus the nose-tip (1) to upper-lip (0) height [AU09, AU10]
    lip_gap         inner-lip gap, 13 to 14 [AU25]
    Face size is the canonical face's (inter-ocular ~8.9 cm), since `frontalize` normalises scale."""
    F = frontalize(landmarks)
    y = F[..., 1]
    cheek = np.mean([y[..., [r, l]].mean(-1) for r, l in _CHEEK], 0)
    corner_y = [(y[..., o] + y[..., i]) / 2 for o, i in _EYE_CORNERS]
    lid = ((y[..., _LOWER_LID[0]] - corner_y[0]) + (y[..., _LOWER_LID[1]] - corner_y[1])) / 2
    aperture = ((y[..., _UPPER_LID[0]] - y[..., _LOWER_LID[0]]) + (y[..., _UPPER_LID[1]] - y[..., _LOWER_LID[1]])) / 2
    ala = y[..., list(_ALA)].mean(-1) - y[..., _NOSE_TIP]
    nose_lip = -(y[..., _NOSE_TIP] - y[..., _UPPER_LIP])
    gap = np.linalg.norm(F[..., _LIP_IN_UP, :] - F[..., _LIP_IN_LOW, :], axis=-1)
    return np.stack([cheek, lid, aperture, ala, nose_lip, gap], -1)


def canonical_geometry() -> np.ndarray:
    """`geometry_features` of MediaPipe's canonical (average, neutral) face: (G,)."""
    from emogs.face.camera import canonical_face_mesh

    v = canonical_face_mesh()[0].astype(np.float64)
    lm = np.concatenate([v, np.zeros((10, 3))]) * np.array([1.0, -1.0, -1.0])  # back to image axes
    return geometry_features(lm)


# -- from evidence to AU intensities ----------------------------------------------------------------
# Evidence channels: blendshape averages ("bs:" + AU) and baseline-relative landmark features ("geo:" + name).
# Each channel becomes [0, 1] through RAMPS[channel] = (lo, hi): clip((x - lo) / (hi - lo), 0, 1).
# Measured by `python scripts/au_mead_table.py --calibrate` on the 16 MEAD clips (both speakers):
# (`GEO_RAMPS` for landmark channels, per baseline)
# lo = mean over the two neutral clips of their 10th percentile (the resting value: MediaPipe's
# browInnerUp, for one, rests at ~0.4-0.6 on neutral faces), hi = 99th percentile over all frames
# of all clips, with a minimum span (0.3 for blendshapes, 0.1 cm for geometry) so that a channel that
# barely moves on MEAD (cheekSquint, noseSneer) is not blown up into noise.
RAMPS: dict[str, tuple[float, float]] = {  # measured: 2 speakers x 8 emotions
    "bs:AU01": (0.437, 0.929), "bs:AU02": (0.433, 0.928), "bs:AU04": (0.0, 0.356), "bs:AU05": (0.029, 0.437),
    "bs:AU06": (0.0, 0.3), "bs:AU06_squint": (0.087, 0.779), "bs:AU07": (0.087, 0.779), "bs:AU09": (0.0, 0.3),
    "bs:AU10": (0.001, 0.792), "bs:AU12": (0.0, 0.753), "bs:AU14": (0.01, 0.351), "bs:AU15": (0.0, 0.3),
    "bs:AU17": (0.001, 0.301), "bs:AU20": (0.0, 0.325), "bs:AU23": (0.005, 0.305), "bs:AU25": (0.004, 0.762),
    "bs:AU26": (0.004, 0.762), "bs:AU45": (0.017, 0.417),
}
# Landmark channels depend on the baseline (`relative_geometry`); an explicit array uses the "clip" ramps.
GEO_RAMPS: dict[str, dict[str, tuple[float, float]]] = {
    "clip": {"geo:cheek_raise": (-0.04, 0.187), "geo:lid_raise": (-0.029, 0.152),
             "geo:eye_aperture": (-0.057, 0.177), "geo:ala_raise": (-0.059, 0.387),
             "geo:nose_lip_raise": (-0.243, 0.717), "geo:lip_gap": (0.502, 4.104)},
    "canonical": {"geo:cheek_raise": (-0.035, 0.21), "geo:lid_raise": (-0.053, 0.356),
                  "geo:eye_aperture": (0.398, 0.943), "geo:ala_raise": (-0.078, 0.252),
                  "geo:nose_lip_raise": (0.06, 0.815), "geo:lip_gap": (0.502, 4.104)},
}


def _bs_mean(bs: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    return bs[..., [BS_INDEX[n] for n in names]].mean(-1)


def channels(blendshapes: np.ndarray, geometry: np.ndarray | None) -> dict[str, np.ndarray]:
    """Raw evidence (...,) per channel name. `geometry` (..., G) is baseline-relative (see `relative_geometry`)."""
    bs = np.asarray(blendshapes, np.float64)
    ch: dict[str, np.ndarray] = {}
    for src in AU_TABLE:
        names = src.blendshapes
        if src.au == "AU06":  # the direct match, and eyeSquint as a separate channel
            ch["bs:AU06"] = _bs_mean(bs, ("cheekSquintLeft", "cheekSquintRight"))
            ch["bs:AU06_squint"] = _bs_mean(bs, ("eyeSquintLeft", "eyeSquintRight"))
            continue
        ch["bs:" + src.au] = _bs_mean(bs, names)
    if geometry is not None:
        g = np.asarray(geometry, np.float64)
        for j, n in enumerate(GEOMETRY_NAMES):
            ch["geo:" + n] = g[..., j]
    return ch


# Blendshapes that do not describe facial expression (gaze) are left out of the "how expressive is this
# frame" score used to find a clip's resting frames.
_REST_SCORE_BS = [i for i, n in enumerate(BLENDSHAPE_NAMES) if n != "_neutral" and not n.startswith("eyeLook")]


def rest_frames(blendshapes: np.ndarray, fraction: float = 0.1, min_frames: int = 5) -> np.ndarray:
    """Indices of a clip's least expressive frames: lowest sum of expression blendshapes. (N, 52) -> (K,)."""
    score = np.asarray(blendshapes, np.float64)[:, _REST_SCORE_BS].sum(-1)
    k = min(len(score), max(min_frames, int(round(fraction * len(score)))))
    return np.argsort(score, kind="stable")[:k]


def relative_geometry(landmarks: np.ndarray, baseline: str | np.ndarray = "auto",
                      blendshapes: np.ndarray | None = None) -> np.ndarray:
    """Landmark features (..., G) minus a per-face neutral reference, so that they measure movement.

    baseline: "canonical" - MediaPipe's canonical (average) face. Works per frame and keeps the sign of
                        a movement, but a face that differs from the average (e.g. a shorter upper lip)
                        gets a constant offset (docs/au_mapping.md measures it).
              "clip"  - the median features of the clip's least expressive 10% of frames (lowest sum of
                        expression blendshapes; needs `blendshapes` (N, 52) and a time axis): a
                        person-specific neutral, in the spirit of OpenFace's person-specific
                        normalisation (Baltrusaitis et al. 2015). A clip that holds one expression
                        throughout has no resting frame and reads too low.
              array (G,) - an explicit neutral reference, e.g. the `geometry_features` of a neutral clip.
              "auto"  - "clip" for a sequence of at least 25 frames with blendshapes, else "canonical"
                        (what `emogs analyze`, `prepare` and every caller that passes whole clips get).
    `lip_gap` is always absolute (closed lips are a physical zero).
    """
    g = geometry_features(landmarks)  # (..., G)
    baseline = resolve_baseline(baseline, g.shape[:-1], blendshapes is not None)
    if isinstance(baseline, str):
        if baseline == "clip":
            if g.ndim != 2 or blendshapes is None:
                raise ValueError("baseline='clip' needs landmarks (N, 478, 3) and blendshapes (N, 52)")
            base = np.median(g[rest_frames(blendshapes)], axis=0)
        elif baseline == "canonical":
            base = canonical_geometry()
        else:
            raise ValueError(f"unknown baseline {baseline!r}")
    else:
        base = np.asarray(baseline, np.float64)
    base = base.copy()
    base[..., GEOMETRY_NAMES.index("lip_gap")] = 0.0
    return g - base


def resolve_baseline(baseline: str | np.ndarray, lead_shape: tuple[int, ...], has_blendshapes: bool) -> str | np.ndarray:
    """"auto" -> "clip" for (N >= 25,) sequences with blendshapes, else "canonical"; others unchanged."""
    if isinstance(baseline, str) and baseline == "auto":
        return "clip" if len(lead_shape) == 1 and lead_shape[0] >= 25 and has_blendshapes else "canonical"
    return baseline


def _ramp(x: np.ndarray, channel: str, baseline: str | np.ndarray = "canonical") -> np.ndarray:
    table = RAMPS if channel.startswith("bs:") else GEO_RAMPS[baseline if isinstance(baseline, str) else "clip"]
    lo, hi = table[channel]
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def aus_from_blendshapes(blendshapes: np.ndarray, landmarks: np.ndarray | None = None,
                         baseline: str | np.ndarray = "auto") -> np.ndarray:
    """MediaPipe blendshapes (..., 52) [+ landmarks (..., 478, 3) px] -> AU intensities (..., 17) in [0, 1].

    Without landmarks AU06 is eyeSquint (so it equals AU07), AU09 is noseSneer (nearly always ~0) and
    AU25 follows jawOpen. With landmarks AU06 adds the cheek raise, AU09 the ala and upper-lip raise and
    AU25 is the measured lip gap. `baseline`: see `relative_geometry` (used only with landmarks); the
    default "auto" uses the clip's own resting frames for (N >= 25, 478, 3) sequences (as `emogs analyze`
    does) and MediaPipe's canonical face for single frames and short snippets.
    """
    bs = np.asarray(blendshapes, np.float64)
    if bs.shape[-1] != len(BLENDSHAPE_NAMES):
        raise ValueError(f"expected (..., 52) blendshapes, got {bs.shape}")
    if landmarks is not None:
        baseline = resolve_baseline(baseline, np.shape(landmarks)[:-2], True)
    geo = None if landmarks is None else relative_geometry(landmarks, baseline, bs)
    ch = channels(bs, geo)
    r = {k: _ramp(v, k, baseline) for k, v in ch.items()}
    out = {au: r["bs:" + au] for au in AU_NAMES if "bs:" + au in r}
    if geo is None:
        out["AU06"] = np.maximum(r["bs:AU06"], r["bs:AU06_squint"])
    else:
        out["AU06"] = np.maximum(r["bs:AU06"], 0.5 * (r["bs:AU06_squint"] + r["geo:cheek_raise"]))
        out["AU09"] = np.maximum(r["bs:AU09"], 0.5 * (r["geo:ala_raise"] + r["geo:nose_lip_raise"]))
        out["AU25"] = r["geo:lip_gap"]
    return np.stack([out[a] for a in AU_NAMES], -1).astype(np.float32)


def calibrate(clips: list[tuple[np.ndarray, np.ndarray]], neutral: list[bool],
              baseline: str | np.ndarray = "canonical") -> dict[str, tuple[float, float]]:
    """Measure RAMPS from clips [(blendshapes (N, 52), landmarks (N, 478, 3))] and which of them are neutral."""
    per = [channels(bs, relative_geometry(lm, baseline, bs)) for bs, lm in clips]
    ramps: dict[str, tuple[float, float]] = {}
    for k in per[0]:
        lo = float(np.mean([np.percentile(c[k], 10) for c, n in zip(per, neutral) if n]))
        hi = float(np.percentile(np.concatenate([c[k] for c in per]), 99))
        span = 0.3 if k.startswith("bs:") else 0.1
        ramps[k] = (round(lo, 3), round(max(hi, lo + span), 3))
    return ramps
