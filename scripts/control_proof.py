#!/usr/bin/env python
"""Proof that the expression controls work on a trained head (issue 6): render one speech clip under
several controls, measure every render with MediaPipe (the `emogs analyze` tracker and AU mapping) and
dlib, and write the numbers, plots and a contact sheet.

    python scripts/control_proof.py RUN --audio SPEECH.wav --size 256 -o docs/control_proof

Conditions (all with blinks=False, so the generated blinks do not confound the AU45 / plain comparison;
base = the model's default expression, the training clip's mean AUs, as `emogs render` does):
plain, --au AU04=1.0@1-3, --au AU01=1.0@1-3, --au AU12=1.0@1-3, --au AU45=1.0@1-3, --emotion happy,
--emotion surprised, --emotion sad, --emotion angry; with --diagnostics also angry / sad / surprised with
the AUs this head never saw in training held at 0 (--au AU05=0, AU01=0, AU01=0,AU02=0,AU05=0).

Measures, per condition:
  (a) AU edits: mean measured AU in the fully-eased window (1.2-2.8 s) vs outside (t < 0.8 s and
      t > 3.2 s; the 0.2 s margins keep the model's +-4-frame AU window out), on the edited render and on
      the plain render; effect = edit delta - plain delta. Emotions: mean measured AUs of the preset over
      the clip vs the plain render. Every render is measured with ONE landmark-geometry baseline (the plain
      render's least expressive frames, as `emogs.demo.au_check` and `emogs eval` do), so numbers compare.
  (b) lip sync: mouth-opening vs 1-3 kHz audio-energy correlation at lag 0 (`emogs.eval.sync`, the
      `emogs eval` measure) for each render next to the plain render's; the Pearson correlation of the
      render's mouth-opening track with the plain render's; the lip-landmark distance to the plain render.
  (c) identity: dlib 128-D embedding cosine of each render vs the plain render (same frames, every
      `--id-stride`-th) and vs real training frames of the clip (mean descriptor of `--train-frames`
      frames of the training split, resized to the render size).
Videos go to `--videos` (default RUN/control_proof, git-ignored); existing videos are reused unless --force.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FPS = 25.0
IN_WINDOW = (1.2, 2.8)       # fully eased part of @1-3 (ease 0.2 s)
OUT_BEFORE, OUT_AFTER = 0.8, 3.2  # outside: before / after, 0.2 s clear of the ramps
SHEET_TIME = 2.0

CONDITIONS: list[tuple[str, dict[str, str]]] = [
    ("plain", {}),
    ("AU04", {"au": "AU04=1.0@1-3"}),
    ("AU01", {"au": "AU01=1.0@1-3"}),
    ("AU12", {"au": "AU12=1.0@1-3"}),
    ("AU45", {"au": "AU45=1.0@1-3"}),
    ("happy", {"emotion": "happy"}),
    ("surprised", {"emotion": "surprised"}),
    ("sad", {"emotion": "sad"}),
    ("angry", {"emotion": "angry"}),
]
# diagnostics (not rendered by default): a preset with its out-of-training-range AUs held at 0
DIAGNOSTICS: list[tuple[str, dict[str, str]]] = [
    ("angry_noAU05", {"emotion": "angry", "au": "AU05=0"}),
    ("sad_noAU01", {"emotion": "sad", "au": "AU01=0"}),
    ("surprised_noAU01-02-05", {"emotion": "surprised", "au": "AU01=0,AU02=0,AU05=0"}),
]
CONTROLS = dict(CONDITIONS + DIAGNOSTICS)


def cli_flags(controls: dict[str, str]) -> str:
    """The `emogs render` flags of a condition."""
    flags = []
    if "emotion" in controls:
        flags.append(f"--emotion {controls['emotion']}")
    if "au" in controls:
        flags.append(f"--au {controls['au']}")
    return " ".join(flags) or "(none)"


# -- rendering (worker processes) -------------------------------------------------------------------------
_AV = None


_EXTRAPOLATE = False


def _init_worker(run: str, size: int, threads: int, extrapolate: bool) -> None:
    import torch

    torch.set_num_threads(threads)
    global _AV, _EXTRAPOLATE
    from emogs.avatar import Avatar

    _EXTRAPOLATE = extrapolate
    _AV = Avatar.load(run, device="cpu", size=size, threads=threads)


def _render_one(job: tuple[str, dict[str, str], str, str]) -> dict[str, Any]:
    name, controls, audio, out = job
    t0 = time.time()
    res = _AV.render(audio, out, au=controls.get("au"), emotion=controls.get("emotion"), blinks=False, quiet=True,
                     allow_extrapolation=_EXTRAPOLATE)
    dt = time.time() - t0
    return dict(name=name, frames=res.frames, seconds=dt, fps=res.frames / dt)


def render_all(run: Path, audio: Path, size: int, videos: Path, names: list[str], jobs: int, threads: int,
               force: bool, extrapolate: bool = False) -> dict[str, Any]:
    """Render the conditions that are missing (or all with force); returns per-condition timing."""
    import multiprocessing as mp

    videos.mkdir(parents=True, exist_ok=True)
    timing_file = videos / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() and not force else {}
    todo = [(n, CONTROLS[n], str(audio), str(videos / f"{n}.mp4")) for n in names
            if force or not (videos / f"{n}.mp4").is_file()]
    if todo:
        print(f"[control_proof] rendering {len(todo)} condition(s) with {jobs} process(es) x {threads} thread(s)",
              file=sys.stderr, flush=True)
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(jobs, len(todo)), initializer=_init_worker, initargs=(str(run), size, threads, extrapolate)) as pool:
            for r in pool.imap_unordered(_render_one, todo):
                timing[r["name"]] = r
                timing_file.write_text(json.dumps(timing, indent=1))
                print(f"[control_proof] {r['name']}: {r['frames']} frames in {r['seconds']:.0f} s "
                      f"({r['fps']:.2f} fps)", file=sys.stderr, flush=True)
    return timing


# -- measures (pure functions, tested in tests/test_control_proof.py) --------------------------------------
def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def windows(num_frames: int, fps: float = FPS) -> tuple[np.ndarray, np.ndarray]:
    """(inside, outside) frame masks: t in [1.2, 2.8] s, and t < 0.8 s or t > 3.2 s (t = i / fps)."""
    t = np.arange(num_frames) / fps
    inside = (t >= IN_WINDOW[0] - 1e-9) & (t <= IN_WINDOW[1] + 1e-9)
    outside = (t < OUT_BEFORE - 1e-9) | (t > OUT_AFTER + 1e-9)
    return inside, outside


def edit_stats(edit: np.ndarray, plain: np.ndarray, requested: np.ndarray, j: int) -> dict[str, Any]:
    """AU j on the edited and the plain render (F, 17) and the requested track (F, 17): in/out means,
    deltas, effect = edit delta - plain delta; plus the effect on every other AU (off-target motion)."""
    n = min(len(edit), len(plain), len(requested))
    inside, outside = windows(n)
    r = dict(frames_in=int(inside.sum()), frames_out=int(outside.sum()),
             requested_in=_mean(requested[:n, j][inside]), requested_out=_mean(requested[:n, j][outside]),
             edit_in=_mean(edit[:n, j][inside]), edit_out=_mean(edit[:n, j][outside]),
             plain_in=_mean(plain[:n, j][inside]), plain_out=_mean(plain[:n, j][outside]))
    r["edit_delta"] = r["edit_in"] - r["edit_out"]
    r["plain_delta"] = r["plain_in"] - r["plain_out"]
    r["effect"] = r["edit_delta"] - r["plain_delta"]
    e_all = np.array([_mean(edit[:n, k][inside]) - _mean(edit[:n, k][outside])
                      - _mean(plain[:n, k][inside]) + _mean(plain[:n, k][outside]) for k in range(edit.shape[1])])
    r["effect_all_aus"] = e_all
    return r


def emotion_stats(emo: np.ndarray, plain: np.ndarray, requested: np.ndarray, base_req: np.ndarray,
                  aus: list[int]) -> dict[str, Any]:
    """Clip means of the given AUs: measured on the emotion and the plain render, requested on both."""
    n = min(len(emo), len(plain))
    rows = {}
    for j in aus:
        rows[j] = dict(requested=_mean(requested[:n, j]), requested_plain=_mean(base_req[:n, j]),
                       emotion=_mean(emo[:n, j]), plain=_mean(plain[:n, j]))
        rows[j]["delta"] = rows[j]["emotion"] - rows[j]["plain"]
    all_delta = np.array([_mean(emo[:n, k]) - _mean(plain[:n, k]) for k in range(emo.shape[1])])
    return dict(aus=rows, delta_all_aus=all_delta)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over the frames where both are finite (NaN if < 10 frames or constant)."""
    n = min(len(a), len(b))
    a, b = np.asarray(a[:n], np.float64), np.asarray(b[:n], np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def json_safe(v: Any) -> Any:
    """NaN -> None, numpy -> Python, recursively (strict JSON)."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, np.ndarray):
        return json_safe(v.tolist())
    if isinstance(v, (float, np.floating)):
        return round(float(v), 4) if np.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


# -- analysis ----------------------------------------------------------------------------------------------
def received_au(au: np.ndarray, info: dict[str, Any], extrapolate: bool) -> np.ndarray:
    """The AU track the model received: `emogs render` clamps requests to the training range + CLAMP_MARGIN
    unless --allow-extrapolation (emogs.avatar.Avatar.clamp_to_training, same formula)."""
    if extrapolate:
        return au
    from emogs.avatar import CLAMP_MARGIN

    lo = np.clip(np.asarray(info["au_min"], np.float32) - CLAMP_MARGIN, 0, 1)
    hi = np.clip(np.asarray(info["au_max"], np.float32) + CLAMP_MARGIN, 0, 1)
    return np.clip(au, lo, hi)


def analyse(run: Path, audio: Path, videos: Path, names: list[str], dataset: Path | None, id_stride: int,
            train_frames: int, extrapolate: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    from emogs.control.emotions import EMOTIONS
    from emogs.control.names import AU_INDEX, AU_NAMES
    from emogs.control.parse import parse_au_spec
    from emogs.control.plan import build_plan
    from emogs.demo.au_check import measured_aus, read_render, shared_baseline, track
    from emogs.eval import landmarks as lmk
    from emogs.eval.sync import sync_scores
    from emogs.io.atomic import read_json
    from emogs.io.media import load_audio

    wav = load_audio(audio, 16000)
    frames = {n: read_render(videos / f"{n}.mp4") for n in names}
    F = min(len(v) for v in frames.values())
    info = read_json(run / "dataset.json")
    default = np.asarray(info["au_mean"], np.float32)
    plans = {n: build_plan(F, FPS, au=CONTROLS[n]["au"].split(",") if "au" in CONTROLS[n] else None,
                           emotion=CONTROLS[n].get("emotion"), default_au=default, blinks=False) for n in names}
    asked = {n: plans[n].au for n in names}
    recv = {n: received_au(plans[n].au, info, extrapolate) for n in names}
    t0 = time.time()
    raw = {}
    for n in names:
        raw[n] = track(frames[n][:F])
        print(f"[control_proof] tracked {n}: {raw[n]['success'].mean():.0%} frames with a face "
              f"({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    base = shared_baseline(raw["plain"])
    meas = {n: measured_aus(raw[n], base) for n in names}
    lms = {n: np.where(raw[n]["success"][:, None, None], raw[n]["landmarks"], np.nan) for n in names}
    mouth = {n: lmk.mouth_opening(lms[n]) for n in names}
    inside, outside = windows(F)
    width = frames["plain"].shape[2]

    # identity
    ident = identity_scores(frames, names, F, dataset, id_stride, train_frames, width)

    res: dict[str, Any] = {}
    for n in names:
        c = CONTROLS[n]
        sync, _ = sync_scores(mouth[n], wav, 16000, FPS)
        r: dict[str, Any] = dict(flags=cli_flags(c), tracked=float(raw[n]["success"].mean()),
                                 sync_mouth_audio_corr=sync["sync_mouth_audio_corr"],
                                 sync_best_corr=sync["sync_best_corr"], sync_offset_frames=sync["sync_offset_frames"],
                                 mouth_corr_vs_plain=pearson(mouth[n], mouth["plain"]),
                                 mouth_corr_vs_plain_in_window=pearson(mouth[n][inside], mouth["plain"][inside]),
                                 mouth_corr_vs_plain_outside=pearson(mouth[n][outside], mouth["plain"][outside]),
                                 mouth_open_mean=_mean(mouth[n]), mouth_open_std=float(np.nanstd(mouth[n])),
                                 lip_lmd_vs_plain_px512=_mean(lmk.lmd(lms[n], lms["plain"], lmk.LIPS, width)),
                                 face_lmd_vs_plain_px512=_mean(lmk.lmd(lms[n], lms["plain"], lmk.FACE, width)),
                                 **ident[n])
        if "au" in c and "emotion" not in c:
            au = parse_au_spec(c["au"])[0].au
            s = edit_stats(meas[n], meas["plain"], recv[n], AU_INDEX[au])
            s["asked_in"] = edit_stats(meas[n], meas["plain"], asked[n], AU_INDEX[au])["requested_in"]
            s["effect_all_aus"] = dict(zip(AU_NAMES, s["effect_all_aus"]))
            r.update(kind="au", au=au, **s)
        elif "emotion" in c:
            emo = c["emotion"].split(":")[0]
            idx = [AU_INDEX[a] for a in EMOTIONS[emo].aus]
            s = emotion_stats(meas[n], meas["plain"], recv[n], recv["plain"], idx)
            for j in idx:
                s["aus"][j]["asked"] = _mean(asked[n][:F, j])
            r.update(kind="emotion", emotion=emo, aus={AU_NAMES[j]: v for j, v in s["aus"].items()},
                     delta_all_aus=dict(zip(AU_NAMES, s["delta_all_aus"])))
        else:
            r.update(kind="plain", measured_mean=dict(zip(AU_NAMES, np.nanmean(meas[n], axis=0))))
        res[n] = r
    arrays = dict(frames=frames, meas=meas, recv=recv, asked=asked, mouth=mouth, F=F, lms=lms, wav=wav,
                  id_train=ident.get("_train"))
    return res, arrays


def identity_scores(frames: dict[str, np.ndarray], names: list[str], F: int, dataset: Path | None,
                    stride: int, n_train: int, size: int) -> dict[str, dict[str, Any]]:
    """dlib cosine / distance of sampled frames: vs the plain render (plain's face box, frames aligned) and
    vs the mean descriptor of real training frames."""
    from emogs.eval.identity import DlibFaceEmbedder, cosine, euclidean

    emb = DlibFaceEmbedder()
    idx = np.arange(0, F, stride)
    rects = {i: emb.detect(frames["plain"][i]) for i in idx}
    train_desc = None
    out: dict[str, dict[str, Any]] = {}
    if dataset is not None:
        tr = train_descriptors(emb, dataset, n_train, size)
        if len(tr):
            train_desc = tr.mean(axis=0)
            loo = [cosine(tr[k], np.delete(tr, k, axis=0).mean(axis=0)) for k in range(len(tr))]
            out["_train"] = dict(frames=len(tr), cos_leave_one_out=_mean(np.array(loo)),
                                 dist_leave_one_out=_mean(np.array(
                                     [euclidean(tr[k], np.delete(tr, k, axis=0).mean(axis=0)) for k in range(len(tr))])))
    for n in names:
        cp, dp, ct, dt, miss = [], [], [], [], 0
        for i in idx:
            if rects[i] is None:
                miss += 1
                continue
            e = emb.embed(frames[n][i], rects[i])
            p = emb.embed(frames["plain"][i], rects[i])
            cp.append(cosine(e, p)), dp.append(euclidean(e, p))
            own = emb.embed(frames[n][i])  # its own detection for the real-frame comparison
            if train_desc is not None and own is not None:
                ct.append(cosine(own, train_desc)), dt.append(euclidean(own, train_desc))
        out[n] = dict(id_frames=len(cp), id_cos_vs_plain=_mean(np.array(cp)), id_cos_vs_plain_min=
                      float(np.min(cp)) if cp else float("nan"), id_dist_vs_plain=_mean(np.array(dp)),
                      id_cos_vs_train=_mean(np.array(ct)), id_dist_vs_train=_mean(np.array(dt)),
                      id_cos_vs_train_min=float(np.min(ct)) if ct else float("nan"))
    print(f"[control_proof] identity: {len(idx)} sampled frames per render, {miss} without a dlib face",
          file=sys.stderr, flush=True)
    return out


def train_descriptors(emb, dataset: Path, n: int, size: int) -> np.ndarray:
    """dlib descriptors of n frames spread evenly over the training split, resized to the render size."""
    import cv2

    from emogs.data.dataset import load_manifest
    from emogs.io.media import read_frames

    m = load_manifest(dataset)
    a, b = m["splits"]["train"]
    want = set(np.linspace(a, b - 1, n).round().astype(int).tolist())
    out = []
    for i, fr in enumerate(read_frames(dataset / "frames.mp4")):
        if i in want:
            small = cv2.resize(fr, (size, size), interpolation=cv2.INTER_AREA) if fr.shape[0] != size else fr
            d = emb.embed(small)
            if d is not None:
                out.append(d)
        if i >= b:
            break
    return np.array(out)


def reference_sync(run: Path) -> dict[str, Any] | None:
    """Context for the sync numbers: the same measure on RUN/test_render.mp4 (render | ground truth, the
    held-out end of the training clip) with RUN/test_audio.wav, when both exist."""
    from emogs.demo.au_check import read_render, track
    from emogs.eval import landmarks as lmk
    from emogs.eval.sync import sync_scores
    from emogs.io.media import load_audio

    vid, aud = run / "test_render.mp4", run / "test_audio.wav"
    if not (vid.is_file() and aud.is_file()):
        return None
    fr = read_render(vid)
    wav = load_audio(aud, 16000)
    W = fr.shape[2] // 2
    out = {}
    for tag, sl in (("render", slice(0, W)), ("ground_truth", slice(W, 2 * W))):
        r = track(np.ascontiguousarray(fr[:, :, sl]))
        m = lmk.mouth_opening(np.where(r["success"][:, None, None], r["landmarks"], np.nan))
        s, _ = sync_scores(m, wav, 16000, FPS)
        out[tag] = dict(sync_mouth_audio_corr=s["sync_mouth_audio_corr"], mouth_open_mean=_mean(m),
                        mouth_open_std=float(np.nanstd(m)))
    return out


# -- figures -----------------------------------------------------------------------------------------------
def plot_condition(path: Path, name: str, arrays: dict[str, Any], aus: list[str], ranged: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emogs.control.names import AU_INDEX

    F = arrays["F"]
    t = np.arange(F) / FPS
    m, p, req, ask = arrays["meas"][name], arrays["meas"]["plain"], arrays["recv"][name], arrays["asked"][name]
    fig, ax = plt.subplots(figsize=(6.4, 2.6), dpi=90)
    if ranged:
        ax.axvspan(*IN_WINDOW, color="0.88", lw=0, label="measured window")
    for k, a in enumerate(aus):
        j, col = AU_INDEX[a], f"C{k}"
        if np.abs(ask[:F, j] - req[:F, j]).max() > 1e-3:
            ax.plot(t, ask[:F, j], color=col, lw=1.0, ls=":", label=f"{a} asked (before clamp)")
        ax.plot(t, req[:F, j], color=col, lw=2.2, alpha=0.55, label=f"{a} requested (model input)")
        ax.plot(t, m[:, j], color=col, lw=1.2, label=f"{a} measured")
        ax.plot(t, p[:, j], color=col, lw=0.9, ls="--", label=f"{a} plain render")
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlim(0, t[-1])
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("AU intensity", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(f"{name} ({cli_flags(CONTROLS[name])}): requested vs measured", fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_mouth(path: Path, arrays: dict[str, Any], names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emogs.eval.sync import band_energy

    F = arrays["F"]
    t = np.arange(F) / FPS
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(6.4, 3.6), dpi=90, sharex=True)
    for k, n in enumerate(names):
        a1.plot(t, arrays["mouth"][n], lw=1.6 if n == "plain" else 0.8, color="k" if n == "plain" else f"C{k}",
                label=n)
    a1.set_ylabel("mouth opening", fontsize=8)
    a1.legend(fontsize=6, ncol=5, loc="upper right", frameon=False)
    a2.plot(t, band_energy(arrays["wav"], F), "k-", lw=0.8)
    a2.set_ylabel("1-3 kHz dB", fontsize=8)
    a2.set_xlabel("time (s)", fontsize=8)
    for a in (a1, a2):
        a.tick_params(labelsize=7)
    a1.set_title("mouth opening of every render vs the speech band energy", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def contact_sheets(out: Path, arrays: dict[str, Any], names: list[str], t: float = SHEET_TIME) -> None:
    """contact_sheet.png: the face (same box for all, from the plain render's landmarks) at t for every
    condition; contact_diff.png: |condition - plain| x 4 at the same frame."""
    import cv2

    from emogs.eval.landmarks import face_box

    i = min(int(round(t * FPS)), arrays["F"] - 1)
    plain = arrays["frames"]["plain"][i]
    H, W = plain.shape[:2]
    lm = arrays["lms"]["plain"][i]
    if np.isfinite(lm).all():
        x0, y0, x1, y1 = face_box(lm, W, H, margin=0.12)
    else:
        x0, y0, x1, y1 = 0, 0, W, H
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    x0, y0 = max(0, min(W - side, cx - side // 2)), max(0, min(H - side, cy - side // 2))
    tile = 200

    def crop(img):
        return cv2.resize(img[y0:y0 + side, x0:x0 + side], (tile, tile), interpolation=cv2.INTER_CUBIC)

    def label(img, text):
        img = img.copy()
        cv2.rectangle(img, (0, 0), (tile, 20), (0, 0, 0), -1)
        cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        return img

    tiles, diffs = [], []
    for n in names:
        f = arrays["frames"][n][i]
        text = f"{n}: {cli_flags(CONTROLS[n])}"
        tiles.append(label(crop(f), text if len(text) <= 34 else n))
        d = np.clip(np.abs(f.astype(np.int16) - plain.astype(np.int16)).max(axis=2) * 4, 0, 255).astype(np.uint8)
        diffs.append(label(cv2.applyColorMap(crop(d), cv2.COLORMAP_INFERNO)[..., ::-1], f"|{n} - plain| x4"[:34]))
    cols = 3
    for imgs, fname in ((tiles, "contact_sheet.png"), (diffs, "contact_diff.png")):
        while len(imgs) % cols:
            imgs.append(np.zeros_like(imgs[0]))
        rows = [np.concatenate(imgs[r:r + cols], axis=1) for r in range(0, len(imgs), cols)]
        sheet = np.concatenate(rows, axis=0)
        from PIL import Image

        img = Image.fromarray(sheet)
        if fname == "contact_diff.png":  # a colour-mapped heat image: a 256-colour palette loses ~nothing
            img = img.quantize(256, dither=Image.Dither.NONE)
        img.save(out / fname, optimize=True)


# -- tables ------------------------------------------------------------------------------------------------
def f2(x: Any, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def tables(res: dict[str, Any]) -> str:
    L = ["### (a) AU edits (`--au AU=1.0@1-3`): measured AU, in window 1.2-2.8 s vs outside (<0.8 s, >3.2 s)", "",
         "| condition | requested in / out | edit in / out | plain in / out | edit delta | plain delta | **effect** |",
         "|---|---|---|---|---|---|---|"]
    for n, r in res.items():
        if r.get("kind") == "au":
            ask = "" if abs(r["asked_in"] - r["requested_in"]) < 1e-3 else f" (asked {f2(r['asked_in'])})"
            L.append(f"| `{r['flags']}` | {f2(r['requested_in'])}{ask} / {f2(r['requested_out'])} | {f2(r['edit_in'])} / "
                     f"{f2(r['edit_out'])} | {f2(r['plain_in'])} / {f2(r['plain_out'])} | {f2(r['edit_delta'], 1)} | "
                     f"{f2(r['plain_delta'], 1)} | **{f2(r['effect'], 1)}** |")
    L += ["", "Other AUs moved by the edit (|effect| >= 0.10): " + "; ".join(
        f"{n}: " + (", ".join(f"{a} {v:+.2f}" for a, v in r["effect_all_aus"].items()
                              if a != r["au"] and v is not None and abs(v) >= 0.1) or "none")
        for n, r in res.items() if r.get("kind") == "au") + "."]
    L += ["", "### (a) Emotion presets: clip-mean measured AUs of the preset, emotion render vs plain render", "",
          "| condition | AU | requested (plain's base) | measured emotion | measured plain | **delta** |",
          "|---|---|---|---|---|---|"]
    for n, r in res.items():
        if r.get("kind") == "emotion":
            for a, v in r["aus"].items():
                ask = "" if abs(v["asked"] - v["requested"]) < 1e-3 else f" (asked {f2(v['asked'])})"
                L.append(f"| `{r['flags']}` | {a} | {f2(v['requested'])}{ask} ({f2(v['requested_plain'])}) | "
                         f"{f2(v['emotion'])} | {f2(v['plain'])} | **{f2(v['delta'], 1)}** |")
    L += ["", "Other AUs moved by the preset (clip mean vs plain, |delta| >= 0.10): " + "; ".join(
        f"{n}: " + (", ".join(f"{a} {v:+.2f}" for a, v in r["delta_all_aus"].items()
                              if a not in r["aus"] and v is not None and abs(v) >= 0.1) or "none")
        for n, r in res.items() if r.get("kind") == "emotion") + "."]
    L += ["", "### (b) lip sync and (c) identity, every render", "",
          "| condition | face tracked | mouth-audio r(0) | mouth opening mean (sd) | mouth track r vs plain "
          "(all / in 1.2-2.8 s / outside) | lip LMD vs plain (px@512) | id cos vs plain (min) | "
          "id cos vs training frames (min) |",
          "|---|---|---|---|---|---|---|---|"]
    for n, r in res.items():
        if n.startswith("_"):
            continue
        L.append(f"| {n} `{r['flags']}` | {r['tracked']:.0%} | {f2(r['sync_mouth_audio_corr'])} | "
                 f"{r['mouth_open_mean']:.3f} ({r['mouth_open_std']:.3f}) | "
                 f"{f2(r['mouth_corr_vs_plain'])} / {f2(r['mouth_corr_vs_plain_in_window'])} / "
                 f"{f2(r['mouth_corr_vs_plain_outside'])} | "
                 f"{f2(r['lip_lmd_vs_plain_px512'])} | {f2(r['id_cos_vs_plain'])} ({f2(r['id_cos_vs_plain_min'])}) | "
                 f"{f2(r['id_cos_vs_train'])} ({f2(r['id_cos_vs_train_min'])}) |")
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--audio", type=Path, required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/control_proof"))
    ap.add_argument("--videos", type=Path, default=None, help="where the renders go (default RUN/control_proof)")
    ap.add_argument("--dataset", type=Path, default=None,
                    help="the training dataset (real frames for identity; default: datasets/<name> if it exists)")
    ap.add_argument("--conditions", default=",".join(n for n, _ in CONDITIONS))
    ap.add_argument("--diagnostics", action="store_true",
                    help="also render the presets with their unseen AUs held at 0 (" +
                         ", ".join(n for n, _ in DIAGNOSTICS) + ")")
    ap.add_argument("--allow-extrapolation", action="store_true",
                    help="render without clamping the requests to the training range (as before the clamp); "
                         "videos then go to RUN/control_proof_unclamped")
    ap.add_argument("--jobs", type=int, default=2, help="render processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per render process")
    ap.add_argument("--id-stride", type=int, default=5)
    ap.add_argument("--train-frames", type=int, default=20)
    ap.add_argument("--force", action="store_true", help="re-render existing videos")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.conditions.split(",") if n.strip()]
    if a.diagnostics:
        names += [n for n, _ in DIAGNOSTICS if n not in names]
    bad = [n for n in names if n not in CONTROLS]
    if bad or "plain" not in names:
        ap.error(f"conditions must include plain and come from {list(CONTROLS)}; got {bad or names}")
    names = ["plain"] + [n for n in names if n != "plain"]
    videos = a.videos or a.run / ("control_proof_unclamped" if a.allow_extrapolation else "control_proof")
    dataset = a.dataset
    if dataset is None:
        from emogs.io.atomic import read_json

        src = Path(read_json(a.run / "dataset.json")["manifest"]["source"]["path"]).stem.split("_")[0]
        cand = Path("datasets") / src
        dataset = cand if (cand / "manifest.json").is_file() else None
    if dataset is not None:  # real frames must be of the clip the head was trained on
        from emogs.io.atomic import read_json

        want = read_json(a.run / "dataset.json")["manifest"]["source"]["sha256"]
        have = read_json(dataset / "manifest.json")["source"]["sha256"]
        if want != have:
            print(f"[control_proof] {dataset} is not the run's training clip; identity vs training frames skipped",
                  file=sys.stderr)
            dataset = None
    t0 = time.time()
    timing = render_all(a.run, a.audio, a.size, videos, names, a.jobs, a.threads, a.force, a.allow_extrapolation)
    res, arrays = analyse(a.run, a.audio, videos, names, dataset, a.id_stride, a.train_frames, a.allow_extrapolation)
    a.out.mkdir(parents=True, exist_ok=True)
    from emogs.control.emotions import EMOTIONS

    for n in names:
        r = res[n]
        if r["kind"] == "au":
            plot_condition(a.out / f"{n}.png", n, arrays, [r["au"]], ranged=True)
        elif r["kind"] == "emotion":
            plot_condition(a.out / f"{n}.png", n, arrays, list(EMOTIONS[r["emotion"]].aus), ranged=False)
    plot_mouth(a.out / "mouth_tracks.png", arrays, names)
    contact_sheets(a.out, arrays, names)
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    meta = dict(command="python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
                run=str(a.run), audio=str(a.audio), size=a.size, frames=arrays["F"], dataset=str(dataset),
                device=f"CPU ({cpu}, {os.cpu_count()} cores), torch {torch.__version__}, "
                       f"{a.jobs} render processes x {a.threads} thread(s)",
                render_timing=dict(per_condition=timing, note="seconds per 126-frame render, 2 renders running "
                                   "at once on the 2 cores (1 torch thread each)"),
                controls="all conditions: blinks=False, base = the model's default expression (training-mean AUs), "
                         "pose = training poses replayed",
                clamped_to_training_range=not a.allow_extrapolation, videos=str(videos),
                windows=dict(inside=IN_WINDOW, outside=f"t < {OUT_BEFORE} s or t > {OUT_AFTER} s"),
                baseline="one landmark-geometry baseline for all renders: the plain render's least expressive frames "
                         "(emogs.demo.au_check.shared_baseline)",
                identity_train_reference=arrays["id_train"],
                sync_reference_test_split=reference_sync(a.run))
    doc = dict(meta=meta, conditions=res)
    from emogs.io.atomic import write_json, write_text

    write_json(a.out / "results.json", json_safe(doc))
    write_text(a.out / "tables.md", tables(json_safe(res)))
    print(tables(json_safe(res)))
    print(f"[control_proof] wrote {a.out}/results.json, tables.md, plots, contact sheets "
          f"in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
