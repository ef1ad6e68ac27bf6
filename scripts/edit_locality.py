#!/usr/bin/env python
"""Where does an expression edit change the image? Share of the edit's pixel change that falls outside the face.

    python scripts/edit_locality.py VIDEOS_DIR [VIDEOS_DIR ...] [--conditions AU04,AU12,AU45,happy] -o OUT.md

VIDEOS_DIR holds plain.mp4 and one video per condition (scripts/control_proof.py / gpu_control_renders.py). For
each condition: |edit - plain| (mean over RGB) on the frames where the edit is fully on (1.2-2.8 s for `@1-3` AU
edits, the whole clip for emotion presets), and the share of that change outside the face oval (MediaPipe's
FACE_OVAL landmarks of the plain render, dilated by 3% of the frame: the face and its contour, excluding hair,
ears, neck and the background). A rim along the head outline (edits moving hair or ears) shows up as a high
outside share.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
FPS = 25.0


def face_masks(frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) -> (F, H, W) bool: inside the dilated face oval (tracked per frame)."""
    import cv2

    from emogs.demo.au_check import track
    from emogs.face.zones import FACE_OVAL

    r = track(frames)
    F, H, W = frames.shape[:3]
    k = max(3, int(0.03 * W)) | 1
    out = np.zeros((F, H, W), bool)
    for i in range(F):
        if not r["success"][i]:
            continue
        m = np.zeros((H, W), np.uint8)
        cv2.fillPoly(m, [np.round(r["landmarks"][i][FACE_OVAL, :2]).astype(np.int32)], 1)
        out[i] = cv2.dilate(m, np.ones((k, k), np.uint8)) > 0
    return out


def locality(plain: np.ndarray, edit: np.ndarray, inside: np.ndarray, frames: np.ndarray) -> dict:
    d = np.abs(edit[frames].astype(np.float32) - plain[frames].astype(np.float32)).mean(-1)  # (f, H, W)
    m = inside[frames]
    total = float(d.sum())
    return dict(mean_abs_change=float(d.mean()), outside_share=float(d[~m].sum() / max(total, 1e-9)),
                outside_mean=float(d[~m].mean()), inside_mean=float(d[m].mean()))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", type=Path, nargs="+")
    ap.add_argument("--conditions", default="AU04,AU12,AU45,happy,angry")
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args()
    from emogs.demo.au_check import read_render

    rows = []
    for d in a.dirs:
        plain = read_render(d / "plain.mp4")
        inside = face_masks(plain)
        t = np.arange(len(plain)) / FPS
        for c in a.conditions.split(","):
            v = d / f"{c}.mp4"
            if not v.is_file():
                continue
            edit = read_render(v)[: len(plain)]
            sel = (t >= 1.2) & (t <= 2.8) if c.startswith("AU") else np.ones(len(plain), bool)
            rows.append(dict(head=d.name, condition=c, **locality(plain, edit, inside, sel)))
            print(rows[-1], flush=True)
    lines = ["| head | edit | mean change (0-255) | inside face oval | outside | share of the change outside the face |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['head']} | {r['condition']} | {r['mean_abs_change']:.2f} | {r['inside_mean']:.2f} | "
              f"{r['outside_mean']:.2f} | {100 * r['outside_share']:.0f}% |" for r in rows]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
