"""End to end: `emogs prepare` a 4 s slice of may_5s.mp4 at 128 px, `emogs train` it briefly on the CPU
(64 px, ~3 k Gaussians), check the loss falls, the run folder is complete, and the head beats the plate."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emogs.cli import main


def test_train_end_to_end_on_a_real_clip(may_dataset, tmp_path):
    from emogs.data.dataset import TalkingHeadDataset
    from emogs.io.media import probe
    from emogs.run import RunFolder
    from emogs.train.data import FrameBank
    from emogs.train.evaluate import render_bank

    run = tmp_path / "run"
    over = {"resolution": 64, "log_every": 3, "model": {"num_face": 1500, "num_shell": 1000, "num_mouth": 200},
            "num_vote_views": 12}
    rc = main(["train", str(may_dataset), "-o", str(run), "--iters", "30", "--device", "cpu",
               "--config-json", json.dumps(over)])
    assert rc == 0
    for f in ("run.json", "config.json", "model.safetensors", "speech_aus.safetensors", "train_cameras.npz", "gaussians.ply", "background.png", "dataset.json",
              "train_log.jsonl", "metrics.json", "test_render.mp4", "checkpoints/last.safetensors",
              "checkpoints/last_optim.safetensors", "checkpoints/last_state.json"):
        assert (run / f).is_file(), f
    assert list((run / "previews").glob("*.png"))
    log = [json.loads(s) for s in (run / "train_log.jsonl").read_text().splitlines()]
    l1 = [r["l1"] for r in log]
    assert len(l1) == 10 and np.mean(l1[-3:]) < 0.8 * np.mean(l1[:2]), l1  # the loss falls
    m = json.loads((run / "metrics.json").read_text())
    for part in ("full", "face", "field"):
        for k in ("psnr", "ssim", "lpips"):
            assert m[part][k] is not None and np.isfinite(m[part][k])
    assert m["field"]["psnr"] > m["full"]["psnr"]  # the field's protocol pastes the head on the true frame
    info = probe(run / "test_render.mp4")
    assert info.has_audio and (info.width, info.height) == (128, 64)

    # the trained head beats compositing nothing over the plate
    test = FrameBank.from_dataset(TalkingHeadDataset(may_dataset, split="test"), 64)
    gt = test.images.float() / 255
    plate_psnr = float(-10 * torch.log10(((test.background - gt) ** 2).mean()))
    assert m["full"]["psnr"] > plate_psnr + 3, (m["full"]["psnr"], plate_psnr)

    # inference API: explicit AU controls change the render
    folder = RunFolder(run)
    assert folder.is_complete() and folder.info()["iterations"] == 30
    _, model = folder.load_model()
    a = render_bank(model, test)
    test.au_window[:, :, :8] = 1.0  # upper-face AUs up
    b = render_bank(model, test)
    assert a.shape == (len(test), 64, 64, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, b)


def test_neck_keep_run_gets_its_own_plate_with_the_neck(may_dataset, tmp_path):
    """`neck_keep`: the run's background.png is the dataset's, except where the head gave up the neck, which is
    filled from the training frames (the dataset plate only has an inpainted guess there)."""
    import cv2

    run = tmp_path / "run"
    over = {"resolution": 64, "log_every": 3, "model": {"num_face": 800, "num_shell": 400, "num_mouth": 100},
            "num_vote_views": 6, "neck_keep": 0.1, "eval_lpips": False}
    assert main(["train", str(may_dataset), "-o", str(run), "--iters", "4", "--device", "cpu",
                 "--config-json", json.dumps(over)]) == 0
    ds_plate = cv2.imread(str(may_dataset / "background.png")).astype(np.int16)
    run_plate = cv2.imread(str(run / "background.png")).astype(np.int16)
    assert run_plate.shape == ds_plate.shape
    changed = np.abs(run_plate - ds_plate).max(-1) > 8
    assert 0.002 < changed.mean() < 0.2, changed.mean()  # some of the frame, not all of it
    rows = np.flatnonzero(changed.any(1))
    assert rows.mean() > ds_plate.shape[0] / 2  # the neck: the lower half of the frame
    assert json.loads((run / "config.json").read_text())["neck_keep"] == 0.1
    assert json.loads((run / "metrics.json").read_text())["neck_keep"] == 0.1  # the metrics say where the head ends
