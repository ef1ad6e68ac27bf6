"""The field protocol's per-region breakdown: training writes metrics.json `field_regions` and the test alpha,
`emogs eval RUN --dataset DS` rebuilds the field frames (head pasted by its alpha on the true frame) from the
test video and reports where their squared error lies."""
from __future__ import annotations

import json

import numpy as np

from emogs.cli import main
from emogs.train.evaluate import field_composite


def test_field_composite_is_the_head_pasted_on_the_true_frame():
    rng = np.random.default_rng(0)
    H, W = 16, 12
    a = rng.random((H, W)).astype(np.float32)
    a[:4] = 0.0
    a[-3:] = 1.0
    head = rng.random((H, W, 3)).astype(np.float32) * a[..., None]  # premultiplied
    plate = rng.random((H, W, 3)).astype(np.float32)
    gt = rng.random((H, W, 3)).astype(np.float32)
    u8 = lambda x: np.round(x * 255).astype(np.uint8)
    render = u8(head + (1 - a[..., None]) * plate)
    want = u8(head + (1 - a[..., None]) * gt)
    got = field_composite(render, u8(a), u8(gt), u8(plate))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 3
    assert np.array_equal(got[:4], u8(gt)[:4])  # no head: the true frame
    assert np.array_equal(got[-3:], render[-3:])  # all head: the render


def test_eval_reports_the_field_protocol_per_region(tiny_run, may_dataset, tmp_path):
    m = json.loads((tiny_run / "metrics.json").read_text())
    fr = m["field_regions"]
    assert abs(sum(v["sse_share"] for v in fr.values()) - 1) < 1e-3
    assert (tiny_run / "test_alpha.npz").is_file()
    out = tmp_path / "ev"
    assert main(["eval", str(tiny_run), "--dataset", str(may_dataset), "-o", str(out), "--image-stride", "10",
                 "--identity-stride", "25"]) == 0
    r = json.loads((out / "metrics.json").read_text())
    assert (out / "error_map_field.png").is_file() and (out / "error_map.png").is_file()
    # rebuilt from the video (compressed) and the alpha: near the field PSNR training measured on exact renders
    assert abs(r["field_psnr_video"] - m["field"]["psnr"]) < 1.0, (r["field_psnr_video"], m["field"]["psnr"])
    # the torso is the true frame's there: far less of the error than over the static plate (ours)
    # the torso is the true frame's there, less what the head's alpha covers: better than over the static plate
    assert r["field_region_torso_psnr"] > r["region_torso_psnr"]
    for k, v in fr.items():  # the same split as training's exact one, up to the video's compression
        assert abs(r[f"field_region_{k}_sse_share"] - v["sse_share"]) < 0.02, k
        if v["pixels_fraction"] > 0.01:
            assert abs(r[f"field_region_{k}_psnr"] - v["psnr"]) < 0.5, k
    assert abs(sum(r[f"field_region_{k}_sse_share"] for k in fr) - 1) < 1e-3
