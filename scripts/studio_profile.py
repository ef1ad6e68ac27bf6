#!/usr/bin/env python
"""Where a live studio frame's time goes: `LiveStream.render` stage by stage, on the run's device.

    python scripts/studio_profile.py RUN SPEECH.wav [--device cuda] [--frames 40] [-o OUT.json]

Times, per frame (median over `--frames` after a warm-up), with a device synchronise between stages:
the AU window, the mesh expressions, the host->device upload, the deformation network (the renderer's
engine), the rasteriser + compositing, the device->host read-back, JPEG encoding; then the whole
`LiveStream.render` call as the studio makes it, and `torch.profiler`'s ten most expensive operators
over a few whole calls. The studio's own start-up figure (`render_ms`) is the whole call plus JPEG.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("speech", type=Path)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("-o", "--out", type=Path, default=None)
    a = ap.parse_args()

    from emogs.avatar import Avatar
    from emogs.data.windows import feature_windows
    from emogs.io.media import load_audio
    from emogs.model.infer import composite_u8
    from emogs.studio.server import encode_jpeg
    from emogs.studio.stream import LiveStream, analyse_speech

    av = Avatar.load(a.run, device=a.device, size=a.size)
    dev = av.device
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    sp = analyse_speech(av, load_audio(a.speech, 16000), a.speech.name)
    ls = LiveStream(av, sp)
    n = min(a.frames, sp.num_frames - 1)
    for i in range(3):  # warm-up (graph capture)
        ls.render(i)
    stages: dict[str, list[float]] = {k: [] for k in
                                      ("au_window", "expressions", "upload", "network", "raster", "readback", "jpeg")}
    eng = av.renderer.engines[0]
    for i in range(n):
        t0 = time.perf_counter()
        win = ls.au_window(i)
        t1 = time.perf_counter()
        sb = sp.speech_base
        expr = (av.expressions(ls.arrays.au[[i]], sb[[i]]) if sb is not None else av.expressions(ls.requested[[i]]))
        t2 = time.perf_counter()
        ids = np.array([i])
        w2c = torch.as_tensor(sp.w2c_training[ids], dtype=torch.float32, device=dev)
        aud = torch.as_tensor(feature_windows(sp.rows, sp.rows_per_frame, ids, av.model.cfg.audio_window),
                              dtype=torch.float32, device=dev)
        auw = torch.as_tensor(win[None], dtype=torch.float32, device=dev)
        ex = None if expr is None else torch.as_tensor(expr, device=dev)
        K = torch.as_tensor(av.K, device=dev)[None]
        bg = torch.as_tensor(av.background, device=dev)[None]
        sync()
        t3 = time.perf_counter()
        d = eng(aud, auw, ex)
        sync()
        t4 = time.perf_counter()
        fr = composite_u8(d, w2c, K, av.size, av.size, bg, getattr(av.cfg, "backend", "auto"))
        sync()
        t5 = time.perf_counter()
        img = fr[0].cpu().numpy()
        t6 = time.perf_counter()
        encode_jpeg(img, 85)
        t7 = time.perf_counter()
        for k, (s, e) in zip(stages, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6), (t6, t7)]):
            stages[k].append(1000 * (e - s))
    whole = []
    for i in range(n):
        t = time.perf_counter()
        ls.render(i)
        whole.append(1000 * (time.perf_counter() - t))
    res = {"run": str(a.run), "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
           "torch": torch.__version__, "size": av.size, "num_gaussians": len(av.model.gaussians),
           "engine_mode": av.renderer.mode, "frames": n,
           "stages_ms_median": {k: round(statistics.median(v), 3) for k, v in stages.items()},
           "live_render_ms_median": round(statistics.median(whole), 3),
           "live_render_ms_p95": round(float(np.percentile(whole, 95)), 3)}
    print(json.dumps(res, indent=1))
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        for i in range(5):
            ls.render(i)
    key = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15))
    if dev.type == "cuda":
        print(prof.key_averages().table(sort_by=key, row_limit=10))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
