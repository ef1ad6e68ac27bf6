"""--au-from / --pose-from: another video's AU tracks and head motion, via `emogs analyze`.

The source is analysed once (a CSV in the `emogs analyze` layout is accepted directly and not re-analysed),
resampled to the render fps, fitted to the audio's length (mirror loop by default, or hold the last frame;
longer sources are truncated) and lightly smoothed (Gaussian, sigma 1 frame = 40 ms: removes tracker jitter,
keeps 150 ms blinks).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emogs.control.names import AU_INDEX, NUM_AUS, is_au_like, normalize_au
from emogs.control.timeline import csv_time_and_columns, fit_length, resample_track, smooth_track
from emogs.errors import InputError

SMOOTH_SIGMA_FRAMES = 1.0
FIT_MODES = ("loop", "hold")
_POSE_R = ("pose_Rx", "pose_Ry", "pose_Rz")
_POSE_T = ("pose_Tx", "pose_Ty", "pose_Tz")


@dataclass
class SourceTracks:
    """A source video's analysis at its own timestamps (rows where tracking failed removed)."""
    path: str
    times: np.ndarray                  # (K,) s, increasing
    au: np.ndarray                     # (K, 17), NaN-free on present AUs
    au_present: np.ndarray             # (17,) bool
    pose_R: np.ndarray | None = None   # (K, 3) Euler rad (emogs.face.camera.head_pose convention)
    pose_T: np.ndarray | None = None   # (K, 3) cm
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return float(self.times[-1])


def read_analysis(csv_path: str | Path, source: str | None = None, fps: float = 25.0) -> SourceTracks:
    """Parse an `emogs analyze` CSV (timestamp, success, AUxx_r, pose_R*/pose_T* columns)."""
    csv_path = Path(csv_path)
    times, cols, notes, keep = csv_time_and_columns(csv_path, fps)
    au = np.zeros((len(times), NUM_AUS))
    present = np.zeros(NUM_AUS, bool)
    for h, v in cols.items():
        if not is_au_like(h):
            continue
        try:
            i = AU_INDEX[normalize_au(h)]
        except InputError:
            continue
        if present[i]:
            raise InputError(f"{csv_path}: two columns give {normalize_au(h)}")
        au[:, i], present[i] = v, True
    if not present.any():
        raise InputError(f"{csv_path}: no AU columns (AU01_r ... AU45_r)")
    keep &= ~np.isnan(au[:, present]).any(axis=1)
    pose_R = pose_T = None
    if all(c in cols for c in _POSE_R + _POSE_T):
        pose_R = np.stack([cols[c] for c in _POSE_R], 1)
        pose_T = np.stack([cols[c] for c in _POSE_T], 1)
        keep &= np.isfinite(pose_R).all(1) & np.isfinite(pose_T).all(1)
        pose_R, pose_T = pose_R[keep], pose_T[keep]
    if not keep.any():
        raise InputError(f"{csv_path}: no usable rows (no face tracked)")
    times = times[keep]
    if np.any(np.diff(times) <= 0):
        raise InputError(f"{csv_path}: timestamps are not increasing")
    au = au[keep]
    top = float(np.max(au[:, present]))
    if top > 1.0 + 1e-3 or np.min(au[:, present]) < -1e-3:
        hint = " (OpenFace's 0-5 scale? divide by 5)" if top <= 5.0 + 1e-3 else ""
        raise InputError(f"{csv_path}: AU values outside [0, 1] (max {top:.2f}){hint}")
    return SourceTracks(source or str(csv_path), times, np.clip(au, 0, 1), present, pose_R, pose_T, notes)


def analyze_source(path: str | Path, cache: dict[str, SourceTracks] | None = None,
                   max_seconds: float | None = None) -> SourceTracks:
    """Analyse a video with `emogs.face.analyze.analyze_video` (or read an analysis CSV). Cached by path
    so --au-from and --pose-from on the same video analyse it once. `max_seconds`: analyse only the start
    of a long video (what is past the audio's length is cut anyway)."""
    path = Path(path)
    key = str(path.resolve())
    if cache is not None and key in cache:
        return cache[key]
    from emogs.io.paths import input_file

    input_file(path, "the source video or CSV")
    if path.suffix.lower() == ".csv":
        src = read_analysis(path)
    else:
        from emogs.face.analyze import analyze_video  # lazy: MediaPipe is heavy

        with tempfile.TemporaryDirectory(prefix="emogs_from_") as tmp:
            csv_path = Path(tmp) / "analysis.csv"
            analyze_video(path, csv_path, max_seconds=max_seconds)
            src = read_analysis(csv_path, source=str(path))
    if cache is not None:
        cache[key] = src
    return src


def _fit(src: SourceTracks, values: np.ndarray, num_frames: int, fps: float, mode: str) -> np.ndarray:
    if mode not in FIT_MODES:
        raise InputError(f"unknown fit mode '{mode}'; choose from {', '.join(FIT_MODES)}")
    dense = resample_track(src.times, values, fps) if len(src.times) > 1 else values[:1]
    return smooth_track(fit_length(dense, num_frames, mode), SMOOTH_SIGMA_FRAMES)


def describe_fit(src: SourceTracks, num_frames: int, fps: float, mode: str) -> str:
    dur = num_frames / fps
    if src.duration + 1.0 / fps >= dur - 1e-6:
        return f"{src.duration + 1.0 / fps:.2f} s source, first {dur:.2f} s used"
    how = "mirror-looped" if mode == "loop" else "last frame held"
    return f"{src.duration + 1.0 / fps:.2f} s source, {how} to {dur:.2f} s"


def au_layer_from_source(src: SourceTracks, num_frames: int, fps: float = 25.0,
                         mode: str = "loop") -> tuple[np.ndarray, np.ndarray]:
    """-> value (F, 17) in [0, 1], weight (F, 17) (1 on the AUs the source provides)."""
    value = np.zeros((num_frames, NUM_AUS))
    p = src.au_present
    value[:, p] = np.clip(_fit(src, src.au[:, p], num_frames, fps, mode), 0, 1)
    weight = np.zeros((num_frames, NUM_AUS))
    weight[:, p] = 1.0
    return value, weight


def motion_from_source(src: SourceTracks, num_frames: int, fps: float = 25.0, mode: str = "loop") -> np.ndarray:
    """-> (F, 4, 4) head-frame motion relative to the source's median pose."""
    from emogs.control.pose import make_world_to_cam, relative_motion, world_to_cam_from_head_pose
    from scipy.spatial.transform import Rotation

    if src.pose_R is None:
        raise InputError(f"{src.path}: the analysis has no head pose columns (pose_Rx .. pose_Tz)")
    motion = relative_motion(world_to_cam_from_head_pose(src.pose_R, src.pose_T))  # (K, 4, 4)
    rt = np.concatenate([Rotation.from_matrix(motion[:, :3, :3]).as_rotvec(), motion[:, :3, 3]], 1)  # (K, 6)
    rt = _fit(src, rt, num_frames, fps, mode)
    return make_world_to_cam(Rotation.from_rotvec(rt[:, :3]).as_matrix(), rt[:, 3:])
