#!/usr/bin/env python3
"""CPU forward / forward+backward timings of the PyTorch rasteriser on a head-like scene.

    python scripts/bench_render_cpu.py [--threads 2] [--sizes 128 256] [--counts 5000 20000 50000] [--reps 5]

Prints one markdown table row per (size, N): median wall-clock ms of a forward pass (no grad) and of a
forward + backward training step (loss on colour and depth), the implied iterations/s, and the process CPU time
of the step (with one thread, less sensitive than wall time when other jobs share the cores; with two threads
spin-waiting under contention inflates it too). The load average is printed before and after.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from emogs.render import rasterize  # noqa: E402
from emogs.render.scenes import head_scene  # noqa: E402


def timed(fn, reps: int) -> tuple[float, float, float]:
    """(median wall s, min wall s, median process-CPU s) of fn() over reps runs after one warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def bench(n: int, size: int, reps: int, tile: int | None, chunk: int) -> dict:
    sc = head_scene(n, size)
    ps = [p.clone().requires_grad_(True) for p in sc.params()]
    bg = torch.ones(3)
    kw = dict(background=bg, tile_size=tile, chunk=chunk)

    def fwd():
        with torch.no_grad():
            rasterize(*ps, sc.viewmats, sc.Ks, size, size, **kw)

    def step():
        out = rasterize(*ps, sc.viewmats, sc.Ks, size, size, **kw)
        (out.colors.square().mean() + 1e-3 * out.depth.mean()).backward()

    f_wall, _, _ = timed(fwd, reps)
    s_wall, s_min, s_cpu = timed(step, reps)
    with torch.no_grad():
        cover = float(rasterize(*ps, sc.viewmats, sc.Ks, size, size, **kw).alpha.mean())
    return dict(n=n, size=size, fwd_ms=1e3 * f_wall, step_ms=1e3 * s_wall, step_min_ms=1e3 * s_min, it_s=1.0 / s_wall,
                step_cpu_ms=1e3 * s_cpu, coverage=cover)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--counts", type=int, nargs="+", default=[5000, 20000, 50000])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tile", type=int, default=None, help="tile size (default: automatic)")
    ap.add_argument("--chunk", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs ({platform.processor() or '?'}),"
          f" tile {args.tile or 'auto'}, chunk {args.chunk}, load average before: {os.getloadavg()[0]:.1f}", flush=True)
    print("| size | Gaussians | alpha cover | forward ms | fwd+bwd ms (median) | fwd+bwd ms (min) | it/s (median) |"
          " fwd+bwd CPU ms |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for size in args.sizes:
        for n in args.counts:
            r = bench(n, size, args.reps, args.tile, args.chunk)
            print(f"| {size}x{size} | {n} | {r['coverage']:.2f} | {r['fwd_ms']:.0f} | {r['step_ms']:.0f} | "
                  f"{r['step_min_ms']:.0f} | {r['it_s']:.1f} | {r['step_cpu_ms']:.0f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
