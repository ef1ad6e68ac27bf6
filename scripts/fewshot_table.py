"""Markdown table of few-shot runs (docs/fewshot.md): test-split PSNR / SSIM / LPIPS of every run folder under
RUNS (full frame, face box, the field's protocol), iterations, training/adaptation wall time, and, when
`emogs eval` has been run on it (RUN/eval_test/metrics.json), its LMD / AUE / sync numbers.

    python scripts/fewshot_table.py RUNS_DIR [--eval]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(x, nd=2):
    return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, (int, float)) else str(x))


def _flat(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = v
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0])
    rows = []
    for r in sorted(p for p in root.iterdir() if (p / "metrics.json").is_file()):
        m = json.loads((r / "metrics.json").read_text())
        info = json.loads((r / "run.json").read_text()) if (r / "run.json").is_file() else {}
        f, c, fd = m["full"], m["face"], m["field"]
        ad = info.get("adapt") or {}
        rows.append([r.name, info.get("model_kind"), info.get("iterations"), _f(f["psnr"]), _f(c["psnr"]), _f(fd["psnr"]),
                     _f(f["ssim"], 4), _f(f["lpips"], 4), _f(c["lpips"], 4), _f(ad.get("seconds"), 0), _f(ad.get("wall_s"), 0)])
        if "--eval" in argv and (r / "eval_test" / "metrics.json").is_file():
            e = _flat(json.loads((r / "eval_test" / "metrics.json").read_text()))
            rows[-1].append(", ".join(f"{k} {_f(v, 3)}" for k, v in e.items() if any(s in k for s in ("lmd", "aue", "sync", "lipsync")))[:200])
    head = ["run", "kind", "iters", "PSNR", "face PSNR", "field PSNR", "SSIM", "LPIPS", "face LPIPS", "adapt s video", "adapt wall s"]
    if "--eval" in argv:
        head.append("eval (LMD / AUE / sync)")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
