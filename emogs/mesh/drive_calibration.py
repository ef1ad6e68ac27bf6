"""Per-person AU drive gains: how far a mesh-rigged head's ICT shapes must go for the AU analysis to read an AU edit.

Why: the blendshape estimator (`emogs.face.aus`, the AU scale of `analyze`, of the AU tokens a head is trained
with, and of `eval-controls`' judge) reads the same brow motion very differently on different faces. Its AU01 ramp
starts at browInnerUp 0.437, where MEAD's neutral faces rest; macron's face rests at 0.025, so a brow raise that
reads as a strong AU01 on a MEAD speaker reads as nearly nothing on him (measured: a MEAD level-3 surprise's
landmark motion moved onto macron's tracked landmarks reads AU01 +0.03 / +0.08, docs/control_proof.md). The
table's gains (`emogs.mesh.au_table.AU_GAIN`) are geometric (a real AU's landmark change on MEAD) and the same for
everyone; these gains put an edit on the analysis's scale *for this person*.

How (pure arrays in; no rendering): on a subset of the person's tracked training frames, each AU's ICT shapes
(`emogs.mesh.au_table.AU_DRIVES`) are moved from the frame's fitted expression by gain x the AU's way from the
person's default to 1; the landmark motion the fitted mesh makes (the MediaPipe -> ICT correspondence points,
projected with the frame's fitted camera) is added to the frame's tracked landmarks; MediaPipe's blendshape stage
(`emogs.face.blendshape_stage`) and the AU analysis (clip baseline from the frames' resting frames, as
eval-controls uses) read the result. The gain is the smallest one on a grid (never below the table's gain, at most
`max_gain`) at which the AU's mean reading rises by at least `target` x (1 - its plain reading); where no gain up
to `max_gain` gets there, `max_gain` (and `reached` False).

What it does not model: how much of the mesh's motion a render shows the landmark network (the Gaussians, the
residual, the texture); that is measured on renders (`scripts/au_judge_probe.py head`, docs/control_proof.md).
The gains exaggerate the geometry where the estimator is blind on a face (ICT's browInnerUp at 1 already moves the
inner brows 1.9x as far as a real strong MEAD surprise, docs/mesh.md): they are a choice (`emogs calibrate-drive`), not the default.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# AUs whose drive is calibrated: the jaw (AU25 / AU26, also driven by the speech prior) and the blink (eyeBlink
# cannot go past a closed lid) keep the table's gains
CALIBRATED_AUS: tuple[str, ...] = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14",
                                   "AU15", "AU17", "AU20", "AU23")


@dataclass(frozen=True)
class DriveCalibrationConfig:
    target: float = 0.5       # the AU's reading at intensity 1 must rise by target x (1 - plain reading)
    max_gain: float = 2.0     # largest gain tried (ICT's shapes are linear: past 1 they extrapolate)
    step: float = 0.1         # gain grid step
    max_frames: int = 48      # tracked training frames used (evenly spaced)
    aus: tuple[str, ...] = CALIBRATED_AUS


def project(points: np.ndarray, w2c: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, P, 3) model-frame points, (N, 4, 4) world -> OpenCV camera, (3, 3) K -> (N, P, 2) pixels."""
    c = np.einsum("nij,npj->npi", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    z = np.maximum(c[..., 2], 1e-6)
    return np.stack([K[0, 0] * c[..., 0] / z + K[0, 2], K[1, 1] * c[..., 1] / z + K[1, 2]], -1)


def person_drive_gains(landmarks: np.ndarray, blendshapes: np.ndarray, lm_neutral: np.ndarray,
                       lm_identity: np.ndarray, lm_expression: np.ndarray, identity: np.ndarray,
                       expression: np.ndarray, w2c: np.ndarray, K: np.ndarray, names: list[str],
                       default_au: np.ndarray, table_gain: dict[str, float], cfg: DriveCalibrationConfig,
                       read=None) -> dict:
    """-> {"gains": {AU: gain}, "aus": {AU: {gain, reached, plain, rise_at_gain, rise_at_table, curve}}}.

    landmarks (N, 478, 3) tracked pixels, blendshapes (N, 52) their scores; lm_* the correspondence points as a
    linear model (`emogs.mesh.correspondence.Correspondence.basis`): (478, 3), (I, 478, 3), (E, 478, 3); identity
    (I,), expression (N, E) fitted, w2c (N, 4, 4), K (3, 3) the fit's camera; names the E expression names;
    default_au (17,) the person's default AUs; `read(landmarks) -> (N, 17)` the AU reading (default: the
    blendshape stage + `aus_from_blendshapes` with the frames' clip baseline)."""
    from emogs.face.aus import AU_NAMES, aus_from_blendshapes, geometry_features, rest_frames
    from emogs.mesh.au_table import drive_matrix

    L = np.asarray(landmarks, np.float64)
    if read is None:
        from emogs.face.blendshape_stage import blendshapes_from_landmarks

        base = np.median(geometry_features(L[rest_frames(blendshapes)]), axis=0)

        def read(lm):
            return aus_from_blendshapes(blendshapes_from_landmarks(lm), lm, baseline=base)

    rest = lm_neutral + np.einsum("i,ipc->pc", np.asarray(identity, np.float64), lm_identity)  # (478, 3)
    E = np.asarray(expression, np.float64)
    P0 = project(rest + np.einsum("ne,epc->npc", E, lm_expression), w2c, K)
    r0 = read(L)
    M = drive_matrix(names, list(AU_NAMES))  # (17, E), uncalibrated rows
    out: dict = {"gains": {}, "aus": {}}
    for au in cfg.aus:
        a = AU_NAMES.index(au)
        amount = max(0.0, 1.0 - float(default_au[a]))
        g0 = max(1.0, float(table_gain.get(au, 1.0)))
        if amount < 1e-3 or not M[a].any():
            continue
        plain = float(np.nanmean(r0[:, a]))
        need = cfg.target * (1.0 - plain)
        top = max(cfg.max_gain, g0)  # a table gain above max_gain is kept (never weaker than the table)
        curve, chosen, reached = [], top, False
        g = g0
        while g <= top + 1e-9:
            moved = L.copy()
            d = project(rest + np.einsum("ne,epc->npc", E + g * amount * M[a][None], lm_expression), w2c, K) - P0
            moved[..., :2] += d
            rise = float(np.nanmean(read(moved)[:, a] - r0[:, a]))
            curve.append((round(g, 3), round(rise, 4)))
            if rise >= need:
                chosen, reached = g, True
                break
            g = round(g + cfg.step, 6)
        out["gains"][au] = round(float(chosen), 3)
        out["aus"][au] = dict(gain=round(float(chosen), 3), reached=reached, plain=round(plain, 4),
                              need=round(need, 4), table_gain=g0, curve=curve)
    return out


def calibrate_dataset(root, default_au: np.ndarray, cfg: DriveCalibrationConfig = DriveCalibrationConfig()) -> dict:
    """`person_drive_gains` on a prepared dataset with a mesh fit (tracks.npz + mesh.npz; ICT-FaceKit needed)."""
    from pathlib import Path

    from emogs.errors import InputError
    from emogs.mesh.au_table import AU_GAIN
    from emogs.mesh.correspondence import load_correspondence
    from emogs.mesh.ict import load_ict

    root = Path(root)
    for f in ("tracks.npz", "mesh.npz"):
        if not (root / f).is_file():
            raise InputError(f"{root}: no {f}; the drive calibration needs a dataset prepared with the mesh stage")
    t, m = np.load(root / "tracks.npz"), np.load(root / "mesh.npz")
    model, corr = load_ict(), load_correspondence()
    names = [str(n) for n in m["expression_names"]]
    if names != list(model.expression_names):
        raise InputError(f"{root}: the mesh fit names other expression shapes than this ICT-FaceKit model")
    ok = np.flatnonzero(t["tracked"])
    if len(ok) < 10:
        raise InputError(f"{root}: fewer than 10 tracked frames")
    ids = ok[np.linspace(0, len(ok) - 1, min(cfg.max_frames, len(ok))).round().astype(int)]
    n0, ib, eb = corr.basis(model)
    res = person_drive_gains(t["landmarks"][ids], t["blendshapes"][ids], n0.astype(np.float64),
                             ib.astype(np.float64), eb.astype(np.float64), m["identity"], m["expression"][ids],
                             m["world_to_cam"][ids].astype(np.float64), m["K"].astype(np.float64), names,
                             np.asarray(default_au, np.float64), AU_GAIN, cfg)
    res.update(method=__doc__.split("\n\n")[2].replace("\n", " "), frames=len(ids), target=cfg.target,
               max_gain=cfg.max_gain, step=cfg.step)
    return res
