"""The metric suite on aligned predicted / ground-truth frames: `evaluate_frames`, the core of `emogs eval`.

Frames are streamed (one pair in memory at a time); per-frame values are kept and reduced at the end.
Metric keys (stable; NaN when not applicable; see docs/eval.md for exact definitions):
  psnr ssim lpips                      full frame, mean over frames
  psnr_face ssim_face lpips_face       on the face box (468 GT MediaPipe landmarks, +5% margin) per frame
  lmd_mouth lmd_face                   MediaPipe landmark distance, px at 512 px frame width
  csim_dlib id_dist_dlib               dlib ResNet identity, render vs GT, every `identity_stride`-th frame
  aue_upper aue_lower au_jerk au_jerk_gt   AU metrics (AUs from emogs.face.aus)
  e_score e_score_gt e_agree_gt        FER2013 classifier: accuracy vs the requested label on render / GT
                                       frames, and render-vs-GT agreement of the predicted class
  lipsync_conf lipsync_dist lipsync_offset_frames lipsync_score   our lip-sync expert (emogs.eval.lipsync),
                                       the headline sync numbers (+ *_gt on the GT frames with the same audio)
  sync_mouth_audio_corr sync_offset_frames sync_best_corr sync_confidence   mouth opening vs speech-band
                                       energy (emogs.eval.sync), a secondary check (+ *_gt)
"""
from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch

from emogs.errors import InputError
from emogs.eval import landmarks as lmk
from emogs.eval.au_metrics import au_jerk, aue
from emogs.eval.image import box_crop, psnr, ssim, to_tensor
from emogs.eval.sync import min_sync_frames, sync_scores

GROUPS = ("image", "face_image", "landmarks", "identity", "aus", "emotion", "sync")


@dataclass
class EvalOptions:
    fps: float = 25.0
    sample_rate: int = 16000
    emotion: str | None = None  # requested / ground-truth emotion label of the clip (e_score)
    lpips_net: str = "alex"
    image_stride: int = 1  # PSNR/SSIM/LPIPS (full and face) on every k-th frame (LPIPS is slow on CPU)
    identity_stride: int = 5  # dlib on every k-th frame
    max_lag: int = 15  # sync lag search, frames
    groups: tuple[str, ...] = GROUPS
    progress: bool = False


@dataclass
class EvalResult:
    metrics: dict[str, Any]  # flat, stable keys -> float | int | str | None
    series: dict[str, np.ndarray] = field(default_factory=dict)  # per-frame tracks for plots
    extra: dict[str, Any] = field(default_factory=dict)  # distributions, counts
    notes: list[str] = field(default_factory=list)


def _nanmean(x: list[float] | np.ndarray) -> float:
    a = np.asarray(x, np.float64)
    return float(np.nanmean(a)) if a.size and not np.isnan(a).all() else float("nan")


class _FrameMetrics:
    """Per-frame image metrics (full frame and face box) in torch, float32."""

    def __init__(self, net: str):
        from emogs.eval.lpips import get_lpips

        self.lpips = get_lpips(net)

    @torch.no_grad()
    def __call__(self, p: np.ndarray, g: np.ndarray) -> tuple[float, float, float]:
        tp, tg = to_tensor(p)[None], to_tensor(g)[None]  # (1, H, W, 3)
        s = float(ssim(tp, tg)) if min(p.shape[:2]) > 10 else float("nan")
        lp = float(self.lpips(tp, tg)[0]) if min(p.shape[:2]) >= 32 else float("nan")
        return float(psnr(tp, tg)[0]), s, lp


