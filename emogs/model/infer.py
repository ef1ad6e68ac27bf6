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

from emogs.model.head import TalkingHead, splat

MODES = ("eager", "graph", "graph-bf16")
OUT_KEYS = ("means", "quats", "scales", "opacities", "colors")


class DeformEngine:
    """`engine(audio (B,R,D), au_window (B,T,K))` -> dict of per-frame Gaussians
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

    def _eager(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.mode == "graph-bf16", cache_enabled=False):
            d = self.model.deformed(*inputs)
        return {k: d[k].float() for k in OUT_KEYS}

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> tuple:
        ins = tuple(x.clone() for x in inputs)
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
    def __call__(self, audio: torch.Tensor, au_window: torch.Tensor,
                 expression: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`expression` (B, E): mesh-rigged heads' expression coefficients (None: their default face)."""
        inputs = (audio, au_window) if expression is None else (audio, au_window, expression)
        if self.mode == "eager":
            return self._eager(*inputs)
        key = tuple(tuple(x.shape) for x in inputs)
        if key not in self._graphs:
            try:
                self._graphs[key] = self._capture(inputs)
            except Exception as e:  # noqa: BLE001 - any capture problem: render eagerly instead
                self.warn(f"CUDA graph capture failed ({type(e).__name__}: {e}); rendering without it")
                self.mode = "eager"
                torch.cuda.synchronize()
                return self._eager(*inputs)
        graph, ins, outs = self._graphs[key]
        for dst, src in zip(ins, inputs):
            dst.copy_(src, non_blocking=True)
        graph.replay()
        return outs


def composite_u8(d: dict[str, torch.Tensor], w2c: torch.Tensor, K: torch.Tensor, width: int, height: int,
                 background: torch.Tensor | None, backend: str = "auto") -> torch.Tensor:
    """Deformed Gaussians (`DeformEngine` output) -> rasterised, composited over `background` (B,H,W,3) or
    black (`emogs.model.head.splat`, as in training) -> uint8 (B, H, W, 3) on the device."""
    rgb = splat(d, w2c, K, width, height, background, backend)[0]
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


@torch.no_grad()
def render_with_engine(engine: DeformEngine, w2c: torch.Tensor, K: torch.Tensor, audio: torch.Tensor,
                       au_window: torch.Tensor, width: int, height: int, background: torch.Tensor | None,
                       backend: str = "auto") -> torch.Tensor:
    """One batch through the engine, the rasteriser and compositing -> uint8 (B, H, W, 3) on the device.
    w2c (B,4,4), K (B,3,3), audio (B,R,D), au_window (B,T,K), background (B,H,W,3) or None."""
    return composite_u8(engine(audio, au_window), w2c, K, width, height, background, backend)


class PipelinedRenderer:
    """Renders a stream of batches with the deformation of call t+1 running on a side CUDA stream while the
    rasteriser of call t runs (gsplat waits on the host for its tile-intersection count, which otherwise
    leaves the GPU idle while the host prepares the next network call). Two engines alternate (double
    buffering): the graph outputs of one call are not overwritten before its rasterisation is done.
    Output frames are identical to `render_with_engine` one call at a time; on the CPU it is that loop."""

    def __init__(self, model: TalkingHead, mode: str = "auto", warn: Callable[[str], None] | None = None) -> None:
        self.engines = [DeformEngine(model, mode, warn), DeformEngine(model, mode, warn)]
        self.cuda = next(model.parameters()).is_cuda
        if self.cuda:
            self.side = torch.cuda.Stream()
            self.ready = [torch.cuda.Event(), torch.cuda.Event()]
            self.free = [torch.cuda.Event(), torch.cuda.Event()]
            for e in self.free:
                e.record()

    @property
    def mode(self) -> str:
        return self.engines[0].mode

    def _launch(self, slot: int, b: tuple) -> dict[str, torch.Tensor]:
        audio, au_window, expr = b[2], b[3], (b[5] if len(b) > 5 else None)
        if not self.cuda:
            return self.engines[slot](audio, au_window, expr)
        self.side.wait_stream(torch.cuda.current_stream())  # inputs uploaded on the main stream
        with torch.cuda.stream(self.side):
            self.side.wait_event(self.free[slot])  # the rasteriser is done with this slot's previous outputs
            d = self.engines[slot](audio, au_window, expr)
            self.ready[slot].record(self.side)
        return d

    @torch.no_grad()
    def run(self, batches, width: int, height: int, backend: str = "auto"):
        """batches: iterable of (w2c (B,4,4), K (B,3,3), audio (B,R,D), au_window (B,T,K), background
        (B,H,W,3) or None[, expression (B,E) for mesh-rigged heads]), all on the model's device -> yields
        uint8 (B, H, W, 3) device tensors in order."""
        it = iter(batches)
        nxt, slot = next(it, None), 0
        pending = self._launch(slot, nxt) if nxt is not None else None
        while nxt is not None:
            cur, cur_slot, d = nxt, slot, pending
            nxt, slot = next(it, None), slot ^ 1
            if nxt is not None:
                pending = self._launch(slot, nxt)  # the next call's network, overlapping this rasterisation
            w2c, K, bg = cur[0], cur[1], cur[4]
            if self.cuda:
                main = torch.cuda.current_stream()
                main.wait_event(self.ready[cur_slot])
                for v in d.values():  # eager outputs come from the side stream's memory pool
                    v.record_stream(main)
            frames = composite_u8(d, w2c, K, width, height, bg, backend)
            if self.cuda:
                self.free[cur_slot].record()
            yield frames
