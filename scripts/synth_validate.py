"""Synthesise talking heads, run `emogs analyze` on them and measure how well it recovers the ground truth.

    python scripts/synth_validate.py --seeds 0 1 2 --write-docs

Per seed: `emogs.synth.generate.synth` -> VIDEO.mp4 + VIDEO.gt.csv; `emogs.face.analyze.analyze_video`
-> VIDEO.an.csv; `emogs.synth.compare.compare`. Prints per-AU Pearson r (GT vs analyze, over the frames
with a face) and, for the scripted events, the mean AU inside the event window vs outside all event
windows. With --write-docs the table replaces the block between the validate markers in docs/synth.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- synth_validate:begin -->", "<!-- synth_validate:end -->"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/emogs_synth_validate"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/synth.md")
    a = ap.parse_args()

    from emogs.face.analyze import analyze_video, read_analysis_csv
    from emogs.face.aus import AU_NAMES
    from emogs.synth.compare import compare
    from emogs.synth.generate import SynthConfig, synth

    runs = []
    for seed in a.seeds:
        video = a.out / f"synth_seed{seed}.mp4"
        s = synth(video, SynthConfig(seed=seed), progress=False)
        t = time.monotonic()
        analyze_video(video, video.with_suffix(".an.csv"), progress=False)
        t_an = time.monotonic() - t
        res = compare(read_analysis_csv(video.with_suffix(".gt.csv")), read_analysis_csv(video.with_suffix(".an.csv")),
                      video.with_suffix(".events.json"))
        res["synth_seconds"], res["analyze_seconds"], res["duration"] = s["seconds_total"], t_an, s["duration"]
        runs.append(res)
        print(f"seed {seed}: {s['duration']:.2f} s clip, synth {s['seconds_total']:.1f} s, analyze {t_an:.1f} s, "
              f"face found in {100 * res['detected']:.1f} % of frames")

    rows = ["| AU | Pearson r per seed | mean r | GT std (mean) | recovered? |", "|---|---|---|---|---|"]
    for au in AU_NAMES:
        rs = [r["au"][au]["r"] for r in runs]
        gstd = float(np.mean([r["au"][au]["gt_std"] for r in runs]))
        if gstd < 1e-6:
            rows.append(f"| {au} | not driven | - | 0 | - |")
            continue
        m = float(np.nanmean(rs)) if not all(np.isnan(rs)) else float("nan")
        verdict = "yes" if m >= 0.7 else ("partly" if m >= 0.4 else "no")
        rows.append(f"| {au} | {' / '.join('n/a' if np.isnan(x) else f'{x:.2f}' for x in rs)} | {m:.2f} | "
                    f"{gstd:.3f} | {verdict} |")
    rows += ["", "| event | AU | analyze mean in window | analyze mean outside events | GT in | GT out |",
             "|---|---|---|---|---|---|"]
    keys = [(e["kind"], e["au"]) for e in runs[0]["events"]]
    for k in keys:
        es = [e for r in runs for e in r["events"] if (e["kind"], e["au"]) == k]
        f = {c: float(np.mean([e[c] for e in es])) for c in ("an_in", "an_out", "gt_in", "gt_out")}
        rows.append(f"| {k[0]} | {k[1]} | {f['an_in']:.3f} | {f['an_out']:.3f} | {f['gt_in']:.3f} | {f['gt_out']:.3f} |")
    rows += ["", "| head pose | Pearson r (mean over seeds) | mean abs error (deg) |", "|---|---|---|"]
    for k in ("Rx", "Ry", "Rz"):
        rows.append(f"| pose_{k} | {np.mean([r['pose'][k]['r'] for r in runs]):.2f} | "
                    f"{np.mean([r['pose'][k]['mae_deg'] for r in runs]):.2f} |")
    det = np.mean([r["detected"] for r in runs])
    sy = np.mean([r["synth_seconds"] for r in runs])
    du = np.mean([r["duration"] for r in runs])
    head = (f"Measured by `python scripts/synth_validate.py --seeds {' '.join(map(str, a.seeds))} --write-docs` "
            f"({time.strftime('%Y-%m-%d')}, {platform.machine()}, {len(a.seeds)} clips of {du:.1f} s, default "
            f"text and events): MediaPipe found the face in {100 * det:.1f} % of frames; generating one clip "
            f"took {sy:.1f} s on average.\n")
    table = head + "\n" + "\n".join(rows)
    print(table)
    (a.out / "validate.json").write_text(json.dumps(runs, indent=1, default=float))
    if a.write_docs:
        doc = ROOT / "docs" / "synth.md"
        text = doc.read_text()
        i, j = text.index(BEGIN) + len(BEGIN), text.index(END)
        doc.write_text(text[:i] + "\n" + table + "\n" + text[j:])
        print(f"wrote {doc}")


if __name__ == "__main__":
    main()
