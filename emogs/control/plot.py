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


MIN_PANEL = 256  # side-by-side videos are at least this tall, so the plot's text stays readable


def plot_requested_vs_measured(requested: np.ndarray, measured: np.ndarray | None, names: Sequence[str],
                               fps: float, width: int, height: int, aus: list[int] | None = None,
                               return_axes: bool = False):
    """RGB uint8 (height, width, 3) figure: requested (solid) and measured (dashed) AU tracks over time.
    The legend sits below the axes (one colour per AU), so it never covers the tracks. With
    `return_axes`, also the axes' pixel box (x0, y0, x1, y1) in the image (for a time cursor)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aus = aus if aus is not None else controlled_aus(requested, names)
    t = np.arange(len(requested)) / fps
    dpi = 100
    fs = float(np.clip(height / 32.0, 6.5, 11.0))  # font size (pt) that stays legible at this height
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    rows = (len(aus) + 2) // 3  # legend rows below the axes, 3 entries each
    line_h = 1.45 * fs / 72 * dpi / height  # one text line as a fraction of the figure height
    bottom = line_h * (2.3 + rows)  # tick labels + x label + legend rows
    top = 1 - 1.5 * line_h  # title
    left = min(0.3, 4.2 * fs / 72 * dpi / width)
    ax = fig.add_axes((left, bottom, 0.97 - left, top - bottom))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = []
    for k, i in enumerate(aus):
        c = colors[k % len(colors)]
        handles += ax.plot(t, requested[:, i], color=c, lw=2, label=names[i])
        if measured is not None:
            ax.plot(t, measured[:, i], color=c, lw=1.2, ls="--")
    ax.set_ylim(-0.02, 1.05)
    ax.set_yticks([0, 0.5, 1])
    ax.set_xlim(0, max(t[-1], 1e-3))
    ax.tick_params(labelsize=fs * 0.9, pad=1.5)
    ax.set_xlabel("time (s)", fontsize=fs, labelpad=1)
    ax.set_ylabel("AU", fontsize=fs, labelpad=1)
    ax.grid(alpha=0.3)
    fig.legend(handles=handles, loc="lower center", ncol=min(3, len(handles)), fontsize=fs, frameon=False,
               bbox_to_anchor=(0.5, 0.0), handlelength=1.2, columnspacing=1.0, borderaxespad=0.2)
    ax.set_title("solid: requested, dashed: measured", fontsize=fs, pad=2)
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    if not return_axes:
        return img
    h, w = img.shape[:2]
    box = (int(round(left * w)), int(round((1 - top) * h)), int(round(0.97 * w)), int(round((1 - bottom) * h)))
    return img, box


def side_by_side_frames(frames: np.ndarray, requested: np.ndarray, names: Sequence[str], fps: float
                        ) -> Iterator[np.ndarray]:
    """frames (F, H, W, 3) uint8 -> yield (P, W', 3): the render beside the AU plot with a time cursor.
    Renders shorter than MIN_PANEL px are enlarged by a whole factor (nearest neighbour: every rendered
    pixel stays visible as it is) so the plot beside them can be read; the plot is 1.5 P wide."""
    import cv2

    from emogs.face.analyze import analyze_frames

    F, H, W = frames.shape[:3]
    res = analyze_frames(iter(frames), fps, total=F)
    measured = np.where(res["success"][:, None], res["aus"], np.nan)
    f = max(1, -(-MIN_PANEL // H))  # ceil(MIN_PANEL / H)
    P = H * f
    plot, (x0, y0, x1, y1) = plot_requested_vs_measured(requested, measured, names, fps,
                                                        2 * ((3 * P // 2 + 1) // 2), P, return_axes=True)
    plot = np.ascontiguousarray(plot[:P])
    for i in range(F):
        panel = plot.copy()
        x = int(round(x0 + (x1 - x0) * i / max(F - 1, 1)))
        cv2.line(panel, (x, y0), (x, y1), (220, 30, 30), max(1, P // 256))
        fr = frames[i] if f == 1 else cv2.resize(frames[i], (W * f, P), interpolation=cv2.INTER_NEAREST)
        yield np.concatenate([fr, panel], 1)
