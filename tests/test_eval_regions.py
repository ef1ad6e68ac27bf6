"""emogs.eval.regions: the error lands in the region where the render is wrong."""
from __future__ import annotations

import numpy as np

from emogs.eval.regions import region_errors


def _clip(n=8, H=32, W=32):
    gt = np.full((n, H, W, 3), 120, np.uint8)
    lab = np.zeros((n, H, W), np.uint8)
    lab[:, 8:24, 8:24] = 4  # upper face
    lab[:, 24:, :] = 1  # torso
    for i in range(n):  # the face changes in the second half (moving frames)
        if i >= 5:
            gt[i, 8:24, 8:24] = 120 + 20 * (i % 2)
    return gt, lab


def test_error_goes_to_the_wrong_region():
    gt, lab = _clip()
    pred = gt.copy()
    pred[:, 24:] = np.clip(gt[:, 24:].astype(int) + 40, 0, 255)  # only the torso is wrong
    r = region_errors(pred, gt, lab)
    R = r["regions"]
    assert R["torso"]["sse_share"] > 0.99 and R["expression"]["sse_share"] < 0.01
    assert R["torso"]["psnr"] < 20 and R["expression"]["psnr"] > 60
    assert abs(sum(v["pixels_fraction"] for v in R.values()) - 1) < 1e-6
    assert r["error_map"].shape == (32, 32) and r["error_map"][30, 5] > 0.1 and r["error_map"][10, 10] == 0


def test_still_and_moving_frames_are_told_apart():
    gt, lab = _clip()
    pred = gt.copy()
    pred[5:, 8:24, 8:24] = 0  # wrong face only where the face moves
    r = region_errors(pred, gt, lab)
    f = r["frames"]
    assert f["moving"]["count"] >= 2 and f["moving"]["psnr_face"] < f["still"]["psnr_face"]
