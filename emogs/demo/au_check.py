"""Did the controls do anything? Measure AUs on the demo's rendered MP4s (what a user gets) with MediaPipe.

AU edit: mean measured AU inside the fully-eased window vs outside any ramp, on the edited render and on the
plain render of the same speech (the control); `effect` = the edit's in-minus-out change minus the plain
render's. Emotion: mean measured AUs of the preset on the emotion render vs the plain render.
All three renders share one landmark-geometry reference (the plain render's least expressive frames), as
`emogs eval` does, so the numbers compare.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emogs.control.names import AU_INDEX, AU_NAMES

FPS = 25.0
MIN_ANALYSIS_SIZE = 256  # small renders are upscaled before MediaPipe (its detector misses tiny faces)


def read_render(path: Path, left_half: bool = False) -> np.ndarray:
    """(F, H, W, 3) uint8 frames of an MP4; the left half for a side-by-side file."""
    from emogs.io.media import read_frames

    frames = np.stack(list(read_frames(path)))
    return np.ascontiguousarray(frames[:, :, : frames.shape[2] // 2]) if left_half else frames


def _upscaled(frames: np.ndarray):
    import cv2

    h = frames.shape[1]
    k = int(np.ceil(MIN_ANALYSIS_SIZE / h)) if h < MIN_ANALYSIS_SIZE else 1
    for f in frames:
        yield f if k == 1 else cv2.resize(f, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)


def track(frames: np.ndarray) -> dict[str, np.ndarray]:
    """MediaPipe landmarks + blendshapes of every frame (emogs.face.analyze)."""
    from emogs.face.analyze import analyze_frames

    return analyze_frames(_upscaled(frames), FPS, total=len(frames))


def shared_baseline(ref: dict[str, np.ndarray]) -> np.ndarray:
    """Geometry reference: median features of the reference clip's least expressive tracked frames."""
    from emogs.face.aus import geometry_features, rest_frames

    ok = ref["success"]
    if ok.sum() < 3:
        raise RuntimeError("the plain render has fewer than 3 frames with a detected face")
    return np.median(geometry_features(ref["landmarks"][ok][rest_frames(ref["blendshapes"][ok])]), axis=0)


def measured_aus(res: dict[str, np.ndarray], base: np.ndarray) -> np.ndarray:
    """(F, 17) AUs with the shared baseline; NaN where no face was found."""
    from emogs.face.aus import aus_from_blendshapes

    ok = res["success"]
    out = np.full((len(ok), len(AU_NAMES)), np.nan, np.float32)
    if ok.any():
        out[ok] = aus_from_blendshapes(res["blendshapes"][ok], res["landmarks"][ok], baseline=base)
    return out


def json_safe(v: Any) -> Any:
    """NaN -> None (strict JSON), numpy scalars -> Python, recursively."""
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else float(v)
    return int(v) if isinstance(v, np.integer) else v


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def requested_plan(run: Path, num_frames: int, au: str | None = None, emotion: str | None = None):
    """The ControlPlan the render used (same defaults as Avatar.render: training-mean base, blinks seed 0)."""
    from emogs.control.plan import build_plan
    from emogs.io.atomic import read_json

    default = np.asarray(read_json(run / "dataset.json")["au_mean"], np.float32)
    return build_plan(num_frames, FPS, au=[au] if au else None, emotion=emotion, default_au=default)


def edit_stats(edit: np.ndarray, plain: np.ndarray, plan, au: str) -> dict[str, Any]:
    """In-window (user share 1) vs outside (user share 0) means of one AU on the edit and the plain render."""
    i = AU_INDEX[au]
    inside, outside = plan.mask[:, i] >= 0.999, plan.mask[:, i] <= 0.0
    n = min(len(edit), len(plain), len(inside))
    inside, outside = inside[:n], outside[:n]
    e, p = edit[:n, i], plain[:n, i]
    r = dict(au=au, frames_in=int(inside.sum()), frames_out=int(outside.sum()),
             requested_in=_mean(plan.au[:n, i][inside]), requested_out=_mean(plan.au[:n, i][outside]),
             edit_in=_mean(e[inside]), edit_out=_mean(e[outside]),
             plain_in=_mean(p[inside]), plain_out=_mean(p[outside]))
    r["edit_delta"] = r["edit_in"] - r["edit_out"]
    r["plain_delta"] = r["plain_in"] - r["plain_out"]
    r["effect"] = r["edit_delta"] - r["plain_delta"]
    return r