def evaluate_frames(pred_frames: Iterable[np.ndarray], gt_frames: Iterable[np.ndarray],
                    audio: np.ndarray | None = None, options: EvalOptions | None = None) -> EvalResult:
    """All applicable metrics on aligned frame streams (RGB uint8 (H, W, 3), same size) and the clip's
    16 kHz mono audio (for sync; None skips it). Streams of unequal length are cut to the shorter."""
    o = options or EvalOptions()
    g_on = set(o.groups)
    need_face = bool(g_on & {"face_image", "landmarks", "aus", "emotion", "sync"})
    label = None
    if "emotion" in g_on and o.emotion:
        from emogs.eval.emotion import normalize_label

        try:
            label = normalize_label(o.emotion)
        except ValueError as e:
            raise InputError(str(e)) from None

    fm = _FrameMetrics(o.lpips_net) if g_on & {"image", "face_image"} else None
    trackers = None
    if need_face:
        from emogs.face.tracker import FaceTracker

        trackers = (FaceTracker(video_mode=True), FaceTracker(video_mode=True))
    mouths = None
    if "sync" in g_on and audio is not None:
        from emogs.eval.lipsync import MouthCollector
        from emogs.experts.sync import load_sync_expert

        expert = load_sync_expert()
        mouths = {"pred": MouthCollector(expert.cfg.region), "gt": MouthCollector(expert.cfg.region)}
    embedder = None
    if "identity" in g_on:
        from emogs.eval.identity import DlibFaceEmbedder

        embedder = DlibFaceEmbedder()
    fer = None
    if "emotion" in g_on:
        from emogs.eval.emotion import FerClassifier

        fer = FerClassifier()

    per: dict[str, list] = {k: [] for k in ("psnr", "ssim", "lpips", "psnr_face", "ssim_face", "lpips_face",
                                           "csim", "id_dist")}
    lms: dict[str, list] = {"pred": [], "gt": []}
    bss: dict[str, list] = {"pred": [], "gt": []}
    emo: dict[str, list] = {"pred": [], "gt": []}
    emo_src: dict[str, int] = {}
    nan_lm = np.full((478, 3), np.nan, np.float32)
    nan_bs = np.full(52, np.nan, np.float32)
    size = None
    n = 0
    unmatched = 0
    t0 = time.monotonic()
    try:
        for p, g in itertools.zip_longest(pred_frames, gt_frames):
            if p is None or g is None:
                unmatched += 1
                continue
            if p.shape != g.shape:
                raise InputError(f"frame {n}: predicted {p.shape} vs ground truth {g.shape} differ in size")
            size = g.shape[:2]
            h, w = size
            do_img = fm is not None and n % max(1, o.image_stride) == 0
            if do_img and "image" in g_on:
                a, b, c = fm(p, g)
                per["psnr"].append(a), per["ssim"].append(b), per["lpips"].append(c)
            res = {}
            if trackers is not None:
                ts = int(round(n * 1000.0 / o.fps))
                res = {"pred": trackers[0].track(p, ts), "gt": trackers[1].track(g, ts)}
                for k in ("pred", "gt"):
                    lms[k].append(res[k].landmarks if res[k] is not None else nan_lm)
                    bss[k].append(res[k].blendshapes if res[k] is not None else nan_bs)
                    if mouths is not None:
                        mouths[k].add(p if k == "pred" else g, res[k].landmarks if res[k] is not None else None)
            ref = res.get("gt") or res.get("pred")
            box = lmk.face_box(ref.landmarks, w, h) if ref is not None else None
            if do_img and "face_image" in g_on:
                if box is not None and box[2] - box[0] > 10 and box[3] - box[1] > 10:
                    a, b, c = fm(box_crop(p, box), box_crop(g, box))
                else:
                    a = b = c = float("nan")
                per["psnr_face"].append(a), per["ssim_face"].append(b), per["lpips_face"].append(c)
            if embedder is not None and n % max(1, o.identity_stride) == 0:
                rect = embedder.detect(g)  # GT box for both: the frames are aligned (docs/eval.md)
                if rect is not None:
                    from emogs.eval.identity import cosine, euclidean

                    eg, ep = embedder.embed(g, rect), embedder.embed(p, rect)
                    per["csim"].append(cosine(ep, eg)), per["id_dist"].append(euclidean(ep, eg))
                else:
                    per["csim"].append(float("nan")), per["id_dist"].append(float("nan"))
            if fer is not None:
                for k, img in (("pred", p), ("gt", g)):
                    r = res.get(k)
                    fb = lmk.face_box(r.landmarks, w, h, 0.0) if r is not None else None
                    prob, src = fer.predict(img, fb)
                    emo[k].append(prob if prob is not None else np.full(7, np.nan, np.float32))
                    emo_src[f"{k}_{src}"] = emo_src.get(f"{k}_{src}", 0) + 1
            n += 1
            if o.progress and n % 25 == 0:
                print(f"\r  eval: {n} frames, {n / (time.monotonic() - t0):.1f} fps", end="", flush=True,
                      file=sys.stderr)
    finally:
        if trackers is not None:
            for t in trackers:
                t.close()
    if o.progress:
        print(file=sys.stderr)
    if n == 0:
        raise InputError("no frame pairs to evaluate")

    h, w = size
    m: dict[str, Any] = {"num_frames": n, "width": w, "height": h, "fps_video": o.fps}
    out = EvalResult(metrics=m)
    if unmatched:
        out.notes.append(f"the two frame streams differ in length by {unmatched} frames; the extra frames "
                         "were ignored")
    m["frames_unmatched"] = unmatched
    for k in ("psnr", "ssim", "lpips", "psnr_face", "ssim_face", "lpips_face"):
        if per[k]:
            m[k] = _nanmean(per[k])
            out.series[k] = np.asarray(per[k], np.float32)
    if "image" in g_on or "face_image" in g_on:
        m["lpips_net"] = o.lpips_net
        m["image_stride"] = max(1, o.image_stride)
    if embedder is not None:
        m["csim_dlib"] = _nanmean(per["csim"])
        m["id_dist_dlib"] = _nanmean(per["id_dist"])
        m["identity_stride"] = max(1, o.identity_stride)
        m["identity_frames"] = int(np.sum(~np.isnan(np.asarray(per["csim"], np.float64))))
        out.series["csim_dlib"] = np.asarray(per["csim"], np.float32)
    if trackers is not None:
        lp, lg = np.stack(lms["pred"]), np.stack(lms["gt"])  # (N, 478, 3)
        bp, bg = np.stack(bss["pred"]), np.stack(bss["gt"])  # (N, 52)
        m["tracked_pred"] = float(np.mean(~np.isnan(lp[:, 0, 0])))
        m["tracked_gt"] = float(np.mean(~np.isnan(lg[:, 0, 0])))
        if "landmarks" in g_on:
            m["lmd_mouth"] = _nanmean(lmk.lmd(lp, lg, lmk.LIPS, w))
            m["lmd_face"] = _nanmean(lmk.lmd(lp, lg, lmk.FACE, w))
            m["lmd_ref_width"] = lmk.LMD_REF_WIDTH
        if "aus" in g_on:
            _au_metrics(out, lp, lg, bp, bg)
        if "sync" in g_on and audio is not None:
            if n < min_sync_frames(o.max_lag):
                out.notes.append(f"sync metrics n/a: the clip has {n} frames ({n / o.fps:.2f} s) and the lag "
                                 f"search over +-{o.max_lag} frames needs at least {min_sync_frames(o.max_lag)} "
                                 f"({min_sync_frames(o.max_lag) / o.fps:.1f} s); evaluate a longer clip (for "
                                 "`emogs eval`, prepare with a larger --test-fraction)")
            from emogs.eval.lipsync import MIN_FRAMES, lipsync_from_crops

            for tag, k in (("", "pred"), ("_gt", "gt")):
                crops, ok = mouths[k].crops()
                s, curve = lipsync_from_crops(crops, ok, audio, expert, o.sample_rate, o.max_lag)
                m.update({key + tag: v for key, v in s.items()})
                out.series["lipsync_curve" + (tag or "_pred")] = curve.astype(np.float32)
                if np.isnan(s["lipsync_conf"]):
                    out.notes.append(f"lipsync{tag}: needs at least {MIN_FRAMES} frames (1 s) with a tracked face "
                                     f"({int(ok.sum())} of {n})")
            for tag, l in (("", lp), ("_gt", lg)):
                mouth = lmk.mouth_opening(l)
                s, curve = sync_scores(mouth, audio, o.sample_rate, o.fps, o.max_lag)
                m.update({k + tag: v for k, v in s.items()})
                out.series["mouth_open" + (tag or "_pred")] = mouth.astype(np.float32)
                out.series["sync_curve" + (tag or "_pred")] = curve.astype(np.float32)
            m["sync_max_lag"] = o.max_lag
        elif "sync" in g_on:
            out.notes.append("no audio: sync metrics skipped")
    if fer is not None:
        _emotion_metrics(out, np.stack(emo["pred"]), np.stack(emo["gt"]), label, o.emotion)
        out.extra["emotion_face_box_source"] = emo_src
    return out


