"""Test-split evaluation of a trained head: render every test frame over the background plate, write
RUN/test_render.mp4 (render | ground truth, test audio muxed) and RUN/metrics.json (PSNR, SSIM, LPIPS
on the full frame and on the face region)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from emogs.constants import FPS
from emogs.eval.image import box_crop, psnr_np, ssim_np
from emogs.model.head import TalkingHead
from emogs.train.data import FrameBank, face_box


@torch.no_grad()
def render_bank(model: TalkingHead, bank: FrameBank, backend: str = "auto", batch: int = 4,
                over_ground_truth: bool = False) -> np.ndarray:
    """Every frame of a FrameBank rendered with its own cameras, audio and AU windows over the plate (or, with
    `over_ground_truth`, pasted by its own alpha onto the ground-truth frame: the field's evaluation
    protocol), through the inference path (`emogs.model.infer`, as `emogs render`) -> (F, S, S, 3) uint8."""
    from emogs.model.infer import PipelinedRenderer

    n, S = len(bank), bank.size
    r = PipelinedRenderer(model, "auto")
    ex = bank.expression

    def bg(i: int) -> torch.Tensor:
        if over_ground_truth:
            return bank.images[i:i + batch].float() / 255.0
        return bank.background.expand(min(batch, n - i), -1, -1, -1)

    calls = ((bank.world_to_cam[i:i + batch], bank.K[i:i + batch], bank.audio[i:i + batch],
              bank.au_window[i:i + batch], bg(i), *(() if ex is None else (ex[i:i + batch],)))
             for i in range(0, n, batch))
    return torch.cat([f.cpu() for f in r.run(calls, S, S, backend)]).numpy()


@torch.no_grad()
def render_alpha(model: TalkingHead, bank: FrameBank, backend: str = "auto", batch: int = 4) -> np.ndarray:
    """Every frame's rendered head coverage (the alpha the field's protocol pastes the head by) -> (F, S, S)
    uint8 (0..255), eager rendering (`TalkingHead.forward`)."""
    n, S, ex = len(bank), bank.size, bank.expression
    out = []
    for i in range(0, n, batch):
        o = model(bank.world_to_cam[i:i + batch], bank.K[i:i + batch], bank.audio[i:i + batch],
                  bank.au_window[i:i + batch], S, S, None, backend=backend,
                  expression=None if ex is None else ex[i:i + batch])
        out.append((o.alpha[..., 0].clamp(0, 1) * 255).round().byte().cpu())
    return torch.cat(out).numpy()


def field_composite(render: np.ndarray, alpha: np.ndarray, gt: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """The field protocol's frame from a render over the plate: render = head + (1 - a) plate, so the head
    (premultiplied) is render - (1 - a) plate, pasted on the true frame: head + (1 - a) gt. The head is clipped
    to [0, a] (a premultiplied colour never exceeds its alpha), which keeps a compressed render's noise out of
    pixels the head does not cover (there the frame is the true one). uint8 (.., H, W, 3) frames, alpha
    (.., H, W) uint8."""
    a = alpha.astype(np.float32)[..., None]
    head = np.clip(render.astype(np.float32) - (1 - a / 255) * plate.astype(np.float32), 0, a)
    f = head + (1 - a / 255) * gt.astype(np.float32)
    return np.clip(np.round(f), 0, 255).astype(np.uint8)


def region_table(regions: dict) -> dict:
    """emogs.eval.regions' per-region dict, rounded for metrics.json: {name: {pixels_fraction, psnr, sse_share}}."""
    r = lambda x: None if x is None or not np.isfinite(x) else round(float(x), 4)
    return {k: {"pixels_fraction": r(v["pixels_fraction"]), "psnr": r(v["psnr"]), "sse_share": r(v["sse_share"])}
            for k, v in regions.items()}


