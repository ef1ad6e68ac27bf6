"""Prepare stage "mesh": fit ICT-FaceKit to the dataset's tracks -> `mesh.npz`; and its report pictures.

`mesh.npz` (docs/architecture.md): identity (I,) f32, expression (N, E) f32 in [0, 1], expression_names (E,),
world_to_cam (N, 4, 4) f64 (world = the ICT model frame, cm, OpenCV camera), K (3, 3) crop px, error_px (N,)
f32 per-frame median landmark reprojection error (crop px), aus (N, 17) f32 (AUs read from the fit,
`emogs.mesh.aus`), correspondence_version, model (where the ICT model was read).
The stage is skipped (with the reason recorded) when ICT-FaceKit is not found and the mode is "auto".
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np

from emogs.errors import InputError
from emogs.io.atomic import atomic_path

MODES = ("auto", "on", "off")
OVERLAY_SECONDS = 3.0
FPS = 25


def mesh_wanted(mode: str) -> tuple[bool, str]:
    """(run the stage, reason when not). "on" without the model is an InputError naming where to get it."""
    from emogs.mesh.ict import find_ict

    if mode == "off":
        return False, "--mesh off"
    try:
        find_ict()
    except InputError as e:
        if mode == "on":
            raise
        return False, f"ICT-FaceKit not found ({e})"
    return True, ""


class Cancelled(Exception):
    """The prepare run was abandoned while the mesh stage ran (another stage failed)."""


def run_mesh(root: Path, size: int, mode: str, log: Callable[[str], None] | None = None,
             cancelled: Callable[[], bool] = lambda: False) -> dict:
    """Fit the clip in `root/tracks.npz`, write `root/mesh.npz`; returns the stage facts. `cancelled()` is
    polled between fitting steps: when it turns true the stage stops (raises `Cancelled`) and writes nothing."""
    import torch

    from emogs.data.progress import Progress
    from emogs.mesh.aus import aus_from_expression, lip_gap
    from emogs.mesh.correspondence import load_correspondence
    from emogs.mesh.fit import FitConfig, fit_landmarks, reprojection_errors
    from emogs.mesh.ict import find_ict, load_ict

    run, why = mesh_wanted(mode)
    if not run:
        (root / "mesh.npz").unlink(missing_ok=True)
        if log:
            log(f"mesh: skipped: {why}")
        return {"skipped": why}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # runs beside the frames / masks stages, which use both cores
    try:
        src = find_ict()
        model = load_ict(src)
        corr = load_correspondence()
        with np.load(root / "tracks.npz") as z:
            lm, bs, tracked, K = z["landmarks"], z["blendshapes"], z["tracked"], z["K"]
        cfg = FitConfig()
        prog = Progress("mesh", cfg.rounds, unit="rounds")

        def step(k: int, n: int) -> None:
            if cancelled():
                raise Cancelled("mesh stage stopped: the prepare run was abandoned")
            prog(k)

        fit = fit_landmarks(model, corr, lm, size, bs, tracked, K, cfg, progress=step)
        prog.close()
        err = reprojection_errors(model, corr, fit, lm)[:, corr.weight > 0]
        gap = lip_gap(model, corr, fit.identity, fit.expression)
        aus = aus_from_expression(fit.expression, fit.expression_names, gap)
        with atomic_path(root / "mesh.npz") as tmp:
            np.savez_compressed(tmp, identity=fit.identity, expression=fit.expression.astype(np.float32),
                                expression_names=np.array(fit.expression_names), world_to_cam=fit.world_to_cam,
                                K=fit.K, error_px=fit.error_px.astype(np.float32), aus=aus,
                                correspondence_version=np.int64(corr.version), model=np.array(str(src)))
    finally:
        torch.set_num_threads(threads)
    s = 512.0 / size
    return {"file": "mesh.npz", "model": str(src), "correspondence_version": corr.version,
            "median_px": round(float(np.median(err)), 3), "p95_px": round(float(np.percentile(err, 95)), 3),
            "median_px_at_512": round(float(np.median(err)) * s, 3), "focal_px": round(float(fit.K[0, 0]), 2),
            "fit_seconds": round(fit.seconds, 2)}


def load_mesh(root: Path) -> dict[str, np.ndarray] | None:
    """The arrays of `root/mesh.npz`, or None when the dataset has no mesh fit."""
    p = Path(root) / "mesh.npz"
    if not p.is_file():
        return None
    with np.load(p) as z:
        return {k: z[k] for k in z.files}


@functools.lru_cache(maxsize=1)
def _face_model():
    from emogs.mesh.ict import load_ict

    return load_ict().submesh(["face"])


def overlay_frames(frames, mesh: dict, indices, alpha: float = 0.5, color=(0.45, 0.7, 1.0)):
    """Yield each frame (S, S, 3) u8 with the fitted ICT face region (shaded, light blue) blended over it."""
    from emogs.mesh.draw import overlay_mesh

    face = _face_model()
    base = face.vertices(mesh["identity"])
    basis = face.expression_basis.reshape(len(face.expression_basis), -1)
    for rgb, i in zip(frames, indices):
        v = base + (mesh["expression"][i] @ basis).reshape(-1, 3)
        yield overlay_mesh(rgb, v, face.triangles, mesh["K"], mesh["world_to_cam"][i], alpha, color)


def overlay_video(root: Path, mesh: dict, seconds: float = OVERLAY_SECONDS) -> int:
    """`report/mesh_overlay.mp4`: the first `seconds` of frames.mp4 with the fitted mesh over them."""
    from emogs.io.media import read_frames, write_video

    n = min(len(mesh["expression"]), int(round(seconds * FPS)))
    frames = (f for _, f in zip(range(n), read_frames(root / "frames.mp4")))
    return write_video(root / "report" / "mesh_overlay.mp4", overlay_frames(frames, mesh, range(n)), fps=FPS,
                       crf=23, preset="veryfast")
