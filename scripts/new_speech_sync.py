#!/usr/bin/env python
"""Does the mouth follow NEW speech? Measure renders of trained heads driven by other speakers' audio.

    python scripts/new_speech_sync.py DIR --audio NAME=WAV [NAME=WAV ...] [--gt NAME=DATASET:START] -o OUT.md

DIR/<audio name>/<run name>/plain.mp4 are renders (e.g. `emogs eval-controls RUN --audio WAV --render-only`'s
OUT/videos/plain.mp4). For each: the
mouth opening track (MediaPipe inner-lip gap / eye-corner distance, `emogs.eval.landmarks.mouth_opening`), its
spread (sd, and 5-95% range) and the mouth-audio correlation at lag 0 and at the best lag within +-5 frames
(`emogs.eval.sync`: the correlation of mouth opening with 1-3 kHz audio energy; there is no SyncNet here).
`--gt NAME=DATASET:START` adds the real video of that audio (the dataset's frames from frame START) as the
reference row: what the real speaker's mouth does with the same audio.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np



def measure(frames: np.ndarray, wav: np.ndarray) -> dict:
    from emogs.eval.controls import mouth_motion, track

    r = track(frames)
    m = mouth_motion(r["landmarks"], r["success"], wav)
    return dict(frames=len(frames), tracked=float(np.mean(r["success"])), mouth_open_mean=m["mouth_open_mean"],
                mouth_open_sd=m["mouth_open_sd"], mouth_open_range_5_95=m.get("mouth_open_range_5_95", np.nan),
                r0=m["sync_mouth_audio_corr"], best_r=m["sync_best_corr"], best_lag=m["sync_offset_frames"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--audio", nargs="+", required=True, help="NAME=WAV")
    ap.add_argument("--gt", nargs="*", default=[], help="NAME=DATASET:START (real frames for that audio)")
    ap.add_argument("--condition", default="plain")
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args()

    from emogs.eval.controls import read_render
    from emogs.io.media import load_audio, read_frames

    audios = dict(s.split("=", 1) for s in a.audio)
    gts = dict(s.split("=", 1) for s in a.gt)
    rows = []
    for name, path in audios.items():
        wav = load_audio(path, 16000)
        if name in gts:
            ds, start = gts[name].rsplit(":", 1)
            n = int(len(wav) * 25 // 16000)
            fr = [f for i, f in enumerate(read_frames(Path(ds) / "frames.mp4")) if int(start) <= i < int(start) + n]
            rows.append(dict(audio=name, run="(real video)", **measure(np.stack(fr), wav)))
            print(rows[-1], flush=True)
        for run_dir in sorted((a.dir / name).iterdir()):
            v = run_dir / f"{a.condition}.mp4"
            if v.is_file():
                rows.append(dict(audio=name, run=run_dir.name, **measure(read_render(v), wav)))
                print(rows[-1], flush=True)
    lines = ["| audio | head | mouth opening mean | sd | 5-95% range | mouth-audio r(0) | best r (lag, frames) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['audio']} | {r['run']} | {r['mouth_open_mean']:.3f} | {r['mouth_open_sd']:.3f} | "
                     f"{r['mouth_open_range_5_95']:.3f} | {r['r0']:+.2f} | {r['best_r']:+.2f} ({r['best_lag']:+.0f}) |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
