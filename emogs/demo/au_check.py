"""Did the demo's controls do anything? The demo's three rendered MP4s (plain, AU edit, emotion) measured by
`emogs.eval.controls` (the `emogs eval-controls` measures: MediaPipe on the files a user gets, one
landmark-geometry baseline from the plain render). Writes DEMO/controls/ (results.json, tables.md, plots,
contact sheets) and returns the summary the demo page shows (au_check.json) with au_check.png.

AU edit: mean measured AU where the edit is fully on vs where it is off, on the edited render and on the
plain render of the same speech (the control); `effect` = the edit's in-minus-out change minus the plain
render's. Emotion: mean measured AUs of the preset on the emotion render vs the plain render.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emogs.constants import FPS, SAMPLE_RATE


def au_check(out: Path, au_edit: str, emotion: str) -> dict[str, Any]:
    """Measure DEMO/videos/*.mp4 (renders made with blinks on, seed 0, as `emogs render` does by default)."""
    from emogs.eval.controls import (PLAIN, Condition, ControlOptions, json_safe, measure, plans_for,
                                     read_render, received_aus, write_outputs)
    from emogs.io.media import load_audio
    from emogs.run import open_run

    run = open_run(out / "run")
    vids = out / "videos"
    conds = [PLAIN, Condition("au_edit", (au_edit,)), Condition("emotion", (), emotion)]
    frames = {"plain": read_render(vids / "speech.mp4"), "emotion": read_render(vids / "emotion.mp4")}
    frames["au_edit"] = render_part(read_render(vids / "au_edit.mp4"), frames["plain"].shape[1:3])
    F = min(len(v) for v in frames.values())
    opts = ControlOptions(blinks=True, progress=False)
    plans = plans_for(conds, F, np.asarray(run.dataset_info()["au_mean"], np.float32), blinks=True)
    wav = load_audio(out / "speech.wav", SAMPLE_RATE)
    received = received_aus(plans, wav[: int(F * SAMPLE_RATE / FPS)], run, opts)
    res, arrays = measure(frames, conds, plans, received, wav, opts)
    write_outputs(out / "controls", res, arrays, dict(source="emogs demo videos/", frames=F), opts)
    e, m = res["au_edit"], res["emotion"]
    summary = dict(
        au_edit=dict(au=e["au"], frames_in=e["frames_in"], frames_out=e["frames_out"], requested_in=e["received_in"],
                     requested_out=e["received_out"], edit_in=e["edit_in"], edit_out=e["edit_out"],
                     plain_in=e["plain_in"], plain_out=e["plain_out"], edit_delta=e["edit_delta"],
                     plain_delta=e["plain_delta"], effect=e["effect"]),
        emotion=dict(emotion=emotion, aus={a: dict(emotion=v["emotion"], plain=v["plain"], delta=v["delta"])
                                           for a, v in m["aus"].items()}),
        tracked={k: v["tracked"] for k, v in res.items()}, frames=F, au_spec=au_edit,
        method=__doc__.split("\n\n")[1].replace("\n", " "), report="controls/tables.md")
    plot_check(out / "au_check.png", arrays, au_edit, emotion)
    return json_safe(summary)


def render_part(side: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The render half of `--side-by-side` frames (F, P, W', 3) at its own (H, W) `size`: the render is the left
    part, enlarged by a whole factor P / H for small renders (emogs.control.plot.side_by_side_frames)."""
    import cv2

    H, W = size
    f = side.shape[1] // H
    part = side[:, :, : W * f]
    if f == 1:
        return np.ascontiguousarray(part)
    return np.stack([cv2.resize(x, (W, H), interpolation=cv2.INTER_AREA) for x in part])


def plot_check(path: Path, arrays: dict[str, Any], au_edit: str, emotion: str) -> None:
    """Two panels: the edited AU (requested, measured on edit and plain); the preset's AUs (emotion vs plain)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emogs.control.emotions import EMOTIONS
    from emogs.control.names import AU_INDEX
    from emogs.io.atomic import atomic_path

    m, F = arrays["meas"], arrays["F"]
    plan_e, plan_m = arrays["plans"]["au_edit"], arrays["plans"]["emotion"]
    au = arrays["conditions"]["au_edit"].edited_au()
    t = np.arange(F) / FPS
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), dpi=100)
    i = AU_INDEX[au]
    ax = axes[0]
    ax.fill_between(t, 0, 1.05, where=plan_e.mask[:F, i] > 0, color="0.9", label="edit window (with ramps)")
    ax.plot(t, arrays["received"]["au_edit"][:F, i], "k-", lw=2, label=f"{au} requested")
    ax.plot(t, m["au_edit"][:F, i], "C3-", lw=1.3, label=f"{au} measured, edited render")
    ax.plot(t, m["plain"][:F, i], "C0--", lw=1.0, label=f"{au} measured, plain render")
    ax.set_title(f"AU edit {au}: requested vs measured", fontsize=9)
    _axes(ax, t)
    ax = axes[1]
    for k, a in enumerate(EMOTIONS[emotion.split(':')[0]].aus):
        j, c = AU_INDEX[a], f"C{k}"
        ax.plot(t, arrays["received"]["emotion"][:F, j], c, lw=2, label=f"{a} requested")
        ax.plot(t, m["emotion"][:F, j], c, lw=1.2, ls="-", alpha=0.7, marker=".", ms=2, label=f"{a} measured, {emotion}")
        ax.plot(t, m["plain"][:F, j], c, lw=1.0, ls="--", label=f"{a} measured, plain")
    ax.set_title(f"emotion {emotion}: requested vs measured", fontsize=9)
    _axes(ax, t)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _axes(ax, t: np.ndarray) -> None:
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlim(0, max(float(t[-1]), 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("AU intensity")
    ax.legend(fontsize=7, loc="upper right")
