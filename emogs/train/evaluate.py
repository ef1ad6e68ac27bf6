"""Test-split evaluation of a trained head: render every test frame over the background plate, write
RUN/test_render.mp4 (render | ground truth, test audio muxed) and RUN/metrics.json (PSNR, SSIM, LPIPS
on the full frame and on the face region)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from emogs.eval.image import box_crop, psnr_np, ssim_np
from emogs.io.atomic import write_json
from emogs.model.head import TalkingHead, render_frames
from emogs.train.data import FrameBank, face_box


def evaluate_test(model: TalkingHead, bank: FrameBank, run_dir: Path, cfg, audio: np.ndarray | None,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    from emogs.io.media import write_video

    model.eval()
    frames = render_frames(model, bank.world_to_cam, bank.K, bank.audio, bank.au_window, bank.size, bank.size,
                           bank.background, backend=cfg.backend).numpy()  # (F, S, S, 3) u8
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
                   num_gaussians=len(model.gaussians), variant=model.cfg.variant,
                   note="full: whole frame composited over the background plate; face: box around labels 3-6")
    write_json(run_dir / "metrics.json", metrics)
    side = np.concatenate([frames, gts], axis=2)  # (F, S, 2S, 3) render | GT
    write_video(run_dir / "test_render.mp4", iter(side), fps=25, audio=audio)
    f, c = metrics["full"], metrics["face"]
    log(f"[train] test: PSNR {f['psnr']:.2f} SSIM {f['ssim']:.4f} LPIPS {f['lpips'] if f['lpips'] is None else round(f['lpips'], 4)}"
        f" | face PSNR {c['psnr'] if c['psnr'] is None else round(c['psnr'], 2)}")
    return metrics
