"""Validate the lip-sync metric (`emogs.eval.lipsync.lipsync_scores`) on real video: each clip with its own
audio, the same audio 5 frames late and 5 frames early, and other speakers' speech.

    python scripts/lipsync_validate.py [--seconds 20] [-o docs/eval/lipsync_validation.json]

Clips: ../shared/data/video/*.mp4 (macron and acosta are held out from the expert's training; lieu and may
are training clips), read at 25 fps like `emogs eval`, audio aligned to the first video frame; MediaPipe
tracks the frames inside the metric. Other speakers: every file in ../shared/data/audio.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def plot(doc: dict, path: Path) -> None:
    """One panel per clip: the expert's distance curve for own / late / early / other-speaker audio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emogs.io.atomic import atomic_path

    clips = doc["clips"]
    fig, axes = plt.subplots(1, len(clips), figsize=(4 * len(clips), 3.2), sharey=True)
    lags = np.arange(-15, 16)
    for ax, (name, c) in zip(np.atleast_1d(axes), clips.items()):
        for k, v in c["cases"].items():
            if k.startswith("other:"):
                ax.plot(lags, v["curve"], color="0.7", lw=0.8)
        ax.plot([], [], color="0.7", lw=0.8, label="other speakers")
        ax.plot(lags, c["cases"]["own"]["curve"], "k-o", ms=2.5, lw=1.2, label="own audio")
        ax.plot(lags, c["cases"]["late5"]["curve"], "-", color="tab:red", lw=1, label="audio 5 frames late")
        ax.plot(lags, c["cases"]["early5"]["curve"], "-", color="tab:blue", lw=1, label="audio 5 frames early")
        ax.axvline(0, color="gray", lw=0.5)
        ax.set_title(f"{name} ({'held out' if c['held_out'] else 'training clip'})", fontsize=9)
        ax.set_xlabel("offset (frames; > 0: audio late)")
    np.atleast_1d(axes)[0].set_ylabel("mean embedding distance")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "eval" / "lipsync_validation.json")
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG beside the JSON from the JSON")
    a = ap.parse_args(argv)
    if a.plot_only:
        plot(json.loads(a.output.read_text()), a.output.with_suffix(".png"))
        return 0
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from emogs.eval.lipsync import lipsync_scores
    from emogs.eval.run import load_aligned_audio
    from emogs.experts.sync import load_sync_expert
    from emogs.experts.weights import load_info, weights_path
    from emogs.face.tracker import FaceTracker
    from emogs.io.atomic import write_json
    from emogs.io.media import load_audio, read_frames

    expert = load_sync_expert()
    info = load_info(weights_path("sync_expert"))
    others = {p.stem: load_audio(p) for p in sorted((a.data / "audio").glob("*.wav"))}
    rows, t0 = {}, time.monotonic()
    for clip in sorted((a.data / "video").glob("*.mp4")):
        frames = np.stack(list(read_frames(clip, fps=25, max_seconds=a.seconds)))
        with FaceTracker(video_mode=True) as tr:
            res = [tr.track(f, i * 40) for i, f in enumerate(frames)]
        lm = np.stack([r.landmarks if r is not None else np.full((478, 3), np.nan, np.float32) for r in res])
        wav = load_aligned_audio(clip)
        z = np.zeros(5 * 640, np.float32)
        cases = {"own": wav, "late5": np.concatenate([z, wav]), "early5": wav[5 * 640:]}
        cases.update({f"other:{k}": v for k, v in others.items()})
        out = {}
        for name, w in cases.items():
            s, curve = lipsync_scores(frames, w, landmarks=lm, expert=expert)
            out[name] = {**s, "curve": [round(float(x), 4) for x in curve]}
        held = any(clip.stem.startswith(h) for h in info["held_out_identities"])
        rows[clip.stem] = {"frames": int(len(frames)), "held_out": held, "tracked": float(np.isfinite(lm[:, 0, 0]).mean()),
                           "cases": out}
        o = [v for k, v in out.items() if k.startswith("other:")]
        print(f"{clip.stem:22s} {'held-out' if held else 'trained '} own conf {out['own']['lipsync_conf']:.3f} "
              f"dist {out['own']['lipsync_dist']:.3f} off {out['own']['lipsync_offset_frames']:+.0f} "
              f"score {out['own']['lipsync_score']:.3f} | late5 off {out['late5']['lipsync_offset_frames']:+.0f} "
              f"score {out['late5']['lipsync_score']:.3f} | early5 off {out['early5']['lipsync_offset_frames']:+.0f} "
              f"| other conf {np.mean([v['lipsync_conf'] for v in o]):.3f} score {np.mean([v['lipsync_score'] for v in o]):.3f}",
              flush=True)
    doc = {"seconds": a.seconds, "expert": {k: info[k] for k in ("steps", "minutes", "seed")},
           "command": "python scripts/lipsync_validate.py", "wall_s": round(time.monotonic() - t0, 1), "clips": rows}
    write_json(a.output, doc)
    plot(doc, a.output.with_suffix(".png"))
    print("wrote", a.output, "and", a.output.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