def evaluate_test(model: TalkingHead, bank: FrameBank, run, cfg, audio: np.ndarray | None,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Render the test split, write run's test_render.mp4 (render | GT, audio) and metrics.json."""
    from emogs.io.media import write_video

    model.eval()
    frames = render_bank(model, bank, cfg.backend)  # (F, S, S, 3) u8
    gts = bank.images.cpu().numpy()
    labels = bank.labels.cpu().numpy()
    lp = None
    if cfg.eval_lpips:
        try:
            from emogs.eval.lpips import lpips_np
            lp = lpips_np
        except Exception as e:  # noqa: BLE001 - weights missing: report without LPIPS
            log(f"[train] LPIPS unavailable ({e}); metrics without it")
    full: dict[str, list[float]] = {"psnr": [], "ssim": [], "lpips": []}
    face: dict[str, list[float]] = {"psnr": [], "ssim": [], "lpips": []}
    field: dict[str, list[float]] = {"psnr": [], "ssim": [], "lpips": []}
    field_frames = render_bank(model, bank, cfg.backend, over_ground_truth=True)
    for r, g in zip(field_frames, gts):
        field["psnr"].append(psnr_np(r, g))
        field["ssim"].append(ssim_np(r, g))
        if lp is not None:
            field["lpips"].append(lp(r, g))
    for r, g, lab in zip(frames, gts, labels):
        full["psnr"].append(psnr_np(r, g))
        full["ssim"].append(ssim_np(r, g))
        if lp is not None:
            full["lpips"].append(lp(r, g))
        box = face_box(lab)
        if box is not None:
            rc, gc = box_crop(r, box), box_crop(g, box)
            if min(rc.shape[:2]) > 11:
                face["psnr"].append(psnr_np(rc, gc))
                face["ssim"].append(ssim_np(rc, gc))
                if lp is not None and min(rc.shape[:2]) >= 32:
                    face["lpips"].append(lp(rc, gc))
    mean = lambda d: {k: (float(np.mean(v)) if v else None) for k, v in d.items()}
    metrics = dict(split="test", num_frames=len(frames), resolution=bank.size, full=mean(full), face=mean(face),
                   field=mean(field), field_regions=_field_regions(field_frames, gts, labels),
                   num_gaussians=len(model.gaussians), variant=model.cfg.variant,
                   model_kind=getattr(model.cfg, "kind", "free"),
                   neck_keep=float(getattr(cfg, "neck_keep", -1.0)),
                   note="full: whole frame composited over the background plate; face: box around labels 3-6; "
                        "field: the head pasted by its rendered alpha onto the ground-truth frame, whole image "
                        "(the protocol of ER-NeRF / TalkingGaussian, whose tables report it); field_regions: where "
                        "the field protocol's squared error lies, per label region of the true frames; neck_keep: "
                        "where the head ends (>= 0: that many face heights below the jaw, as face-parsing heads; "
                        "< 0: the dataset's neck, into the collar), which the field numbers depend on")
    run.write_metrics(metrics)
    run.write_test_alpha(render_alpha(model, bank, cfg.backend))  # `emogs eval` rebuilds the field frames with it
    side = np.concatenate([frames, gts], axis=2)  # (F, S, 2S, 3) render | GT
    write_video(run.test_render_path, iter(side), fps=FPS, audio=audio)
    f, c, fd = metrics["full"], metrics["face"], metrics["field"]
    log(f"[train] test: PSNR {f['psnr']:.2f} SSIM {f['ssim']:.4f} LPIPS {f['lpips'] if f['lpips'] is None else round(f['lpips'], 4)}"
        f" | face PSNR {c['psnr'] if c['psnr'] is None else round(c['psnr'], 2)}"
        f" | field protocol (head on the true frame) PSNR {fd['psnr']:.2f}")
    return metrics


def _field_regions(frames: np.ndarray, gts: np.ndarray, labels: np.ndarray) -> dict | None:
    """Per-region error of the field protocol's frames (emogs.eval.regions), or None without frames."""
    if len(frames) == 0:
        return None
    from emogs.eval.regions import region_errors

    return region_table(region_errors(iter(frames), iter(gts), iter(labels))["regions"])
