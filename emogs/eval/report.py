"""Write an evaluation: `metrics.json` (flat stable keys + `meta`), `report.md` (Markdown table), PNG plots."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from emogs import __version__
from emogs.eval.suite import EvalResult
from emogs.io.atomic import atomic_path, write_json, write_text

# key -> (direction, short definition)
DEFINITIONS: dict[str, tuple[str, str]] = {
    "psnr": ("up", "PSNR, dB, full frame, mean over frames"),
    "ssim": ("up", "SSIM (Wang et al., 11-tap Gaussian sigma 1.5), full frame"),
    "lpips": ("down", "LPIPS (v0.1 weights), full frame"),
    "psnr_face": ("up", "PSNR on the face box (GT MediaPipe landmarks +5%)"),
    "ssim_face": ("up", "SSIM on the face box"),
    "lpips_face": ("down", "LPIPS on the face box"),
    "lmd_mouth": ("down", "mean distance of the 40 MediaPipe lip landmarks, px at 512 px width"),
    "lmd_face": ("down", "mean distance of the 468 MediaPipe face-mesh landmarks, px at 512 px width"),
    "csim_dlib": ("up", "cosine similarity of dlib ResNet 128-D face descriptors, render vs GT"),
    "id_dist_dlib": ("down", "Euclidean distance of dlib descriptors (dlib: same person if < 0.6)"),
    "aue_upper": ("down", "mean |AU render - AU GT|, upper-face AUs (01 02 04 05 06 07 09 45)"),
    "aue_lower": ("down", "mean |AU render - AU GT|, lower-face AUs (10 12 14 15 17 20 23 25 26)"),
    "au_jerk": ("down", "mean |2nd difference| of render AU tracks, AU units / frame^2 at 25 fps"),
    "au_jerk_gt": ("ref", "the same on the GT frames (natural motion + tracker noise)"),
    "e_score": ("up", "FER2013 classifier: fraction of render frames classified as the requested emotion"),
    "e_score_gt": ("ref", "the same on the GT frames (classifier ceiling on this clip)"),
    "e_agree_gt": ("up", "fraction of frames where the FER2013 class of render and GT agree"),
    "lipsync_conf": ("up", "lip-sync expert: median minus minimum of the offset-distance curve (LSE-C-like, own scale)"),
    "lipsync_dist": ("down", "lip-sync expert: mean audio-video embedding distance at the best offset (LSE-D-like)"),
    "lipsync_offset_frames": ("0", "lip-sync expert: best offset in +-15 frames (> 0: audio late)"),
    "lipsync_score": ("up", "lip-sync expert: mean audio-video cosine at offset 0"),
    "lipsync_conf_gt": ("ref", "the same expert confidence on the GT frames with the same audio"),
    "lipsync_dist_gt": ("ref", "expert distance at the best offset on the GT frames"),
    "lipsync_offset_frames_gt": ("ref", "expert best offset on the GT frames"),
    "lipsync_score_gt": ("ref", "expert cosine at offset 0 on the GT frames"),
    "sync_mouth_audio_corr": ("up", "secondary: corr(mouth opening, 1-3 kHz log energy) at lag 0, render"),
    "sync_offset_frames": ("0", "lag of the best correlation, frames (> 0: audio late)"),
    "sync_best_corr": ("up", "correlation at that lag"),
    "sync_confidence": ("up", "best correlation minus the median over lags"),
    "sync_mouth_audio_corr_gt": ("ref", "the same measure on the GT frames with the same audio"),
    "sync_offset_frames_gt": ("ref", "best lag on the GT frames"),
    "fps": ("up", "render speed from the render benchmark file"),
}


def _clean(v: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(v, np.integer):
        return int(v)
    return v


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


REPORT_FILES = ("metrics.json", "report.md", "au_tracks.png", "sync_lag.png", "per_frame.png")


def check_report_dir(out_dir: str | Path, inputs: list, overwrite: bool = True) -> Path:
    """Check a report folder before any work: a writable folder (or creatable), none of the files a report
    writes is an input, and an earlier report (metrics.json) is replaced only with `overwrite` (--force)."""
    from emogs.errors import InputError
    from emogs.io.paths import output_dir

    out = output_dir(out_dir, inputs=inputs, writes=REPORT_FILES, what="report folder")
    if (out / "metrics.json").exists() and not overwrite:
        raise InputError(f"{out}: holds an earlier report (metrics.json); pass --force to replace it, or "
                         "choose another -o folder")
    return out


def write_report(result: EvalResult, out_dir: str | Path, inputs: dict[str, Any] | None = None,
                 title: str = "emogs eval") -> Path:
    """Write metrics.json, report.md and plots into `out_dir`; returns the metrics.json path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(result, out)
    meta = {"emogs_version": __version__, "inputs": inputs or {}, "notes": result.notes, "extra": result.extra,
            "definitions": {k: d for k, (_, d) in DEFINITIONS.items() if k in result.metrics}, "plots": plots}
    doc = dict(_clean(result.metrics))
    doc["meta"] = _clean(meta)
    write_json(out / "metrics.json", doc)
    write_text(out / "report.md", _markdown(result, inputs or {}, plots, title))
    return out / "metrics.json"


