"""Per-frame tracks from time-stamped data: AU timelines (CSV / JSON / YAML), ease windows, resampling,
mirror looping and light smoothing.

Frame i of a clip at `fps` is sampled at time t_i = i / fps seconds (the start of the frame's audio window).
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emogs.control.names import AU_INDEX, NUM_AUS, is_au_like, normalize_au
from emogs.control.parse import check_unit
from emogs.errors import InputError

TIME_COLUMNS = ("time", "timestamp")  # seconds; preferred over `frame`
FRAME_COLUMN = "frame"                # 0-based frame index at the render fps (25)


# --- small track helpers ---------------------------------------------------------------------------
def frame_times(num_frames: int, fps: float) -> np.ndarray:
    """(F,) float64 sample times in seconds."""
    return np.arange(num_frames, dtype=np.float64) / fps


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def ease_window(times: np.ndarray, start: float, end: float | None, ease: float,
                clip_end: float) -> np.ndarray:
    """(F,) weight in [0, 1]: 0 outside [start, end), 1 inside, with smoothstep ramps of `ease` seconds
    placed inside the range (shortened to half the range if it is short). No ramp at the clip's start
    or end (nothing to pop from there). ease = 0 gives a hard step over the half-open [start, end)."""
    end_ = clip_end if end is None else min(end, clip_end)
    r = min(ease, (end_ - start) / 2.0)
    if r <= 0:
        return ((times >= start) & (times < end_)).astype(np.float64)
    w_in = np.ones_like(times) if start <= 0 else smoothstep((times - start) / r)
    w_out = np.ones_like(times) if end_ >= clip_end else smoothstep((end_ - times) / r)
    w = w_in * w_out
    w[(times < start) | (times > end_)] = 0.0
    return w


def mirror_indices(n_src: int, num_frames: int) -> np.ndarray:
    """(F,) indices 0, 1, .., n-1, n-2, .., 1, 0, 1, ..: a ping-pong loop with no jump at the turn."""
    if n_src <= 0:
        raise ValueError("empty source")
    i = np.arange(num_frames)
    if n_src == 1:
        return np.zeros(num_frames, np.int64)
    period = 2 * (n_src - 1)
    k = i % period
    return np.where(k < n_src, k, period - k).astype(np.int64)


def fit_length(track: np.ndarray, num_frames: int, mode: str = "loop") -> np.ndarray:
    """Stretch a (N, ...) track to (F, ...): truncate if longer; if shorter, 'loop' (mirror) or 'hold'."""
    n = len(track)
    if n >= num_frames:
        return track[:num_frames]
    if mode == "loop":
        return track[mirror_indices(n, num_frames)]
    if mode == "hold":
        return track[np.minimum(np.arange(num_frames), n - 1)]
    raise ValueError(f"unknown fit mode {mode!r}")


def resample_track(times: np.ndarray, values: np.ndarray, fps: float) -> np.ndarray:
    """Dense (K, D) samples at increasing `times` (s) -> (N, D) at i / fps for i covering [0, times[-1]],
    linearly interpolated, held before the first sample."""
    n = int(math.floor(times[-1] * fps + 1e-6)) + 1
    t = frame_times(n, fps)
    return np.stack([np.interp(t, times, values[:, d]) for d in range(values.shape[1])], axis=1)


def smooth_track(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian temporal smoothing along axis 0 (edges held)."""
    if sigma_frames <= 0 or len(x) < 2:
        return x
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(x, sigma_frames, axis=0, mode="nearest")


