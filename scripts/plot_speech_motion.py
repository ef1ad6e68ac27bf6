"""Plots of the speech -> mesh-motion prior (docs/speech_motion/): predicted vs tracked jawOpen on held-out
clips (from WORK/<feature>/predictions.npz of `train_speech_motion.py train`), and the lag curves of the
audio-video offsets (WORK/offsets_mel.json).

    python scripts/plot_speech_motion.py --work /work/scratch-speech/work --out docs/speech_motion
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emogs.io.atomic import atomic_path
    from emogs.model.speech_motion import SPEECH_COEFFS

    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/work/scratch-speech/work")
    ap.add_argument("--out", default="docs/speech_motion")
    ap.add_argument("--features", nargs="+", default=["mel", "whisper"])
    ap.add_argument("--clips", nargs="+", default=["macron_50s", "acosta_71s", "pcavs_downey_741400163_14s",
                                                   "hdtf_RD_Radio13_10s"])
    ap.add_argument("--seconds", type=float, default=12.0)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work)
    j = SPEECH_COEFFS.index("jawOpen")
    preds = {f: np.load(work / f / "predictions.npz") for f in a.features if (work / f / "predictions.npz").is_file()}
    infos = {f: json.loads((work / f / "model.json").read_text()) for f in preds}
    fig, axes = plt.subplots(len(a.clips), 1, figsize=(12, 2.4 * len(a.clips)), squeeze=False)
    for ax, clip in zip(axes[:, 0], a.clips):
        first = next(iter(preds.values()))
        y = first[f"{clip}__target"][:, j]
        n = min(len(y), int(a.seconds * 25))
        t = np.arange(n) / 25
        ax.plot(t, y[:n], "k", lw=1.6, label="tracked (ICT fit)")
        for f, z in preds.items():
            r = infos[f]["held_out"]["clips"][clip]["jaw_r"]
            ax.plot(t, z[clip][:n, j], lw=1.1, label=f"predicted, {f} (r {r:+.2f} over the clip)")
        ax.set_title(f"{clip} (held-out identity): jawOpen", fontsize=9)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    with atomic_path(out / "jaw_heldout.png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    off = work / "offsets_mel.json"
    if off.is_file():
        d = json.loads(off.read_text())
        lags = np.arange(-d["max_lag"], d["max_lag"] + 1)
        fig, ax = plt.subplots(figsize=(9, 4))
        for name, c in sorted(d["clips"].items()):
            style = "--" if c["held_out"] else "-"
            ax.plot(lags, c["curve"], style, lw=0.8, alpha=0.8)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel("lag (frames; audio window of frame t + lag)")
        ax.set_ylabel("jawOpen r (cross-validated model)")
        ax.set_title("audio-video offset per clip (dashed: held-out identities)", fontsize=9)
        fig.tight_layout()
        with atomic_path(out / "offsets.png") as tmp:
            fig.savefig(tmp, dpi=90)
        plt.close(fig)


if __name__ == "__main__":
    main()