def _au_metrics(out: EvalResult, lp: np.ndarray, lg: np.ndarray, bp: np.ndarray, bg: np.ndarray) -> None:
    """AUs of both streams with ONE geometry reference: the GT clip's least expressive frames."""
    from emogs.face.aus import AU_NAMES, LOWER_AUS, UPPER_AUS, aus_from_blendshapes, geometry_features, rest_frames

    okp, okg = ~np.isnan(bp[:, 0]), ~np.isnan(bg[:, 0])
    if okg.sum() < 3 or okp.sum() < 3:
        out.notes.append("too few tracked frames for AU metrics")
        return
    base = np.median(geometry_features(lg[okg][rest_frames(bg[okg])]), axis=0)
    ap = np.full((len(bp), len(AU_NAMES)), np.nan, np.float32)
    ag = np.full((len(bg), len(AU_NAMES)), np.nan, np.float32)
    ap[okp] = aus_from_blendshapes(bp[okp], lp[okp], baseline=base)
    ag[okg] = aus_from_blendshapes(bg[okg], lg[okg], baseline=base)
    m = out.metrics
    m["aue_upper"] = aue(ap, ag, AU_NAMES, UPPER_AUS)
    m["aue_lower"] = aue(ap, ag, AU_NAMES, LOWER_AUS)
    m["au_jerk"] = au_jerk(ap)
    m["au_jerk_gt"] = au_jerk(ag)
    out.series["aus_pred"], out.series["aus_gt"] = ap, ag
    out.extra["au_names"] = list(AU_NAMES)


