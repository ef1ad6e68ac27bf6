#!/usr/bin/env python3
"""GPU parity of gsplat vs emogs' PyTorch rasteriser, then gsplat (and torch-backend) timings at 512 x 512.

On CUDA: the same scenes rendered by gsplat 1.5.3 and by our PyTorch rasteriser on the GPU; prints max / mean
absolute differences of colour, alpha and expected depth and the cosine similarity of every parameter's gradient.
With --device cpu (a dry run to debug the script): the reference is the dense all-pairs rasteriser and the
scenes are scaled down.

    python scripts/gpu_render_parity_bench.py [--device cuda|cpu] [--out results.json] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from emogs.render import rasterize  # noqa: E402
from emogs.render.reference import rasterize_dense  # noqa: E402
from emogs.render.scenes import Scene, head_scene, random_scene  # noqa: E402

PARAMS = ("means", "quats", "scales", "opacities", "colors")


def log(*a) -> None:
    print(*a, flush=True)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def parity_cases(cpu: bool) -> list[dict]:
    """Scene specs; on CPU they are shrunk so the dense reference fits."""
    cases = [
        dict(name="random 2k 128px C2", kind="random", n=2000, size=128, cams=2),
        dict(name="random 20k 256px C4 D7+bg", kind="random", n=20000, size=256, cams=4, channels=7, bg=True),
        dict(name="head 30k 512px C2 SH3", kind="head", n=30000, size=512, cams=2, sh=3),
        dict(name="head 100k 512px C3", kind="head", n=100000, size=512, cams=3, bg=True),
        dict(name="random-wide 100k 512px C2 (near/behind/off-screen)", kind="random", n=100000, size=512,
             cams=2, spread=3.0, scale=0.03),
        dict(name="head 20k 256px C3 per-camera Gaussians", kind="head", n=20000, size=256, cams=3, percam=True),
    ]
    if cpu:
        for c in cases:
            c["n"] = max(50, c["n"] // 200)
            c["size"] = max(24, c["size"] // 8)
    return cases


def make_case(c: dict, dev: torch.device) -> tuple[Scene, dict]:
    """Build a scene and the extra rasterize kwargs for one case (float32 on dev)."""
    if c["kind"] == "head":
        sc = head_scene(c["n"], c["size"], c["cams"], c.get("channels", 3), seed=1)
    else:
        sc = random_scene(c["n"], c["size"], c["cams"], c.get("channels", 3), seed=1,
                          spread=c.get("spread", 1.0), scale=c.get("scale", 0.05))
    sc = sc.to(dev, torch.float32)
    kw: dict = {}
    g = torch.Generator().manual_seed(2)
    if c.get("sh"):
        k = (c["sh"] + 1) ** 2
        sh = 0.3 * torch.randn(c["n"], k, 3, generator=g)
        sh[:, 0] = (sc.colors.cpu() - 0.5) / 0.28209479177387814
        sc.colors = sh.to(dev)
        kw["sh_degree"] = c["sh"]
    if c.get("bg"):
        kw["background"] = torch.rand(c["cams"], sc.colors.shape[-1], generator=g).to(dev)
    if c.get("percam"):  # a different deformation of the Gaussians for every camera
        C = c["cams"]
        jit = 0.05 * torch.randn(C, c["n"], 3, generator=g).to(dev)
        sc.means = sc.means[None] + jit
        sc.quats = sc.quats[None].expand(C, -1, -1).contiguous()
        sc.scales = sc.scales[None] * (1 + 0.2 * torch.rand(C, c["n"], 1, generator=g).to(dev))
        sc.opacities = sc.opacities[None].expand(C, -1).contiguous()
        sc.colors = sc.colors[None].expand(C, -1, -1).contiguous()
    return sc, kw


def render(sc: Scene, kw: dict, backend: str, params: list[torch.Tensor]):
    if backend == "dense":
        return rasterize_dense(*params, sc.viewmats, sc.Ks, sc.width, sc.height, **kw)
    return rasterize(*params, sc.viewmats, sc.Ks, sc.width, sc.height, backend=backend, **kw)


def loss_of(out, w: dict, mask: torch.Tensor) -> torch.Tensor:
    """Random linear functional of colour, alpha and (where the reference alpha > 0.5) expected depth."""
    return (out.colors * w["colors"]).sum() + (out.alpha * w["alpha"]).sum() + \
        (out.depth * w["depth"] * mask).sum() * 0.01


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-300))


def run_parity(dev: torch.device, ref_backend: str) -> list[dict]:
    rows = []
    for c in parity_cases(dev.type == "cpu"):
        try:
            rows.append(parity_case(c, dev, ref_backend))
        except Exception as e:  # keep going: one failing case must not lose the others
            log(json.dumps({"case": c["name"], "error": repr(e)}))
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def parity_case(c: dict, dev: torch.device, ref_backend: str) -> dict:
    """Render one case with both backends; image differences and gradient cosines."""
    sc, kw = make_case(c, dev)
    res: dict = {"case": c["name"], "N": c["n"], "size": c["size"], "cams": c["cams"]}
    outs, grads, times = {}, {}, {}
    for be in (ref_backend, "torch"):
        ps = [p.detach().clone().requires_grad_(True) for p in sc.params()]
        sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        t0 = time.perf_counter()
        outs[be] = render(sc, kw, be, ps)
        sync(dev)
        times[be] = time.perf_counter() - t0
        if dev.type == "cuda":
            res[f"{be}_fwd_peak_extra_MB"] = (torch.cuda.max_memory_allocated(dev) - base) / 2 ** 20
        grads[be] = ps
    ref, ours = outs[ref_backend], outs["torch"]
    gen = torch.Generator().manual_seed(3)
    w = {k: torch.randn(getattr(ref, k).shape, generator=gen).to(dev) for k in ("colors", "alpha", "depth")}
    mask = (ref.alpha.detach() > 0.5).float()
    for be in (ref_backend, "torch"):
        loss_of(outs[be], w, mask).backward()
        for k in ("colors", "alpha", "depth"):
            setattr(outs[be], k, getattr(outs[be], k).detach())
    for k in ("colors", "alpha"):
        d = (getattr(ref, k) - getattr(ours, k)).abs()
        res[f"{k}_max"], res[f"{k}_mean"] = float(d.max()), float(d.mean())
    m = mask.bool()
    dd = (ref.depth - ours.depth).abs()[m]
    res["depth_max_where_alpha>0.5"] = float(dd.max()) if dd.numel() else 0.0
    res["depth_mean_where_alpha>0.5"] = float(dd.mean()) if dd.numel() else 0.0
    res["ref_alpha_mean"] = float(ref.alpha.mean())
    for name, ga, gb in zip(PARAMS, grads[ref_backend], grads["torch"]):
        res[f"cos_{name}"] = cos(ga.grad, gb.grad)
    res["ref_first_call_s"], res["torch_first_call_s"] = times[ref_backend], times["torch"]
    log(json.dumps(res))
    return res


def time_fn(fn, dev: torch.device, warmup: int, reps: int) -> float:
    """Median seconds of fn() with device sync."""
    for _ in range(warmup):
        fn()
    sync(dev)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench_case(sc: Scene, backend: str, dev: torch.device, warmup: int, reps: int) -> tuple[float, float]:
    ps = [p.detach().clone().requires_grad_(True) for p in sc.params()]

    def fwd():
        with torch.no_grad():
            rasterize(*ps, sc.viewmats, sc.Ks, sc.width, sc.height, backend=backend)

    def fwd_bwd():
        o = rasterize(*ps, sc.viewmats, sc.Ks, sc.width, sc.height, backend=backend)
        (o.colors.sum() + o.alpha.sum() + 1e-3 * o.depth.sum()).backward()

    return time_fn(fwd, dev, warmup, reps), time_fn(fwd_bwd, dev, warmup, reps)


def percam(sc: Scene, C: int) -> Scene:
    """Per-camera copies of the Gaussians (C, N, ...) with small per-frame offsets, as a deforming head."""
    g = torch.Generator().manual_seed(4)
    jit = (0.02 * torch.randn(C, sc.means.shape[0], 3, generator=g)).to(sc.means.device)
    rep = lambda x: x[None].expand((C,) + x.shape).contiguous()  # noqa: E731
    return Scene(sc.means[None] + jit, rep(sc.quats), rep(sc.scales), rep(sc.opacities), rep(sc.colors),
                 sc.viewmats, sc.Ks, sc.width, sc.height)


def run_bench(dev: torch.device, backend: str, ns: list[int], size: int, batch: int, warmup: int,
              reps: int) -> list[dict]:
    rows = []
    for n in ns:
        for mode, C in (("batch1", 1), (f"shared-{batch}cams", batch), (f"percam-{batch}", batch)):
            sc = head_scene(n, size, C, seed=5).to(dev, torch.float32)
            if mode.startswith("percam"):
                sc = percam(sc, C)
            try:
                f, fb = bench_case(sc, backend, dev, warmup, reps)
            except Exception as e:
                log(json.dumps({"backend": backend, "N": n, "mode": mode, "error": repr(e)}))
                continue
            r = {"backend": backend, "N": n, "size": size, "mode": mode, "images": C, "fwd_ms": 1e3 * f,
                 "fwd_bwd_ms": 1e3 * fb}
            log(json.dumps(r))
            rows.append(r)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_render.json"))
    ap.add_argument("--quick", action="store_true", help="fewer timing repetitions")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # full fp32 matmuls in the PyTorch rasteriser
    torch.backends.cudnn.allow_tf32 = False
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor(),
            "command": " ".join(sys.argv)}
    if dev.type == "cuda":
        import gsplat
        info["gsplat"] = gsplat.__version__
        t0 = time.perf_counter()
        sc = random_scene(100, 32, 1).to(dev)
        rasterize(*sc.params(), sc.viewmats, sc.Ks, 32, 32, backend="gsplat")  # JIT-compiles gsplat's kernels
        sync(dev)
        info["gsplat_first_call_s"] = time.perf_counter() - t0
    log(json.dumps(info))
    ref = "gsplat" if dev.type == "cuda" else "dense"
    results = {"info": info, "parity": run_parity(dev, ref)}
    warm, reps = (1, 3) if args.quick or dev.type == "cpu" else (3, 10)
    if dev.type == "cuda":
        results["bench_gsplat"] = run_bench(dev, "gsplat", [10_000, 50_000, 100_000, 200_000], 512, 4, warm, reps)
        results["bench_torch_gpu"] = run_bench(dev, "torch", [10_000, 100_000], 512, 4, 1, 3)
    else:
        results["bench_torch_cpu"] = run_bench(dev, "torch", [2000], 64, 2, warm, reps)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