def emotion_stats(emo: np.ndarray, plain: np.ndarray, emotion: str) -> dict[str, Any]:
    """Mean measured AUs of the preset (its named AUs) on the emotion render vs the plain render."""
    from emogs.control.emotions import EMOTIONS

    name = emotion.split(":")[0]
    n = min(len(emo), len(plain))
    rows = {a: dict(emotion=_mean(emo[:n, AU_INDEX[a]]), plain=_mean(plain[:n, AU_INDEX[a]]))
            for a in EMOTIONS[name].aus}
    for v in rows.values():
        v["delta"] = v["emotion"] - v["plain"]
    return dict(emotion=emotion, aus=rows)


def au_check(out: Path, au_edit: str, emotion: str) -> dict[str, Any]:
    """Analyse DEMO/videos/*.mp4, write DEMO/au_check.png, return the numbers (for au_check.json)."""
    from emogs.control.parse import parse_au_spec

    vids = out / "videos"
    raw = {"plain": track(read_render(vids / "speech.mp4")),
           "au_edit": track(read_render(vids / "au_edit.mp4", left_half=True)),
           "emotion": track(read_render(vids / "emotion.mp4"))}
    base = shared_baseline(raw["plain"])
    m = {k: measured_aus(v, base) for k, v in raw.items()}
    au = parse_au_spec(au_edit)[0].au
    F = len(m["plain"])
    plan_e = requested_plan(out / "run", F, au=au_edit)
    plan_m = requested_plan(out / "run", F, emotion=emotion)
    res = dict(au_edit=edit_stats(m["au_edit"], m["plain"], plan_e, au),
               emotion=emotion_stats(m["emotion"], m["plain"], emotion),
               tracked={k: float(v["success"].mean()) for k, v in raw.items()},
               frames=F, au_spec=au_edit, method=__doc__.split("\n\n")[1].replace("\n", " "))
    plot_check(out / "au_check.png", m, plan_e, plan_m, au, emotion)
    return json_safe(res)


def plot_check(path: Path, m: dict[str, np.ndarray], plan_e, plan_m, au: str, emotion: str) -> None:
    """Two panels: the edited AU (requested, measured on edit and plain); the preset's AUs (emotion vs plain)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emogs.control.emotions import EMOTIONS

    t = np.arange(len(m["plain"])) / FPS
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), dpi=100)
    i = AU_INDEX[au]
    ax = axes[0]
    ax.fill_between(t, 0, 1.05, where=plan_e.mask[: len(t), i] > 0, color="0.9", label="edit window (with ramps)")
    ax.plot(t, plan_e.au[: len(t), i], "k-", lw=2, label=f"{au} requested")
    ax.plot(t, m["au_edit"][:, i], "C3-", lw=1.3, label=f"{au} measured, edited render")
    ax.plot(t, m["plain"][:, i], "C0--", lw=1.0, label=f"{au} measured, plain render")
    ax.set_title(f"AU edit {au}: requested vs measured", fontsize=9)
    _axes(ax, t)
    ax = axes[1]
    for k, a in enumerate(EMOTIONS[emotion.split(':')[0]].aus):
        j, c = AU_INDEX[a], f"C{k}"
        ax.plot(t, plan_m.au[: len(t), j], c, lw=2, label=f"{a} requested")
        ax.plot(t, m["emotion"][:, j], c, lw=1.2, ls="-", alpha=0.7, marker=".", ms=2, label=f"{a} measured, {emotion}")
        ax.plot(t, m["plain"][:, j], c, lw=1.0, ls="--", label=f"{a} measured, plain")
    ax.set_title(f"emotion {emotion}: requested vs measured", fontsize=9)
    _axes(ax, t)
    fig.tight_layout()
    from emogs.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _axes(ax, t: np.ndarray) -> None:
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlim(0, max(float(t[-1]), 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("AU intensity")
    ax.legend(fontsize=7, loc="upper right")
