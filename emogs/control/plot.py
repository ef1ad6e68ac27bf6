"""Requested-vs-measured AU plots, and the `--side-by-side` video: render | AU plot with a moving cursor.

Measured AUs come from `emogs analyze` (MediaPipe) run on the rendered frames themselves.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np


def controlled_aus(requested: np.ndarray, names: Sequence[str], max_aus: int = 6) -> list[int]:
    """Indices of the AUs worth plotting: the ones that vary or are far from zero in the request."""
    score = requested.max(0) - requested.min(0) + 0.5 * requested.mean(0)
    order = [int(i) for i in np.argsort(-score) if score[i] > 0.02 and names[i] != "AU45"]
    return order[:max_aus] or [int(np.argmax(score))]


def plot_requested_vs_measured(requested: np.ndarray, measured: np.ndarray | None, names: Sequence[str],
                               fps: float, width: int, height: int, aus: list[int] | None = None) -> np.ndarray:
    """RGB uint8 (height, width, 3) figure: requested (solid) and measured (dashed) AU tracks over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aus = aus if aus is not None else controlled_aus(requested, names)
    t = np.arange(len(requested)) / fps
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0.1, 0.12, 0.86, 0.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, i in enumerate(aus):
        c = colors[k % len(colors)]
        ax.plot(t, requested[:, i], color=c, lw=2, label=f"{names[i]} requested")
        if measured is not None:
            ax.plot(t, measured[:, i], color=c, lw=1.2, ls="--", label=f"{names[i]} measured")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlim(0, max(t[-1], 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("AU intensity")
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    ax.set_title("AU tracks: requested (solid) vs measured on the render (dashed)", fontsize=8)
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img


def side_by_side_frames(frames: np.ndarray, requested: np.ndarray, names: Sequence[str], fps: float
                        ) -> Iterator[np.ndarray]:
    """frames (F, H, W, 3) uint8 -> yield (H, 2W, 3): the render beside the AU plot with a time cursor."""
    import cv2

    from emogs.face.analyze import analyze_frames

    F, H, W = frames.shape[:3]
    res = analyze_frames(iter(frames), fps, total=F)
    measured = np.where(res["success"][:, None], res["aus"], np.nan)
    plot = plot_requested_vs_measured(requested, measured, names, fps, max(W, 320), max(H, 240))
    plot = cv2.resize(plot, (W, H), interpolation=cv2.INTER_AREA)
    x0, x1 = int(0.1 * W), int(0.96 * W)  # the axes' horizontal extent in the figure
    for i in range(F):
        panel = plot.copy()
        x = int(round(x0 + (x1 - x0) * i / max(F - 1, 1)))
        cv2.line(panel, (x, int(0.08 * H)), (x, int(0.88 * H)), (220, 30, 30), 1)
        yield np.concatenate([frames[i], panel], 1)
