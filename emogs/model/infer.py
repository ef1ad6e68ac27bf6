"""Fast inference of a trained TalkingHead: the per-frame deformation replayed from a CUDA graph.

At batch 1 the deformation network of a 150k-Gaussian head is a few dozen small kernels; launching them one
by one from Python costs more than running them (2.3-2.5 ms on an H200 against ~0.3 ms of GPU work,
docs/render.md). `DeformEngine` captures `TalkingHead.deformed` once per batch size into a CUDA graph and
replays it: the inputs are copied into static buffers, the outputs are static tensors overwritten by the
next call. The rasteriser (gsplat) stays outside the graph: its tile-intersection buffers are sized on the
host from the data.

Modes:
  "eager"  plain PyTorch (CPU, or CUDA without capture),
  "graph"  CUDA-graph replay in float32 (the same arithmetic as eager; default on CUDA),
  "graph-bf16"  the same under bfloat16 autocast (matmuls in bf16; offsets then added in float32).
A capture failure falls back to eager with a warning, so rendering never breaks on it.
"""
from __future__ import annotations

import sys
from typing import Callable

import torch

from emogs.model.head import TalkingHead

MODES = ("eager", "graph", "graph-bf16")
OUT_KEYS = ("means", "quats", "scales", "opacities", "colors")


class DeformEngine:
    """`engine(world_to_cam (B,4,4), audio (B,R,D), au_window (B,T,K))` -> dict of per-frame Gaussians
    (means (B,N,3), quats (B,N,4), scales (B,N,3), opacities (B,N), colors (B,N,3)), as `model.deformed`.

    In graph modes the returned tensors belong to the engine and are overwritten by the next call with the
    same batch size: consume (rasterise) them first."""

    def __init__(self, model: TalkingHead, mode: str = "auto", warn: Callable[[str], None] | None = None) -> None:
        if mode == "auto":
            mode = "graph" if next(model.parameters()).is_cuda else "eager"
        if mode not in MODES:
            raise ValueError(f"unknown inference mode '{mode}' (choose from auto, {', '.join(MODES)})")
        if mode != "eager" and not next(model.parameters()).is_cuda:
            raise ValueError(f"inference mode '{mode}' needs the model on CUDA")
        self.model, self.mode = model, mode
        self.warn = warn or (lambda m: print(f"warning: {m}", file=sys.stderr, flush=True))
        self._graphs: dict[tuple, tuple] = {}  # input shapes -> (graph, static inputs, static outputs)

    def _eager(self, w2c: torch.Tensor, audio: torch.Tensor, au_window: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.mode == "graph-bf16", cache_enabled=False):
            d = self.model.deformed(w2c, audio, au_window)
        return {k: d[k].float() for k in OUT_KEYS}

    def _capture(self, w2c: torch.Tensor, audio: torch.Tensor, au_window: torch.Tensor) -> tuple:
        ins = (w2c.clone(), audio.clone(), au_window.clone())
        self.model.static_features()  # fill the inference cache outside the capture
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up on a side stream (cuBLAS workspaces, autocast caches)
            for _ in range(2):
                self._eager(*ins)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outs = self._eager(*ins)
        return graph, ins, outs

    @torch.no_grad()
    def __call__(self, w2c: torch.Tensor, audio: torch.Tensor, au_window: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.mode == "eager":
            return self._eager(w2c, audio, au_window)
        key = (tuple(w2c.shape), tuple(audio.shape), tuple(au_window.shape))
        if key not in self._graphs:
            try:
                self._graphs[key] = self._capture(w2c, audio, au_window)
            except Exception as e:  # noqa: BLE001 - any capture problem: render eagerly instead
                self.warn(f"CUDA graph capture failed ({type(e).__name__}: {e}); rendering without it")
                self.mode = "eager"
                torch.cuda.synchronize()
                return self._eager(w2c, audio, au_window)
        graph, ins, outs = self._graphs[key]
        for dst, src in zip(ins, (w2c, audio, au_window)):
            dst.copy_(src, non_blocking=True)
        graph.replay()
        return outs


@torch.no_grad()
def render_with_engine(engine: DeformEngine, w2c: torch.Tensor, K: torch.Tensor, audio: torch.Tensor,
                       au_window: torch.Tensor, width: int, height: int, background: torch.Tensor | None,
                       backend: str = "auto") -> torch.Tensor:
    """One batch through the engine, the rasteriser and compositing -> uint8 (B, H, W, 3) on the device.
    w2c (B,4,4), K (B,3,3), audio (B,R,D), au_window (B,T,K), background (B,H,W,3) or None."""
    from emogs.render import rasterize

    d = engine(w2c, audio, au_window)
    out = rasterize(d["means"], d["quats"], d["scales"], d["opacities"], d["colors"], w2c, K, width, height,
                    backend=backend)
    rgb = out.colors[..., :3]  # (B, H, W, 3) premultiplied
    if background is not None:
        rgb = rgb + (1 - out.alpha) * background
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)
