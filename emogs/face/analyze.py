"""`emogs analyze`: per-frame facial analysis to an OpenFace-FeatureExtraction-like CSV.

Columns: frame, timestamp, success, confidence, pose_Rx, pose_Ry, pose_Rz (rad), pose_Tx, pose_Ty,
pose_Tz (cm), AU01_r ... AU45_r (in [0, 1]), the 52 blendshape scores (MediaPipe names) and, with
`landmarks=True`, x_0..x_477, y_0..y_477 (pixels). Rows where no face was found have success 0 and
zeros elsewhere (a warning says how many); a clip with no face in any frame is an error and no CSV is
written. Frames are analysed at the video's native rate (no resampling), upright (display rotation
honoured).
"""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from emogs.errors import InputError
from emogs.face.aus import AU_NAMES, BLENDSHAPE_NAMES, aus_from_blendshapes
from emogs.face.camera import head_pose
from emogs.face.tracker import NUM_LANDMARKS, FaceTracker
from emogs.io.atomic import atomic_path

POSE_COLUMNS = ["pose_Rx", "pose_Ry", "pose_Rz", "pose_Tx", "pose_Ty", "pose_Tz"]
AU_COLUMNS = [f"{a}_r" for a in AU_NAMES]


def csv_columns(landmarks: bool = False) -> list[str]:
    cols = ["frame", "timestamp", "success", "confidence", *POSE_COLUMNS, *AU_COLUMNS, *BLENDSHAPE_NAMES]
    if landmarks:
        cols += [f"x_{i}" for i in range(NUM_LANDMARKS)] + [f"y_{i}" for i in range(NUM_LANDMARKS)]
    return cols


def analyze_frames(frames: Iterable[np.ndarray], fps: float, total: int | None = None,
                   progress: bool = False, baseline: str = "auto") -> dict[str, np.ndarray]:
    """Track RGB uint8 frames (H, W, 3) shown at `fps`; returns arrays over the N frames:
    timestamp (N,) s, success (N,) bool, confidence (N,), num_faces (N,) int, landmarks (N, 478, 3) px,
    blendshapes (N, 52), transform (N, 4, 4), pose_R (N, 3) rad, pose_T (N, 3) cm, aus (N, 17).
    Untracked frames hold zeros (transform: identity). AUs use blendshapes + landmarks; `baseline`
    is the landmark-geometry reference (`emogs.face.aus.relative_geometry`; "auto" = the clip's own
    resting frames among the tracked ones, for clips of 25+ tracked frames)."""
    lms, bss, tfs, conf, ok, nf = [], [], [], [], [], []
    t0 = time.monotonic()
    with FaceTracker(video_mode=True) as tr:
        for i, rgb in enumerate(frames):
            res = tr.track(rgb, int(round(i * 1000.0 / fps)))
            ok.append(res is not None)
            if res is None:
                lms.append(np.zeros((NUM_LANDMARKS, 3), np.float32))
                bss.append(np.zeros(len(BLENDSHAPE_NAMES), np.float32))
                tfs.append(np.eye(4))
                conf.append(0.0)
                nf.append(0)
            else:
                lms.append(res.landmarks)
                bss.append(res.blendshapes)
                tfs.append(res.transform)
                conf.append(res.confidence)
                nf.append(res.num_faces)
            if progress and (i + 1) % 50 == 0:
                _progress(i + 1, total, time.monotonic() - t0)
    if progress:
        _progress(len(ok), total, time.monotonic() - t0, end=True)
    n = len(ok)
    out: dict[str, np.ndarray] = {
        "timestamp": np.arange(n) / fps, "success": np.array(ok, bool), "confidence": np.array(conf, np.float32),
        "num_faces": np.array(nf, np.int32),
        "landmarks": np.array(lms, np.float32).reshape(n, NUM_LANDMARKS, 3),
        "blendshapes": np.array(bss, np.float32).reshape(n, len(BLENDSHAPE_NAMES)),
        "transform": np.array(tfs, np.float64).reshape(n, 4, 4)}
    pose_R, pose_T = head_pose(out["transform"])
    ok_ = out["success"]
    out["pose_R"] = np.where(ok_[:, None], pose_R, 0.0).astype(np.float32)
    out["pose_T"] = np.where(ok_[:, None], pose_T, 0.0).astype(np.float32)
    aus = np.zeros((n, len(AU_NAMES)), np.float32)
    if ok_.any():
        aus[ok_] = aus_from_blendshapes(out["blendshapes"][ok_], out["landmarks"][ok_], baseline=baseline)
    out["aus"] = aus
    return out


AU_SOURCES = ("blendshapes", "mesh")


