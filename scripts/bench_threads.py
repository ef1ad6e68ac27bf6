"""CPU thread choice, before and after `emogs.runtime` (docs/errors.md, "Threads"): `emogs train` and
`emogs render` on this machine, with the load there is and with one extra busy core.

    python scripts/bench_threads.py DATASET RUN SPEECH.wav -o docs/threads_bench.json [--iters 60]

"before" runs with EMOGS_THREADS = the machine's core count (PyTorch's default, what every command but
the demo used), "after" with no setting (the command picks, emogs.runtime). Each run is a fresh
subprocess; train reports its mean it/s over the logged intervals after the first (which holds start-up),
render its wall time for the whole command. Writes every run, the machine and the load averages.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_OVERRIDES = {"log_every": 10, "preview_every": 100000, "checkpoint_every": 100000, "eval_lpips": False}


def _env(threads: int | None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "EMOGS_THREADS", "MKL_NUM_THREADS")}
    e["PYTHONPATH"] = str(ROOT)
    if threads is not None:
        e["EMOGS_THREADS"] = str(threads)
    return e


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_train(dataset: Path, iters: int, threads: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        run = Path(tmp) / "run"
        t = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "emogs.cli", "train", str(dataset), "-o", str(run), "--iters",
                            str(iters), "--device", "cpu", "--config-json", json.dumps(TRAIN_OVERRIDES)],
                           env=_env(threads), capture_output=True, text=True)
        wall = time.monotonic() - t
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        log = [json.loads(s) for s in (run / "train_log.jsonl").read_text().splitlines()]
    its = [rec["it_s"] for rec in log[1:]] or [log[-1]["it_s"]]
    return {"it_s": sum(its) / len(its), "wall_s": wall}


def run_render(run: Path, speech: Path, threads: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_render_") as tmp:
        t = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "emogs.cli", "render", str(run), "--audio", str(speech), "-o",
                            str(Path(tmp) / "o.mp4"), "--device", "cpu"], env=_env(threads), capture_output=True,
                           text=True)
        wall = time.monotonic() - t
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
    return {"wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("run", type=Path)
    ap.add_argument("speech", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    for load in ("as is", "+1 busy core"):
        hog = None
        if load != "as is":
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        try:
            for rep in range(a.reps):
                for mode, threads in (("before", cores), ("after", None)):
                    l0 = _loadavg()
                    tr = run_train(a.dataset, a.iters, threads)
                    rd = run_render(a.run, a.speech, threads)
                    row = {"load": load, "mode": mode, "rep": rep, "threads": threads or "auto", "loadavg_1min": l0,
                           "train_it_s": round(tr["it_s"], 2), "train_wall_s": round(tr["wall_s"], 1),
                           "render_wall_s": round(rd["wall_s"], 1)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    doc = {"machine": {"cpus": cores, "platform": platform.platform(), "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%d %H:%M"), "iters": a.iters, "dataset": str(a.dataset), "run": str(a.run),
           "speech": str(a.speech), "rows": rows}
    a.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