def _emotion_metrics(out: EvalResult, pp: np.ndarray, pg: np.ndarray, label: str | None, raw: str | None) -> None:
    from emogs.eval.emotion import FER_LABELS

    m = out.metrics
    okp, okg = ~np.isnan(pp[:, 0]), ~np.isnan(pg[:, 0])
    cp, cg = pp.argmax(1), pg.argmax(1)  # NaN rows give 0; masked below
    both = okp & okg
    m["e_agree_gt"] = float(np.mean(cp[both] == cg[both])) if both.any() else float("nan")
    out.extra["emotion_counts_pred"] = {e: int(np.sum(cp[okp] == i)) for i, e in enumerate(FER_LABELS)}
    out.extra["emotion_counts_gt"] = {e: int(np.sum(cg[okg] == i)) for i, e in enumerate(FER_LABELS)}
    out.series["emotion_probs_pred"], out.series["emotion_probs_gt"] = pp, pg
    if raw:
        m["emotion_label"] = raw
        if label is None:
            m["e_score"] = m["e_score_gt"] = float("nan")
            out.notes.append(f"emotion '{raw}' has no FER2013 class: e_score is not defined for it")
        else:
            k = FER_LABELS.index(label)
            m["e_score"] = float(np.mean(cp[okp] == k)) if okp.any() else float("nan")
            m["e_score_gt"] = float(np.mean(cg[okg] == k)) if okg.any() else float("nan")
