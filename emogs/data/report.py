"""Prepare stage "report": a contact sheet (frames + landmarks + zone colours) and an AU-track plot."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from emogs.io.atomic import atomic_path

# RGB per label: background, torso, head-other, synergy, expression, audio, mouth interior
LABEL_COLOURS = np.array([[0, 0, 0], [40, 90, 255], [255, 200, 0], [0, 200, 90], [230, 60, 230],
                          [255, 40, 40], [255, 255, 255]], np.uint8)


def overlay(rgb: np.ndarray, labels: np.ndarray, landmarks: np.ndarray | None, alpha: float = 0.4) -> np.ndarray:
    """Frame (S, S, 3) u8 with label colours blended in (not on background) and landmark dots drawn."""
    out = rgb.astype(np.float32)
    m = labels > 0
    out[m] = (1 - alpha) * out[m] + alpha * LABEL_COLOURS[labels[m]].astype(np.float32)
    out = out.clip(0, 255).astype(np.uint8)
    edges = cv2.morphologyEx(labels, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = (255, 255, 255)
    if landmarks is not None:
        for x, y in np.round(landmarks[:, :2]).astype(int):
            if 0 <= x < out.shape[1] and 0 <= y < out.shape[0]:
                out[y, x] = (0, 255, 255)
    return out


def contact_sheet(path: Path, frames: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                  landmarks: Sequence[np.ndarray], indices: Sequence[int], cols: int = 4, tile: int = 320,
                  beside: Sequence[np.ndarray] | None = None) -> None:
    """Grid of overlaid frames (zone colours, landmark dots) with index and time; written atomically as PNG.
    `beside`: one more picture per frame (e.g. the fitted mesh over it), shown to its right."""
    tiles = []
    if beside is not None:
        tile = min(tile, 256)
    for k, (rgb, lab, lm, i) in enumerate(zip(frames, labels, landmarks, indices)):
        s = tile / rgb.shape[0]
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (tile, tile), interpolation=interp)
        lab = cv2.resize(lab, (tile, tile), interpolation=cv2.INTER_NEAREST)
        im = overlay(rgb, lab, lm * np.float32([s, s, s]))
        cv2.putText(im, f"#{i}  {i / 25:.1f}s", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2)
        if beside is not None:
            im = np.hstack([im, cv2.resize(beside[k], (tile, tile), interpolation=interp)])
        tiles.append(im)
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[r:r + cols]) for r in range(0, len(tiles), cols)]
    sheet = np.vstack(rows)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), sheet[..., ::-1])


def au_plot(path: Path, aus: np.ndarray, names: Sequence[str], tracked: np.ndarray, test_start: int,
            fps: float = 25) -> None:
    """AU intensities (N, 17) over time, one row per AU; gaps (untracked) and the test split shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(aus)
    t = np.arange(n) / fps
    fig, axes = plt.subplots(len(names), 1, figsize=(12, 0.55 * len(names) + 1), sharex=True)
    for k, (ax, name) in enumerate(zip(axes, names)):
        ax.fill_between(t, aus[:, k], color="C0", alpha=0.35, lw=0)
        ax.plot(t, aus[:, k], color="C0", lw=0.7)
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 0.5, 1], ["0", "", "1"])  # intensity scale on the right, the AU name on the left
        ax.yaxis.tick_right()
        ax.tick_params(axis="y", labelsize=7, length=2, pad=1)
        ax.grid(axis="y", alpha=0.3, lw=0.5)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.axvspan(test_start / fps, n / fps, color="0.85", zorder=-1)
        for s in np.flatnonzero(~tracked):
            ax.axvspan(s / fps, (s + 1) / fps, color="r", alpha=0.3, lw=0)
    axes[0].set_title("AU intensities, 0-1 (grey: test split, red: interpolated frames)", fontsize=9)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout(h_pad=0.1)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
