#!/usr/bin/env python
"""Cost of the expert losses per training step: the same short training (fine stage from the start, no
densification) with L_sync / L_AU off, L_AU only, every step a sync step, and the default schedule.

    python scripts/bench_expert_losses.py DATASET -o bench.json [--iters 40] [--resolution 128] [--device cpu]

Seconds per iteration are the wall time of the iterations after the first log interval (warm-up left out),
from the run's train_log.jsonl (`it_s`). With --repeats R the cases run R times interleaved and the
fastest of each is kept (a shared machine's load only ever slows a run down); every repeat is recorded."""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

CASES = {
    "no expert losses": {"loss.sync": 0.0, "loss.au": 0.0},
    "L_AU only (every step)": {"loss.sync": 0.0, "loss.au": 0.05},
    "L_sync every step (5 frames) + L_AU": {"loss.sync": 0.1, "loss.au": 0.05, "loss.sync_every": 1},
    "5 frames a step, no expert losses": {"loss.sync": 0.0, "loss.au": 0.0, "batch_size": 5},
    "default schedule: L_sync every 4 + L_AU": {"loss.sync": 0.1, "loss.au": 0.05, "loss.sync_every": 4},
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dataset", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="free")
    p.add_argument("--repeats", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(1)
    from emogs.train.config import build_config
    from emogs.train.loop import train

    log_every = max(1, a.iters // 4)
    res: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_experts_"))
    try:
        for rep, (name, over) in [(r, c) for r in range(a.repeats) for c in CASES.items()]:
            cfg = build_config(a.device, None, "full", {
                "iters": a.iters + 1, "fine_start": 0,  # stopped before the end: no final evaluation
                "resolution": a.resolution, "log_every": log_every,
                "densify.start": 10 ** 6, "densify.stop": 10 ** 6, "preview_every": 10 ** 6,
                "checkpoint_every": 10 ** 6, "eval_lpips": False, "model.kind": a.model, "device": a.device, **over})
            t0 = time.time()
            run = tmp / name.replace(" ", "_").replace(":", "").replace("/", "")
            train(a.dataset, run, cfg, max_steps=a.iters, log=lambda _: None)
            recs = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()][1:]
            s_it = sum(log_every / r["it_s"] for r in recs) / (log_every * len(recs))
            prev = res.get(name, {}).get("repeats_s_per_it", [])
            res[name] = dict(s_per_it=round(min(prev + [s_it]), 4), repeats_s_per_it=prev + [round(s_it, 4)],
                             overrides=over, wall_s=round(time.time() - t0, 1), num_gaussians=recs[-1]["num_gaussians"])
            print(f"{name} (repeat {rep}): {s_it:.3f} s/it", flush=True)
            shutil.rmtree(run, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = res["no expert losses"]["s_per_it"]
    for v in res.values():
        v["relative"] = round(v["s_per_it"] / base, 2)
    out = dict(dataset=str(a.dataset), iters=a.iters, repeats=a.repeats, resolution=a.resolution, device=a.device, model=a.model,
               machine=platform.processor() or platform.machine(), torch=torch.__version__, threads=1, cases=res)
    a.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