def _markdown(result: EvalResult, inputs: dict[str, Any], plots: list[str], title: str) -> str:
    m = result.metrics
    lines = [f"# {title}", ""]
    for k, v in inputs.items():
        lines.append(f"- {k}: `{v}`")
    lines += [f"- frames: {m.get('num_frames')} at {m.get('width')}x{m.get('height')}", "",
              "| metric | value | better | what it measures |", "|---|---|---|---|"]
    arrow = {"up": "higher", "down": "lower", "ref": "reference", "0": "near 0"}
    for k, (d, text) in DEFINITIONS.items():
        if k in m:
            lines.append(f"| `{k}` | {_fmt(m[k])} | {arrow[d]} | {text} |")
    others = [k for k in m if k not in DEFINITIONS]
    if others:
        lines += ["", "Other values: " + ", ".join(f"`{k}` = {_fmt(m[k])}" for k in others)]
    if result.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in result.notes]
    if "emotion_counts_pred" in result.extra:
        lines += ["", "FER2013 class counts (frames): render "
                  + str(result.extra["emotion_counts_pred"]) + "; GT " + str(result.extra["emotion_counts_gt"])]
    lines += [""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def _savefig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def _plots(result: EvalResult, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, made = result.series, []
    if "aus_pred" in s:
        names = result.extra.get("au_names", [f"AU{i}" for i in range(s["aus_pred"].shape[1])])
        fig, axes = plt.subplots(len(names), 1, figsize=(11, 1.0 * len(names) + 1), sharex=True)
        t = np.arange(len(s["aus_pred"]))
        for i, (ax, nm) in enumerate(zip(axes, names)):
            ax.plot(t, s["aus_gt"][:, i], color="k", lw=1, label="ground truth")
            ax.plot(t, s["aus_pred"][:, i], color="tab:red", lw=1, label="render")
            ax.set_ylim(-0.05, 1.05)
            ax.set_ylabel(nm, rotation=0, ha="right", va="center", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0].legend(loc="upper right", fontsize=7, ncol=2)
        axes[-1].set_xlabel("frame")
        fig.suptitle(f"AU tracks (aue_upper {_fmt(result.metrics.get('aue_upper'))}, "
                     f"aue_lower {_fmt(result.metrics.get('aue_lower'))})")
        fig.tight_layout(rect=(0, 0, 1, 0.98))
        _savefig(fig, out / "au_tracks.png")
        made.append("au_tracks.png")
    if "sync_curve_pred" in s:
        lag = int(result.metrics.get("sync_max_lag", (len(s["sync_curve_pred"]) - 1) // 2))
        lags = np.arange(-lag, lag + 1)
        fig, ax = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1, 2]})
        ax[0].plot(lags, s["sync_curve_pred"], "o-", color="tab:red", ms=3, label="render")
        ax[0].plot(lags, s["sync_curve_gt"], "o-", color="k", ms=3, label="ground truth")
        ax[0].axvline(0, color="gray", lw=0.5)
        ax[0].set_xlabel("lag (frames; > 0: audio late)")
        ax[0].set_ylabel("corr(mouth, 1-3 kHz energy)")
        ax[0].legend(fontsize=7)
        ax[1].plot(s["mouth_open_pred"], color="tab:red", lw=1, label="render mouth opening")
        ax[1].plot(s["mouth_open_gt"], color="k", lw=1, label="GT mouth opening")
        ax[1].set_xlabel("frame")
        ax[1].legend(fontsize=7)
        fig.suptitle("audio-visual sync (mouth opening vs speech-band energy)")
        fig.tight_layout()
        _savefig(fig, out / "sync_lag.png")
        made.append("sync_lag.png")
    if "lipsync_curve_pred" in s and not np.isnan(s["lipsync_curve_pred"]).all():
        lag = (len(s["lipsync_curve_pred"]) - 1) // 2
        lags = np.arange(-lag, lag + 1)
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.plot(lags, s["lipsync_curve_pred"], "o-", color="tab:red", ms=3, label="render")
        if "lipsync_curve_gt" in s:
            ax.plot(lags, s["lipsync_curve_gt"], "o-", color="k", ms=3, label="ground truth")
        ax.axvline(0, color="gray", lw=0.5)
        ax.set_xlabel("audio offset (frames; > 0: audio late)")
        ax.set_ylabel("mean embedding distance")
        ax.legend(fontsize=7)
        ax.set_title(f"lip-sync expert (lipsync_conf {_fmt(result.metrics.get('lipsync_conf'))}, "
                     f"GT {_fmt(result.metrics.get('lipsync_conf_gt'))})", fontsize=9)
        fig.tight_layout()
        _savefig(fig, out / "lipsync.png")
        made.append("lipsync.png")
    keys = [k for k in ("psnr", "ssim", "lpips", "psnr_face", "lpips_face", "csim_dlib") if k in s]
    if keys:
        fig, axes = plt.subplots(len(keys), 1, figsize=(11, 1.4 * len(keys) + 0.6), sharex=False)
        axes = np.atleast_1d(axes)
        for ax, k in zip(axes, keys):
            x = np.arange(len(s[k]))
            x = x * int(result.metrics.get("identity_stride" if k == "csim_dlib" else "image_stride", 1))
            ax.plot(x, s[k], lw=1)
            ax.set_ylabel(k, fontsize=8)
            ax.tick_params(labelsize=7)
        axes[-1].set_xlabel("frame")
        fig.tight_layout()
        _savefig(fig, out / "per_frame.png")
        made.append("per_frame.png")
    return made
