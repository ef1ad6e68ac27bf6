#!/usr/bin/env python
"""Cost of the expert losses per training step: the same short training (fine stage from the start, no
densification) with L_sync / L_AU off, L_AU only, every step a sync step, and the default schedule.

    python scripts/bench_expert_losses.py DATASET -o bench.json [--iters 40] [--resolution 128] [--device cpu]

Per case: CPU seconds per iteration (process time, one thread: what the step costs, much less sensitive
to a shared machine's load than wall time) and wall seconds per iteration, both over the iterations after
the first log interval (warm-up left out). With --repeats R the cases run R times interleaved and the
lowest of each is kept; every repeat is recorded."""
from __future__ import annotations

import argparse
import json
import os
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
            run = tmp / name.replace(" ", "_").replace(":", "").replace("/", "")
            marks: list[tuple[float, float]] = []  # (process time, wall time) at each iteration log line

            def log(msg: str) -> None:
                if msg.startswith("[train] it ") and "densify" not in msg:
                    marks.append((time.process_time(), time.time()))

            train(a.dataset, run, cfg, max_steps=a.iters, log=log)
            n = log_every * (len(marks) - 1)
            cpu, wall = (marks[-1][0] - marks[0][0]) / n, (marks[-1][1] - marks[0][1]) / n
            recs = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
            prev = res.get(name, {})
            cpus, walls = prev.get("repeats_cpu_s_per_it", []) + [round(cpu, 4)], prev.get("repeats_wall_s_per_it", []) + [round(wall, 4)]
            res[name] = dict(cpu_s_per_it=min(cpus), wall_s_per_it=min(walls), repeats_cpu_s_per_it=cpus,
                             repeats_wall_s_per_it=walls, overrides=over, num_gaussians=recs[-1]["num_gaussians"],
                             load_avg_after=round(os.getloadavg()[0], 2))
            print(f"{name} (repeat {rep}): {cpu:.3f} CPU s/it, {wall:.3f} wall s/it, load {os.getloadavg()[0]:.1f}",
                  flush=True)
            shutil.rmtree(run, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = res["no expert losses"]["cpu_s_per_it"]
    for v in res.values():
        v["relative_cpu"] = round(v["cpu_s_per_it"] / base, 2)
    out = dict(dataset=str(a.dataset), iters=a.iters, repeats=a.repeats, resolution=a.resolution, device=a.device, model=a.model,
               machine=platform.processor() or platform.machine(), torch=torch.__version__, threads=1, cases=res)
    a.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
