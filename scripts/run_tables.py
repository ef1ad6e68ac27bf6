#!/usr/bin/env python
"""The session-2 summary tables, rebuilt from saved outputs (docs/training.md ablation, docs/control_proof.md
per-head control table):

    python scripts/run_tables.py ablation DIR RUN [RUN ...]      # DIR/RUN/eval_test/metrics.json (`emogs eval`)
                                                                 # + DIR/RUN/gpu_report.json
    python scripts/run_tables.py control PROOF_DIR LOCALITY.json|- RUN [RUN ...]
                                                                 # PROOF_DIR/RUN/results.json: `emogs eval-controls`
                                                                 # (locality inside; give -) or the older
                                                                 # control_proof.py + edit_locality.py json
    python scripts/run_tables.py quality RUN_DIR [RUN_DIR ...]   # each RUN_DIR/metrics.json + gpu_report.json
                                                                 # (training-time test metrics, e.g. the GPU runs
                                                                 # in docs/gpu/runs/s7): both protocols and the
                                                                 # field protocol's gain over the first run
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, prefix + k + "."))
        elif isinstance(v, (int, float)):
            out[prefix + k] = v
    return out


def ablation(root: Path, runs: list[str]) -> list[str]:
    lines = ["| run | iters | PSNR full / face | SSIM full / face | LPIPS full / face | LMD mouth / face | CSIM | "
             "AUE-U / AUE-L | AU-Jerk (GT) | sync r(0) (GT) | E agree |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m = _flat(json.loads((root / r / "eval_test" / "metrics.json").read_text()))
        g = json.loads((root / r / "gpu_report.json").read_text())
        lines.append(
            f"| {r} | {g['iteration']} | {m['psnr']:.2f} / {m['psnr_face']:.2f} | {m['ssim']:.3f} / {m['ssim_face']:.3f} | "
            f"{m['lpips']:.3f} / {m['lpips_face']:.3f} | {m['lmd_mouth']:.2f} / {m['lmd_face']:.2f} | {m['csim_dlib']:.3f} | "
            f"{m['aue_upper']:.3f} / {m['aue_lower']:.3f} | {m['au_jerk']:.4f} ({m['au_jerk_gt']:.4f}) | "
            f"{m['sync_mouth_audio_corr']:+.2f} ({m['sync_mouth_audio_corr_gt']:+.2f}) | {m.get('e_agree_gt', float('nan')):.2f} |")
    return lines


def control(proof: Path, locality: Path, runs: list[str]) -> list[str]:
    loc = {} if str(locality) == "-" else {(r["head"], r["condition"]): r for r in json.loads(locality.read_text())}
    lines = ["| head | AU04 effect | AU12 effect | AU45 effect | happy: AU12 / AU06 delta | angry: AU04 delta | "
             "lip LMD vs plain, AU04 / AU45 edits (px) | mouth track r vs plain in the AU04 window | "
             "AU12 edit: change outside the face | id cos vs plain (min) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        c = json.loads((proof / r / "results.json").read_text())["conditions"]
        for v in c.values():  # `emogs eval-controls` names -> the older names
            v.setdefault("lip_lmd_vs_plain_px512", v.get("lip_shift_px512"))
        hp, an = c["happy"]["aus"], c["angry"]["aus"]
        out = loc.get((r, "AU12"))
        share = c["AU12"].get("locality_outside_share") if out is None else out["outside_share"]
        share = "-" if share is None else f"{100 * share:.0f}%"
        lines.append(
            f"| {r} | {c['AU04']['effect']:+.2f} | {c['AU12']['effect']:+.2f} | {c['AU45']['effect']:+.2f} | "
            f"{hp['AU12']['delta']:+.2f} / {hp['AU06']['delta']:+.2f} | {an['AU04']['delta']:+.2f} | "
            f"{c['AU04']['lip_lmd_vs_plain_px512']:.2f} / {c['AU45']['lip_lmd_vs_plain_px512']:.2f} | "
            f"{c['AU04']['mouth_corr_vs_plain_in_window']:.2f} | "
            f"{share} | "
            f"{min(v['id_cos_vs_plain_min'] for v in c.values()):.3f} |")
    return lines


def quality(runs: list[str]) -> list[str]:
    """Issue 15's step table: field protocol (head pasted on the true frame by its alpha), our own (over the plate)
    and the face box, with the field PSNR / LPIPS change against the first run."""
    lines = ["| run | iters | Gaussians | neck_keep | field PSNR / SSIM / LPIPS | field gain (dB / LPIPS) | "
             "face PSNR / LPIPS | full (plate) PSNR / LPIPS | hair/ears/neck PSNR (share) |",
             "|---|---|---|---|---|---|---|---|---|"]
    ref = None
    for r in runs:
        m = json.loads((Path(r) / "metrics.json").read_text())
        g = json.loads((Path(r) / "gpu_report.json").read_text()) if (Path(r) / "gpu_report.json").is_file() else {}
        f, fa, fu = m["field"], m["face"], m["full"]
        ho = m.get("field_regions", {}).get("head_other", {})
        ref = ref or f
        nk = m.get("neck_keep")
        if nk is None and (Path(r) / "config.json").is_file():  # runs from before metrics carried it
            nk = json.loads((Path(r) / "config.json").read_text()).get("neck_keep", -1.0)
        lines.append(f"| {Path(r).name} | {g.get('iteration', '?')} | {m.get('num_gaussians', '?'):,} | "
                     f"{'-' if nk is None or nk < 0 else nk} | "
                     f"{f['psnr']:.2f} / {f['ssim']:.3f} / {f['lpips']:.4f} | "
                     f"{f['psnr'] - ref['psnr']:+.2f} / {f['lpips'] - ref['lpips']:+.4f} | "
                     f"{fa['psnr']:.2f} / {fa['lpips']:.4f} | {fu['psnr']:.2f} / {fu['lpips']:.4f} | "
                     f"{ho.get('psnr', float('nan')):.2f} ({ho.get('sse_share', float('nan')):.0%}) |")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "ablation":
        print("\n".join(ablation(Path(argv[1]), argv[2:])))
    elif len(argv) >= 2 and argv[0] == "quality":
        print("\n".join(quality(argv[1:])))
    elif len(argv) >= 4 and argv[0] == "control":
        print("\n".join(control(Path(argv[1]), Path(argv[2]), argv[3:])))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
