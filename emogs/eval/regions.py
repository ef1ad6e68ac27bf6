"""Where the error of a render goes: per region (the dataset's label maps: background, torso, hair/ears/neck,
synergy, upper face, mouth zone, mouth interior), per frame class (still vs moving face), as PSNR inside the
region, mean absolute error and the region's share of the whole image's squared error, plus a mean error map.

Pure: frames and label maps in, numbers and an error image out (the eval room writes them)."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from emogs.data.masks import LABEL_NAMES

FACE_LABELS = (3, 4, 5, 6)  # synergy, expression, audio, mouth interior: the face box of the training metrics


def _psnr(sse: float, n: float) -> float:
    return float(10 * np.log10(1.0 / max(sse / max(n, 1.0), 1e-12))) if n > 0 else float("nan")


def region_errors(pred: Iterable[np.ndarray], gt: Iterable[np.ndarray], labels: Iterable[np.ndarray],
                  moving_quantile: float = 0.5) -> dict:
    """pred, gt: (H, W, 3) uint8 frames; labels: (H, W) uint8 label maps of the ground-truth frames, all in
    the same order. A frame is "moving" when the face's change from the previous ground-truth frame (mean
    |difference| over face labels) is above the `moving_quantile` of the clip. Returns
    {"regions": {name: {pixels_fraction, psnr, mae, sse_share}}, "frames": {still/moving: {psnr_face, count}},
    "error_map": (H, W) float32 mean |error| (0..1), "per_frame_face_psnr": (F,)}."""
    K = len(LABEL_NAMES)
    sse = np.zeros(K)
    sae = np.zeros(K)
    cnt = np.zeros(K)
    err_map = None
    face_sse, face_n, motion = [], [], []
    prev = None
    for p, g, lab in zip(pred, gt, labels):
        p = p.astype(np.float32) / 255
        g = g.astype(np.float32) / 255
        if lab.shape != p.shape[:2]:
            raise ValueError(f"label map {lab.shape} does not match the frame {p.shape[:2]}")
        d2 = ((p - g) ** 2).mean(-1)
        d1 = np.abs(p - g).mean(-1)
        idx = np.minimum(lab, K - 1).ravel()
        sse += np.bincount(idx, d2.ravel(), K)
        sae += np.bincount(idx, d1.ravel(), K)
        cnt += np.bincount(idx, minlength=K)
        err_map = d1 if err_map is None else err_map + d1
        face = np.isin(lab, FACE_LABELS)
        face_sse.append(float(d2[face].sum()))
        face_n.append(float(face.sum()))
        motion.append(float(np.abs(g - prev).mean(-1)[face].mean()) if prev is not None and face.any() else np.nan)
        prev = g
    F = len(face_sse)
    if F == 0:
        raise ValueError("no frames")
    total = sse.sum()
    regions = {name: {"pixels_fraction": float(cnt[k] / cnt.sum()), "psnr": _psnr(sse[k], cnt[k]),
                      "mae": float(sae[k] / cnt[k]) if cnt[k] else float("nan"),
                      "sse_share": float(sse[k] / total) if total > 0 else float("nan")}
               for k, name in enumerate(LABEL_NAMES)}
    fs, fn, mo = np.array(face_sse), np.array(face_n), np.array(motion)
    per_frame = np.array([_psnr(a, b) for a, b in zip(fs, fn)])
    ok = ~np.isnan(mo)
    frames = {}
    if ok.sum() >= 2:
        thr = float(np.quantile(mo[ok], moving_quantile))
        for name, sel in (("still", ok & (mo <= thr)), ("moving", ok & (mo > thr))):
            frames[name] = {"psnr_face": _psnr(fs[sel].sum(), fn[sel].sum()), "count": int(sel.sum()),
                            "face_change_mean": float(mo[sel].mean()) if sel.any() else float("nan")}
        frames["threshold_face_change"] = thr
    return {"regions": regions, "frames": frames, "error_map": (err_map / F).astype(np.float32),
            "per_frame_face_psnr": per_frame}


def error_map_image(err: np.ndarray, gt_frame: np.ndarray, vmax: float = 0.15) -> np.ndarray:
    """(H, 2W, 3) uint8: a ground-truth frame | the mean error map (inferno-like ramp, 0..vmax)."""
    import cv2

    e = np.clip(err / vmax, 0, 1)
    heat = cv2.applyColorMap((e * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
    return np.concatenate([gt_frame, heat], 1)
