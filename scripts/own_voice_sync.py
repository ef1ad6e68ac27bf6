#!/usr/bin/env python
"""Why a macron head syncs worse on macron's own held-out audio than on other people's speech (issue 14): the
lip-sync expert's offset-distance curves (`emogs.eval.lipsync`) of the real test video, the audio-driven render on
the same audio, a render on RD_Radio31 (whole and cut to the same 126 frames) and a 126-frame window of the real
training part. CPU, a minute or two:

    python scripts/own_voice_sync.py RUN DATASET RD31.wav -o curves.json

RUN/eval_speech/videos/ must hold `own_test_audio.mp4` and `RD_Radio31.mp4` (`emogs eval-speech ... --render-only`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("rd31", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args()
    from emogs.eval.lipsync import lipsync_scores
    from emogs.experts.sync import load_sync_expert
    from emogs.io.media import load_audio, read_frames

    ex = load_sync_expert()
    wav = load_audio(a.dataset / "audio.wav", 16000)
    spec = json.loads((a.run / "eval_speech/videos/specs.json").read_text())["own_test_audio"]["audio"]
    t0, t1 = json.loads(spec.split(":")[-1])  # "test-split:<hash>:[t0, t1]"
    L = t1 - t0
    want = set(range(t0, t1)) | set(range(200, 200 + L))  # the test split and a training window: only those kept
    real = {i: f for i, f in enumerate(read_frames(a.dataset / "frames.mp4")) if i in want}
    out: dict = {"command": " ".join(["python scripts/own_voice_sync.py", *sys.argv[1:]]), "test_split": [t0, t1]}

    def run(name: str, frames: list, w: np.ndarray) -> None:
        m, c = lipsync_scores(frames, w, expert=ex)
        out[name] = {"metrics": {k: round(v, 4) for k, v in m.items()}, "curve": [round(float(x), 4) for x in c]}
        print(name, out[name]["metrics"], flush=True)

    run("real_own", [real[i] for i in range(t0, t1)], wav[t0 * 640:t1 * 640])
    v = a.run / "eval_speech/videos"
    run("render_own", list(read_frames(v / "own_test_audio.mp4")), wav[t0 * 640:t1 * 640])
    rd, rdw = list(read_frames(v / "RD_Radio31.mp4")), load_audio(a.rd31, 16000)
    run("render_RD31", rd, rdw)
    run(f"render_RD31_first{L}", rd[:L], rdw[:L * 640])
    run("real_train_window", [real[i] for i in range(200, 200 + L)], wav[200 * 640:(200 + L) * 640])
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
