"""End-to-end render speed of a trained run: audio features + AU encoding + deformation + rasterisation +
compositing, at the run's resolution, batch 1 and batched, with CUDA synchronisation, warm-up and the
median of many runs; plus the split between the network (deformation) and the rasteriser, for each
inference mode (eager, CUDA-graph replay in float32 / bf16; emogs.model.infer) with its parity against eager.

    python scripts/gpu_render_fps.py RUN --audio DATASET/audio.wav [--device cuda] [--out bench.json]

Writes RUN/render_benchmark.json (read by `emogs eval`) and prints a table.
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


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev: torch.device, reps: int, warm: int = 5) -> list[float]:
    for _ in range(warm):
        fn()
    sync(dev)
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync(dev)
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--audio", type=Path, required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--modes", default="eager,graph,graph-bf16", help="inference modes (emogs.model.infer)")
    a = ap.parse_args()

    from emogs.audio import feature_rows as audio_feature_rows
    from emogs.avatar import Avatar
    from emogs.data.windows import feature_windows as audio_windows
    from emogs.data.windows import frame_windows as au_windows
    from emogs.run import RunFolder

    av = Avatar.load(a.run, device=a.device)
    dev = av.device
    model, mc, S = av.model, av.model.cfg, av.size
    from emogs.io.media import read_wav

    wav = read_wav(a.audio)[: 16000 * 8]
    F = int(len(wav) * 25 // 16000)
    plan = av.plan(F, emotion="happy:0.7", au="AU01=1@1-3")
    w2c_all = torch.as_tensor(plan.resolve_pose(av.train_w2c).world_to_cam, dtype=torch.float32, device=dev)
    K = torch.as_tensor(av.K, device=dev)
    bg = torch.as_tensor(av.background, device=dev)
    au = plan.au.astype(np.float32)

    # audio features for the whole clip, once (amortised per frame below)
    t = time.perf_counter()
    rows, rpf = audio_feature_rows(wav, mc.audio_feature)
    feat_s_per_frame = (time.perf_counter() - t) / F
    results = dict(device=torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", torch=torch.__version__,
                   resolution=S, num_gaussians=len(model.gaussians), audio_feature=mc.audio_feature,
                   audio_features_ms_per_frame=1000 * feat_s_per_frame, batches={})
    print(f"[fps] {results['device']} | {S}x{S} | {len(model.gaussians)} Gaussians | "
          f"audio features {1000 * feat_s_per_frame:.3f} ms/frame (CPU, whole clip at once)")
    from emogs.model.infer import DeformEngine, render_with_engine
    from emogs.render import rasterize

    modes = [m for m in a.modes.split(",") if dev.type == "cuda" or m == "eager"]
    results["modes"] = {}
    # parity: the first 8 frames of the clip in each mode against eager (uint8 frames)
    ids8 = np.arange(min(8, F))
    aud8 = torch.as_tensor(audio_windows(rows, rpf, ids8, mc.audio_window), dtype=torch.float32, device=dev)
    auw8 = torch.as_tensor(au_windows(au, ids8, mc.au_window), device=dev)
    ref = None
    for mode in modes:
        eng = DeformEngine(model, mode)
        fr = torch.cat([render_with_engine(eng, w2c_all[[i]], K[None], aud8[i:i + 1], auw8[i:i + 1], S, S, bg[None])
                        for i in range(len(ids8))]).float()
        if ref is None:
            ref = fr
        mse = float(((fr - ref) ** 2).mean())
        par = dict(max_abs_u8=float((fr - ref).abs().max()), mean_abs_u8=float((fr - ref).abs().mean()),
                   psnr_vs_eager=float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse))
        results["modes"][mode] = dict(parity=par, batches={}, engine_mode_used=eng.mode)
        print(f"[fps] {mode}: vs eager max |diff| {par['max_abs_u8']:.0f}/255, mean {par['mean_abs_u8']:.4f}, "
              f"PSNR {par['psnr_vs_eager']:.1f} dB")
        for B in [int(b) for b in a.batches.split(",")]:
            ids = np.arange(B) % F
            aud = torch.as_tensor(audio_windows(rows, rpf, ids, mc.audio_window), dtype=torch.float32, device=dev)
            auw = torch.as_tensor(au_windows(au, ids, mc.au_window), device=dev)
            w2c, Kb, bgb = w2c_all[ids], K.expand(B, 3, 3), bg.expand(B, -1, -1, -1)

            def full():
                return render_with_engine(eng, w2c, Kb, aud, auw, S, S, bgb)

            def net_only():
                return eng(aud, auw)

            d = {k: v.clone() for k, v in eng(aud, auw).items()}

            @torch.no_grad()
            def raster_only():
                return rasterize(d["means"], d["quats"], d["scales"], d["opacities"], d["colors"], w2c, Kb, S, S)

            @torch.no_grad()
            def host_prep():  # per-batch CPU work: feature windows + AU windows + upload
                a_ = torch.as_tensor(audio_windows(rows, rpf, ids, mc.audio_window)).to(dev, non_blocking=True)
                u_ = torch.as_tensor(au_windows(au, ids, mc.au_window)).to(dev, non_blocking=True)
                return a_, u_

            tf = statistics.median(timed(full, dev, a.reps))
            tn = statistics.median(timed(net_only, dev, a.reps))
            tr = statistics.median(timed(raster_only, dev, a.reps))
            th = statistics.median(timed(host_prep, dev, a.reps))
            per_frame = (tf + th) / B + feat_s_per_frame
            r = dict(end_to_end_fps=1 / per_frame, model_render_ms=1000 * tf, network_ms=1000 * tn,
                     rasterise_ms=1000 * tr, host_prep_ms=1000 * th, frames_per_call=B)
            results["modes"][mode]["batches"][str(B)] = r
            print(f"[fps] {mode:10s} batch {B:3d}: end-to-end {1 / per_frame:8.1f} FPS | per call: model+render "
                  f"{1000 * tf:.2f} ms (network {1000 * tn:.2f} ms, rasteriser {1000 * tr:.2f} ms), "
                  f"host prep {1000 * th:.2f} ms")
    # pipelined: the next call's network on a side stream while this call rasterises (emogs render does this)
    from emogs.model.infer import PipelinedRenderer

    results["pipelined"] = {}
    for mode in modes:
        pr = PipelinedRenderer(model, mode)
        fr = torch.cat(list(pr.run(((w2c_all[[i]], K[None], aud8[i:i + 1], auw8[i:i + 1], bg[None])
                                    for i in range(len(ids8))), S, S))).float()
        par = dict(max_abs_u8_vs_eager=float((fr - ref).abs().max()), mean_abs_u8_vs_eager=float((fr - ref).abs().mean()))
        results["pipelined"][mode] = dict(parity=par, batches={})
        for B in [int(b) for b in a.batches.split(",")]:
            def calls(n: int, B: int = B):
                for c in range(n):
                    ids = (np.arange(B) + c * B) % F
                    a_ = torch.as_tensor(audio_windows(rows, rpf, ids, mc.audio_window)).to(dev, non_blocking=True)
                    u_ = torch.as_tensor(au_windows(au, ids, mc.au_window)).to(dev, non_blocking=True)
                    yield w2c_all[ids], K.expand(B, 3, 3), a_, u_, bg.expand(B, -1, -1, -1)

            n_calls = max(20, 200 // B)
            for _ in pr.run(calls(5), S, S):
                pass
            times = []
            for _ in range(5):
                sync(dev)
                t = time.perf_counter()
                for _ in pr.run(calls(n_calls), S, S):
                    pass
                sync(dev)
                times.append(time.perf_counter() - t)
            per_frame = statistics.median(times) / (n_calls * B) + feat_s_per_frame
            results["pipelined"][mode]["batches"][str(B)] = dict(end_to_end_fps=1 / per_frame, calls=n_calls,
                                                                 frames_per_call=B)
            print(f"[fps] pipelined {mode:10s} batch {B:3d}: end-to-end {1 / per_frame:8.1f} FPS "
                  f"(median of 5 x {n_calls} calls; vs eager max |diff| {par['max_abs_u8_vs_eager']:.0f}/255)")
    default = DeformEngine(model, "auto").mode
    results["default_mode"] = default
    results["batches"] = results["modes"][default]["batches"]
    results["fps"] = results["batches"]["1"]["end_to_end_fps"] if "1" in results["batches"] else None
    text = json.dumps(results, indent=2)
    RunFolder(a.run).write_benchmark(results)
    if a.out:
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