# --- tables (CSV) ----------------------------------------------------------------------------------
def read_csv_table(path: str | Path) -> dict[str, list[str]]:
    """CSV -> {stripped column name: list of cell strings}. OpenFace pads names with spaces; we strip."""
    from emogs.io.paths import input_file

    path = input_file(path, "--au-timeline")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: not a readable CSV file ({type(e).__name__})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise InputError(f"{path}: CSV needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise InputError(f"{path}: duplicate CSV columns {dup}")
    cols: dict[str, list[str]] = {h: [] for h in header}
    for ln, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise InputError(f"{path}: line {ln} has {len(r)} cells, the header has {len(header)}")
        for h, c in zip(header, r):
            cols[h].append(c.strip())
    return cols


def _column_floats(path: Path, name: str, cells: list[str], allow_empty: bool) -> np.ndarray:
    out = np.full(len(cells), np.nan)
    for i, c in enumerate(cells):
        if c == "" or c.lower() in ("nan", "na"):
            if not allow_empty:
                raise InputError(f"{path}: column '{name}' is empty on line {i + 2}")
            continue
        try:
            out[i] = float(c)
        except ValueError:
            raise InputError(f"{path}: column '{name}', line {i + 2}: '{c}' is not a number") from None
    return out


def csv_time_and_columns(path: str | Path,
                         fps: float) -> tuple[np.ndarray, dict[str, np.ndarray], list[str], np.ndarray]:
    """Read a time-stamped CSV: returns times (K,) s, {stripped column: (K,) float with NaN for empty},
    notes, and a (K,) keep mask (False where a `success` column says tracking failed)."""
    path = Path(path)
    table = read_csv_table(path)
    lower = {h.lower(): h for h in table}
    notes: list[str] = []
    tcol = next((lower[c] for c in TIME_COLUMNS if c in lower), None)
    if tcol is not None:
        times = _column_floats(path, tcol, table[tcol], allow_empty=False)
    elif FRAME_COLUMN in lower:
        times = _column_floats(path, lower[FRAME_COLUMN], table[lower[FRAME_COLUMN]], allow_empty=False) / fps
    else:
        raise InputError(f"{path}: needs a 'time' (seconds) or 'frame' column; found {list(table)[:8]}")
    if np.any(times < 0):
        raise InputError(f"{path}: negative time on line {int(np.argmax(times < 0)) + 2}")
    keep = np.ones(len(times), bool)
    if "success" in lower:
        keep = _column_floats(path, "success", table[lower["success"]], allow_empty=True) != 0
        if not keep.any():
            raise InputError(f"{path}: no row has success=1 (no face tracked)")
        if not keep.all():
            notes.append(f"{int((~keep).sum())} rows with success=0 skipped (interpolated over)")
    cols = {h: _column_floats(path, h, v, allow_empty=True) for h, v in table.items()
            if is_au_like(h) or h.lower().startswith("pose_")}
    return times, cols, notes, keep


# --- AU timelines ----------------------------------------------------------------------------------
@dataclass
class Timeline:
    """Sparse per-AU keyframes: au -> (times (K,) s strictly increasing, values (K,) in [0, 1])."""
    points: dict[str, tuple[np.ndarray, np.ndarray]]
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def end_time(self) -> float:
        return max(float(t[-1]) for t, _ in self.points.values())

    @property
    def start_time(self) -> float:
        return min(float(t[0]) for t, _ in self.points.values())

    def to_frames(self, num_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """-> values (F, 17), weight (F, 17) (1 on the AUs the timeline names), warnings.
        Linear between keyframes, the first value held before the first keyframe and the last held after
        the last; keyframes past the clip are dropped (truncated) with a warning."""
        t = frame_times(num_frames, fps)
        values = np.zeros((num_frames, NUM_AUS))
        weight = np.zeros((num_frames, NUM_AUS))
        for au, (kt, kv) in self.points.items():
            values[:, AU_INDEX[au]] = np.interp(t, kt, kv)
            weight[:, AU_INDEX[au]] = 1.0
        warns: list[str] = []
        dur, last = num_frames / fps, (num_frames - 1) / fps
        if self.end_time > last + 1.0 / fps + 1e-6:
            warns.append(f"timeline {self.source} runs to {self.end_time:.2f} s but the audio lasts {dur:.2f} s: "
                         f"truncated")
        elif self.end_time < last - 1.0 / fps - 1e-6:
            warns.append(f"timeline {self.source} ends at {self.end_time:.2f} s but the audio lasts {dur:.2f} s: "
                         f"last values held")
        return values, weight, warns


def _add_point(points: dict[str, list[tuple[float, float]]], au: str, t: float, v: float, where: str) -> None:
    if not math.isfinite(v):
        raise InputError(f"{where}: {au} value is not a finite number")
    check_unit(v, f"{where}: {au}")
    points.setdefault(au, []).append((t, v))


def _finish(points: dict[str, list[tuple[float, float]]], source: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not points:
        raise InputError(f"{source}: no AU values found (columns/keys like AU12 or AU12_r)")
    out = {}
    for au, pts in points.items():
        pts.sort(key=lambda p: p[0])
        ts = np.array([p[0] for p in pts])
        if np.any(np.diff(ts) <= 0):
            dup = float(ts[np.argmax(np.diff(ts) <= 0)])
            raise InputError(f"{source}: {au} has two keyframes at {dup:g} s")
        out[au] = (ts, np.array([p[1] for p in pts]))
    return dict(sorted(out.items(), key=lambda kv: AU_INDEX[kv[0]]))


def load_timeline_csv(path: str | Path, fps: float = 25.0) -> Timeline:
    """CSV with `time` (or `timestamp`, s) or `frame` (0-based at `fps`) and AU columns (`AU12` or
    `AU12_r`): the `emogs analyze` layout loads directly. Empty cells = no keyframe for that AU there;
    `success`=0 rows are skipped; other columns are ignored (AU-like unknown ones with a note)."""
    path = Path(path)
    times, cols, notes, keep = csv_time_and_columns(path, fps)
    by_au: dict[str, str] = {}
    for h in cols:
        if not is_au_like(h):
            continue
        try:
            au = normalize_au(h)
        except InputError:
            notes.append(f"column '{h}' ignored (not one of the 17 AUs)")
            continue
        if au in by_au:
            raise InputError(f"{path}: columns '{by_au[au]}' and '{h}' both give {au}")
        by_au[au] = h
    points: dict[str, list[tuple[float, float]]] = {}
    for au, h in by_au.items():
        col = cols[h]
        for i in np.flatnonzero(keep & ~np.isnan(col)):
            _add_point(points, au, float(times[i]), float(col[i]), f"{path} line {i + 2}")
    return Timeline(_finish(points, str(path)), str(path), notes)


def _timeline_fps(path: Path, value: object) -> float:
    """The file's "fps" (the rate its "frame" keys count in): a positive finite number."""
    try:
        fps = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        fps = float("nan")
    if isinstance(value, bool) or not math.isfinite(fps) or fps <= 0:
        raise InputError(f"{path}: \"fps\" must be a positive number (the rate of the \"frame\" keys), "
                         f"got {value!r}")
    return fps


def load_timeline_keyframes(path: str | Path, fps: float = 25.0) -> Timeline:
    """JSON / YAML: {"keyframes": [{"time": 1.0, "AU12": 0.5, "AU01": 0.2}, {"frame": 50, "AU12": 0}]}
    (a bare list of keyframes is accepted too). Each AU is interpolated between the keyframes that name it."""
    from emogs.io.paths import input_file

    path = input_file(path, "--au-timeline")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (JSON or YAML keyframes expected)") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # json.JSONDecodeError, yaml.YAMLError
        raise InputError(f"{path}: not valid {path.suffix[1:].upper()} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(data, dict):
        extra = set(data) - {"keyframes", "fps"}
        if extra or "keyframes" not in data:
            raise InputError(f"{path}: expected {{\"keyframes\": [...]}}; unexpected keys {sorted(extra)}"
                             if extra else f"{path}: missing the \"keyframes\" list")
        if "fps" in data:
            fps = _timeline_fps(path, data["fps"])
        data = data["keyframes"]
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: \"keyframes\" must be a non-empty list of objects")
    points: dict[str, list[tuple[float, float]]] = {}
    for k, kf in enumerate(data):
        where = f"{path} keyframe {k}"
        if not isinstance(kf, dict):
            raise InputError(f"{where}: must be an object like {{\"time\": 1.0, \"AU12\": 0.5}}")
        if ("time" in kf) == ("frame" in kf):
            raise InputError(f"{where}: give exactly one of 'time' (s) or 'frame'")
        try:
            t = float(kf["time"]) if "time" in kf else float(kf["frame"]) / fps
            vals = {key: float(v) for key, v in kf.items() if key not in ("time", "frame")}
        except (TypeError, ValueError):
            raise InputError(f"{where}: times and AU values must be numbers") from None
        if not math.isfinite(t) or t < 0:
            raise InputError(f"{where}: time must be >= 0")
        if not vals:
            raise InputError(f"{where}: no AU values")
        for key, v in vals.items():
            _add_point(points, normalize_au(key), t, v, where)
    return Timeline(_finish(points, str(path)), str(path))


def load_timeline(path: str | Path, fps: float = 25.0) -> Timeline:
    """Dispatch on the extension: .csv, .json, .yaml / .yml."""
    from emogs.io.paths import input_file

    ext = input_file(path, "--au-timeline").suffix.lower()
    if ext == ".csv":
        return load_timeline_csv(path, fps)
    if ext in (".json", ".yaml", ".yml"):
        return load_timeline_keyframes(path, fps)
    raise InputError(f"{path}: --au-timeline takes a .csv, .json, .yaml or .yml file")
