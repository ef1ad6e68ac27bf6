"""Action Units read from a fitted ICT-FaceKit expression (the mesh AU estimator).

The fit separates the face's shape (identity coefficients, shared by the clip) from its movement
(per-frame expression coefficients), so AUs can be read from the expression alone. Each AU is the mean of
the ICT coefficients with the names `emogs.face.aus.AU_TABLE` reads from MediaPipe (L/R averaged; ICT
spells `mouthSmileLeft` as `mouthSmile_L`), except where the fitted geometry is the better evidence:
AU06 is ICT's cheekSquint alone (MediaPipe's estimator adds eyeSquint, which is AU07), AU09 is noseSneer
(ICT's shape does move the nose wings), AU25 is the vertical inner-lip opening of the fitted mesh (landmarks
13 and 14 on the surface) beyond the same identity's closed mouth, in cm.

Each channel is taken relative to a neutral reference (`baseline`) and passed through a measured ramp
`clip((x - lo) / (hi - lo), 0, 1)` (`MESH_RAMPS`, calibrated on the MEAD clips by
`scripts/mesh_au_table.py --calibrate`; docs/au_mapping.md and docs/mesh.md compare it with the
blendshape estimator).
"""
from __future__ import annotations

import numpy as np

from emogs.face.aus import AU_NAMES, AU_TABLE
from emogs.mesh.ict import ict_name

# AU -> ICT shapes (averaged); AU25 is the lip-gap channel instead
MESH_AU_SHAPES: dict[str, tuple[str, ...]] = {}
for _s in AU_TABLE:
    names: list[str] = []
    for b in _s.blendshapes:
        if b == "browInnerUp":
            names += ["browInnerUp_L", "browInnerUp_R"]
        else:
            names.append(ict_name(b))
    MESH_AU_SHAPES[_s.au] = tuple(names)
MESH_AU_SHAPES["AU06"] = ("cheekSquint_L", "cheekSquint_R")
MESH_AU_SHAPES["AU25"] = ()
LIP_LANDMARKS = (13, 14)  # MediaPipe inner-lip midpoints (upper, lower)

# (lo, hi) per AU channel, on baseline-relative values (coefficients, or cm for AU25); measured by
# `python scripts/mesh_au_table.py --calibrate` on the 16 MEAD clips (lo: mean over the two neutral clips
# of their 10th percentile; hi: 99th percentile of all frames; minimum span 0.2 (0.1 cm for AU25)).
MESH_RAMPS: dict[str, tuple[float, float]] = {
    "AU01": (0.073, 0.699), "AU02": (0.293, 0.791), "AU04": (0.0, 0.412), "AU05": (0.035, 0.573),
    "AU06": (0.0, 0.228), "AU07": (0.0, 0.28), "AU09": (0.016, 0.328), "AU10": (0.003, 0.465),
    "AU12": (0.015, 0.744), "AU14": (0.032, 0.279), "AU15": (0.007, 0.337), "AU17": (0.016, 0.554),
    "AU20": (0.009, 0.642), "AU23": (0.005, 0.33), "AU25": (0.13, 3.006), "AU26": (0.0, 0.538),
    "AU45": (0.015, 0.4)}
BASELINE_PERCENTILE = 5.0


