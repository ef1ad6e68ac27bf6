#!/usr/bin/env python
"""Validate the `emogs eval` metrics on the real data in ../shared/data; writes figures + numbers for docs/eval.md.

    python scripts/eval_validate.py [-o docs/eval] [--quick]

Sections: PSNR/SSIM vs scikit-image, CSIM (dlib) on face photos and consecutive frames, the FER2013
classifier on the 16 MEAD clips (confusion matrix), AUE vs time shift, sync score vs shifted / foreign audio.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOGS_SHARED_DATA", ROOT.parent / "shared" / "data"))
CLIPS = ["may_5s", "macron_50s", "acosta_71s", "lieu_60s_256px"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rgb(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def psnr_ssim_vs_skimage() -> dict:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from emogs.eval.image import psnr_np, ssim, ssim_np, to_tensor
    from emogs.io.media import read_frames

    dp, ds, ds32, n = 0.0, 0.0, 0.0, 0
    for c in CLIPS:
        fr = list(read_frames(SHARED / "video" / f"{c}.mp4", max_seconds=0.5))
        for a, b in [(fr[0], fr[1]), (fr[0], fr[-1]), (fr[3], fr[7])]:
            ref = structural_similarity(a / 255.0, b / 255.0, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False)
            ds = max(ds, abs(ssim_np(a, b) - ref))
            ds32 = max(ds32, abs(float(ssim(to_tensor(a)[None], to_tensor(b)[None])) - ref))
            dp = max(dp, abs(psnr_np(a, b) - peak_signal_noise_ratio(a, b, data_range=255)))
            n += 1
    return {"pairs": n, "max_abs_diff_psnr_db": dp, "max_abs_diff_ssim_float64": ds, "max_abs_diff_ssim_float32": ds32}


def csim(out: Path) -> dict:
    from emogs.eval.identity import DlibFaceEmbedder, cosine, euclidean
    from emogs.io.media import read_frames

    emb = DlibFaceEmbedder()
    files = sorted(p for p in (SHARED / "faces").iterdir() if p.suffix in (".jpg", ".png"))
    e = {p.stem: emb.embed(_rgb(p)) for p in files}
    names = list(e)
    mat = np.array([[cosine(e[a], e[b]) for b in names] for a in names])
    same = cosine(e["obama"], e["obama2"])
    diff = [(a, b, cosine(e[a], e[b]), euclidean(e[a], e[b])) for a, b in itertools.combinations(names, 2)
            if {a, b} != {"obama", "obama2"}]
    consec = {}
    for c in CLIPS:
        it = read_frames(SHARED / "video" / f"{c}.mp4", max_seconds=2.1)
        fr = list(it)
        consec[c] = {"next_frame": cosine(emb.embed(fr[0]), emb.embed(fr[1])),
                     "plus_2s": cosine(emb.embed(fr[0]), emb.embed(fr[-1]))}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(mat, vmin=0.7, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i, j in itertools.product(range(len(names)), repeat=2):
        ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w" if mat[i, j] < 0.9 else "k")
    fig.colorbar(im)
    ax.set_title("csim_dlib between face photos")
    fig.tight_layout()
    fig.savefig(out / "csim_faces.png", dpi=90)
    plt.close(fig)
    return {"same_person_obama": same, "different_max": max(d[2] for d in diff),
            "different_max_pair": max(diff, key=lambda d: d[2])[:2], "different_mean": float(np.mean([d[2] for d in diff])),
            "different_min": min(d[2] for d in diff), "different_pairs": len(diff),
            "different_pairs_below_dlib_0.6": [d[:2] for d in diff if d[3] < 0.6],
            "same_person_dist": euclidean(e["obama"], e["obama2"]), "consecutive_frames": consec}


def emotion(out: Path, stride: int) -> dict:
    from emogs.eval.emotion import FER_LABELS, FerClassifier, normalize_label
    from emogs.io.media import read_frames

    fer = FerClassifier()
    rows = ["angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised"]
    conf = np.zeros((len(rows), 7), int)
    clips = []
    for p in sorted((SHARED / "emotion").glob("*.mp4")):
        lab = p.stem.split("_")[2]
        probs = []
        for f in itertools.islice(read_frames(p), 0, None, stride):
            pr, _ = fer.predict(f)
            if pr is not None:
                probs.append(pr)
        P = np.stack(probs)
        pred = P.argmax(1)
        conf[rows.index(lab)] += np.bincount(pred, minlength=7)
        target = normalize_label(lab)
        clips.append({"clip": p.name, "label": lab, "fer_class": target, "frames": len(P),
                      "frame_accuracy": None if target is None else float(np.mean(pred == FER_LABELS.index(target))),
                      "clip_prediction": FER_LABELS[int(P.mean(0).argmax())]})
    scored = [c for c in clips if c["fer_class"] is not None]
    per = {}
    for lab in rows:
        cs = [c for c in scored if c["label"] == lab]
        if cs:
            per[lab] = float(np.mean([c["frame_accuracy"] for c in cs]))
    frames_ok = sum(c["frame_accuracy"] * c["frames"] for c in scored)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(7), FER_LABELS, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [f"{r} (MEAD)" for r in rows])
    for i, j in itertools.product(range(len(rows)), range(7)):
        ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                color="w" if norm[i, j] > 0.5 else "k")
    ax.set_xlabel("FER2013 classifier output")
    ax.set_title("FER2013 (fer tflite) on 16 MEAD clips, fraction of frames")
    fig.tight_layout()
    fig.savefig(out / "emotion_confusion.png", dpi=90)
    plt.close(fig)
    return {"frame_stride": stride, "frame_accuracy_14_clips": frames_ok / sum(c["frames"] for c in scored),
            "clip_accuracy_14_clips": float(np.mean([c["clip_prediction"] == c["fer_class"] for c in scored])),
            "per_emotion_frame_accuracy": per, "confusion_rows": rows, "confusion_cols": FER_LABELS,
            "confusion_frames": conf.tolist(), "clips": clips}


def aue_shift(out: Path) -> dict:
    from emogs.eval.suite import EvalOptions, evaluate_frames
    from emogs.io.media import read_frames

    res = {}
    shifts = [0, 1, 2, 4, 8, 16]
    for c in ("acosta_71s", "lieu_60s_256px"):
        frames = list(read_frames(SHARED / "video" / f"{c}.mp4", fps=25, max_seconds=(200 + 16) / 25 + 0.1))
        n = 200
        res[c] = {}
        for s in shifts:
            m = evaluate_frames(frames[s:s + n], frames[:n], None, EvalOptions(groups=("aus", "landmarks"))).metrics
            res[c][s] = {k: m[k] for k in ("aue_upper", "aue_lower", "lmd_mouth", "au_jerk")}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for c, d in res.items():
        ax.plot(shifts, [d[s]["aue_upper"] for s in shifts], "o-", label=f"{c} upper")
        ax.plot(shifts, [d[s]["aue_lower"] for s in shifts], "s--", label=f"{c} lower")
    ax.set_xlabel("time shift of the 'render' (frames)")
    ax.set_ylabel("AUE (mean |AU difference|)")
    ax.legend(fontsize=7)
    ax.set_title("AUE of a clip against its time-shifted copy (8 s)")
    fig.tight_layout()
    fig.savefig(out / "aue_shift.png", dpi=90)
    plt.close(fig)
    return res


def sync(out: Path, seconds: float) -> dict:
    from emogs.eval.landmarks import mouth_opening
    from emogs.eval.run import load_aligned_audio
    from emogs.eval.sync import MAX_LAG, sync_scores
    from emogs.face.tracker import FaceTracker
    from emogs.io.media import load_audio, read_frames

    foreign = {"may_5s": "obama_5s.wav", "macron_50s": "RD_Radio31_000.wav", "acosta_71s": "RD_Radio34_002.wav",
               "lieu_60s_256px": "emotalk_ted1.wav"}
    res, curves = {}, {}
    for c in CLIPS:
        p = SHARED / "video" / f"{c}.mp4"
        lm = []
        with FaceTracker(video_mode=True) as tr:
            for i, f in enumerate(read_frames(p, fps=25, max_seconds=seconds)):
                r = tr.track(f, i * 40)
                lm.append(r.landmarks if r is not None else np.full((478, 3), np.nan, np.float32))
        mouth = mouth_opening(np.stack(lm))
        wav = load_aligned_audio(p)
        fw = load_audio(SHARED / "audio" / foreign[c])
        fw = np.tile(fw, int(np.ceil(len(mouth) * 640 / len(fw))) + 1)  # loop short files to the clip length
        variants = {"own": wav, "audio +5 frames late": np.concatenate([np.zeros(3200, np.float32), wav]),
                    "audio 5 frames early": wav[3200:], f"other speaker ({foreign[c]})": fw}
        res[c] = {"frames": len(mouth)}
        for k, w in variants.items():
            s, curve = sync_scores(mouth, w)
            res[c][k] = s
            curves[(c, k)] = curve
    plt = _plt()
    fig, axes = plt.subplots(1, len(CLIPS), figsize=(16, 3.4), sharey=True)
    lags = np.arange(-MAX_LAG, MAX_LAG + 1)
    for ax, c in zip(axes, CLIPS):
        for (cc, k), curve in curves.items():
            if cc == c:
                ax.plot(lags, curve, label=k.split(" (")[0], lw=1.5 if k == "own" else 1)
        ax.axvline(0, color="gray", lw=0.5)
        ax.set_title(f"{c} ({res[c]['frames']} frames)", fontsize=9)
        ax.set_xlabel("lag (frames; > 0: audio late)")
    axes[0].set_ylabel("corr(mouth opening, 1-3 kHz energy)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "sync_validation.png", dpi=90)
    plt.close(fig)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "eval")
    ap.add_argument("--quick", action="store_true", help="every 4th MEAD frame, 10 s sync clips")
    a = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"shared data not found at {SHARED}")
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    res = {}
    for name, fn in [("psnr_ssim_vs_skimage", psnr_ssim_vs_skimage), ("csim", lambda: csim(a.out)),
                     ("emotion", lambda: emotion(a.out, 4 if a.quick else 1)), ("aue_shift", lambda: aue_shift(a.out)),
                     ("sync", lambda: sync(a.out, 10.0 if a.quick else 20.0))]:
        t = time.time()
        res[name] = fn()
        print(f"{name}: {time.time() - t:.0f} s", flush=True)
    res["seconds"] = time.time() - t0
    (a.out / "validation.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "emotion"}, indent=1, default=str)[:6000])
    e = res["emotion"]
    print("emotion:", {k: e[k] for k in ("frame_accuracy_14_clips", "clip_accuracy_14_clips", "per_emotion_frame_accuracy")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