def analyze_video(video: str | Path, out_csv: str | Path, landmarks: bool = False, progress: bool = True,
                  max_seconds: float | None = None, overwrite: bool = True,
                  au_source: str = "blendshapes") -> dict[str, np.ndarray]:
    """Analyse every frame of `video` at its native fps and write the CSV atomically. Returns the arrays.
    The output is checked first (not the input, writable; an existing file only with `overwrite`).
    InputError when no frame shows a face (nothing is written).

    au_source: "blendshapes" - AUs from MediaPipe's blendshapes and landmarks (`aus_from_blendshapes`);
               "mesh" - AUs read from an ICT-FaceKit fit of the clip's tracked frames (`emogs.mesh.aus`;
               needs the ICT-FaceKit model, docs/mesh.md)."""
    from emogs.io.media import probe, read_frames
    from emogs.io.paths import output_file

    if au_source not in AU_SOURCES:
        raise InputError(f"--au-source must be one of {', '.join(AU_SOURCES)}, got {au_source!r}")
    if au_source == "mesh":
        from emogs.mesh.ict import find_ict

        find_ict()  # InputError naming where to get it, before any work
    video = Path(video)
    info = probe(video)  # InputError for a missing / unreadable file or no video stream
    output_file(out_csv, inputs=[video], force=overwrite, what="output CSV")
    total = info.num_frames if max_seconds is None else min(info.num_frames, int(round(max_seconds * info.fps)))
    res = analyze_frames(read_frames(video, max_seconds=max_seconds), info.fps, total=total, progress=progress)
    n, found = len(res["success"]), int(res["success"].sum())
    if n == 0:
        raise InputError(f"{video}: no decodable video frames")
    if found == 0:
        raise InputError(f"{video}: no face found in any of the {n} frames (faces smaller than about a tenth "
                         "of the frame, or turned far away, are not detected); nothing written")
    ok = res["success"]
    if au_source == "mesh" and ok.sum() >= 2:
        from emogs.mesh.aus import aus_from_landmarks

        aus = np.zeros_like(res["aus"])
        aus[ok], _ = aus_from_landmarks(res["landmarks"][ok], res["blendshapes"][ok], (info.width, info.height))
        res["aus"] = aus
    write_csv(out_csv, res, landmarks=landmarks)
    if found < n:
        print(f"analyze: warning: no face in {n - found} of {n} frames (their rows have success 0)",
              file=sys.stderr)
    if progress:
        print(f"analyze: {found}/{n} frames with a face -> {out_csv}", file=sys.stderr)
    return res


def write_csv(path: str | Path, res: dict[str, np.ndarray], landmarks: bool = False) -> None:
    """Write `analyze_frames` output in the OpenFace-like layout (atomically)."""
    n = len(res["success"])
    cols = [np.arange(n)[:, None], res["timestamp"][:, None], res["success"][:, None].astype(int),
            res["confidence"][:, None], res["pose_R"], res["pose_T"], res["aus"], res["blendshapes"]]
    fmts = ["%d", "%.3f", "%d", "%.3f", *["%.4f"] * 6, *["%.4f"] * len(AU_NAMES), *["%.5f"] * len(BLENDSHAPE_NAMES)]
    if landmarks:
        cols += [res["landmarks"][:, :, 0], res["landmarks"][:, :, 1]]
        fmts += ["%.2f"] * (2 * NUM_LANDMARKS)
    table = np.concatenate([np.asarray(c, np.float64) for c in cols], 1)  # (N, C)
    with atomic_path(path) as tmp:
        np.savetxt(tmp, table, fmt=fmts, delimiter=",", header=",".join(csv_columns(landmarks)), comments="")


def read_analysis_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Read an analyze CSV back: every column by name (float arrays) plus stacked arrays
    `aus` (N, 17), `blendshapes` (N, 52), `pose_R` (N, 3), `pose_T` (N, 3), `success` (N,) bool and,
    when present, `landmarks` (N, 478, 2)."""
    from emogs.io.paths import input_file

    path = input_file(path, "an analysis CSV")
    with open(path, newline="") as f:
        header = next(csv.reader(f), None)
    if not header or "AU01_r" not in header:
        raise InputError(f"{path}: not an emogs/OpenFace analysis CSV (no AU01_r column)")
    header = [h.strip() for h in header]
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    out: dict[str, np.ndarray] = {h: data[:, i] for i, h in enumerate(header)}
    out["aus"] = np.stack([out[c] for c in AU_COLUMNS], 1) if data.size else np.zeros((0, len(AU_NAMES)))
    if all(b in out for b in BLENDSHAPE_NAMES):
        out["blendshapes"] = np.stack([out[b] for b in BLENDSHAPE_NAMES], 1)
    out["pose_R"] = np.stack([out[c] for c in POSE_COLUMNS[:3]], 1)
    out["pose_T"] = np.stack([out[c] for c in POSE_COLUMNS[3:]], 1)
    out["success"] = out["success"] > 0.5
    if "x_0" in out:
        out["landmarks"] = np.stack([np.stack([out[f"x_{i}"] for i in range(NUM_LANDMARKS)], 1),
                                     np.stack([out[f"y_{i}"] for i in range(NUM_LANDMARKS)], 1)], -1)
    return out


def _progress(done: int, total: int | None, elapsed: float, end: bool = False) -> None:
    rate = done / elapsed if elapsed > 0 else 0.0
    of = f"/{total}" if total and total >= done else ""  # the container's frame count is an estimate
    print(f"\ranalyze: {done}{of} frames, {rate:.0f} frames/s", end="\n" if end else "", file=sys.stderr,
          flush=True)