def lip_gap(model, corr, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """Vertical inner-lip opening (N,) in cm: landmark 13's height above landmark 14 in the model frame,
    minus the same for the identity at zero expression (closed lips). The vertical component, because the
    two inner-lip points also differ in depth (upper lip ahead of the lower), which is no opening."""
    P0, Bi, Be = corr.basis(model)
    a, b = LIP_LANDMARKS
    base = P0[[a, b]] + np.einsum("i,ipk->pk", identity, Bi[:, [a, b]])  # (2, 3)
    pts = base[None] + np.einsum("nj,jpk->npk", np.atleast_2d(expression), Be[:, [a, b]])
    return (pts[:, 0, 1] - pts[:, 1, 1]) - (base[0, 1] - base[1, 1])


def channels(expression: np.ndarray, names, gap: np.ndarray | None = None) -> np.ndarray:
    """Raw AU channels (..., 17): mean of each AU's ICT coefficients; AU25 = `gap` (cm) or, without it,
    jawOpen (the lips part whenever the jaw drops)."""
    e = np.asarray(expression, np.float64)
    names = list(names)
    out = np.zeros(e.shape[:-1] + (len(AU_NAMES),))
    for k, au in enumerate(AU_NAMES):
        shapes = MESH_AU_SHAPES[au]
        if au == "AU25":
            out[..., k] = gap if gap is not None else e[..., names.index("jawOpen")]
        else:
            out[..., k] = e[..., [names.index(s) for s in shapes]].mean(-1)
    return out


def aus_from_expression(expression: np.ndarray, names, gap: np.ndarray | None = None,
                        baseline: str | np.ndarray = "clip", ramps: dict | None = None) -> np.ndarray:
    """Fitted expression coefficients (N, E) [+ lip gap (N,) cm] -> AU intensities (N, 17) in [0, 1].

    baseline: "clip" - each channel minus its `BASELINE_PERCENTILE` over the clip (the person's own rest
                       in this clip; needs a clip that does rest at times);
              "none" - the coefficients as fitted (identity already holds the face's shape);
              an array (17,) - a known neutral (e.g. the channels' percentile on a neutral clip)."""
    ch = channels(expression, names, gap)
    if isinstance(baseline, str):
        if baseline == "clip":
            base = np.percentile(ch, BASELINE_PERCENTILE, axis=0) if ch.ndim > 1 else np.zeros(ch.shape[-1])
        elif baseline == "none":
            base = np.zeros(ch.shape[-1])
        else:
            raise ValueError(f"unknown baseline {baseline!r}")
    else:
        base = np.asarray(baseline, np.float64)
    rel = ch - base
    ramps = ramps or MESH_RAMPS
    lo = np.array([ramps[a][0] for a in AU_NAMES])
    hi = np.array([ramps[a][1] for a in AU_NAMES])
    return np.clip((rel - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def aus_from_landmarks(landmarks: np.ndarray, blendshapes: np.ndarray, size, tracked: np.ndarray | None = None,
                       K: np.ndarray | None = None, baseline: str | np.ndarray = "none"):
    """Fit ICT-FaceKit to a clip's MediaPipe tracks and read its AUs: landmarks (N, 478, 2+) px of an image
    of `size` (S or (width, height)), blendshapes (N, 52) -> (AUs (N, 17), the `MeshFit`)."""
    from emogs.mesh.correspondence import load_correspondence
    from emogs.mesh.fit import fit_landmarks
    from emogs.mesh.ict import load_ict

    model, corr = load_ict(), load_correspondence()
    fit = fit_landmarks(model, corr, landmarks, size, blendshapes, tracked, K)
    gap = lip_gap(model, corr, fit.identity, fit.expression)
    return aus_from_expression(fit.expression, fit.expression_names, gap, baseline), fit


def calibrate(clips: list[np.ndarray], neutral: list[bool]) -> dict[str, tuple[float, float]]:
    """MESH_RAMPS from baseline-relative channels [(N, 17)] of labelled clips (lo: neutral clips' mean
    10th percentile; hi: 99th percentile over all frames, at least lo + 0.2, or + 0.1 cm for AU25)."""
    ramps = {}
    for k, au in enumerate(AU_NAMES):
        lo = float(np.mean([np.percentile(c[:, k], 10) for c, n in zip(clips, neutral) if n]))
        hi = float(np.percentile(np.concatenate([c[:, k] for c in clips]), 99))
        span = 0.1 if au == "AU25" else 0.2
        ramps[au] = (round(lo, 3), round(max(hi, lo + span), 3))
    return ramps
