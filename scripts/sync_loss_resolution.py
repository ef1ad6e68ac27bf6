#!/usr/bin/env python
"""Does L_sync carry signal at the training resolution? The training loss path (`emogs.train.experts`:
FrameBank frames at S px, crops by the tracked landmarks scaled to S) on the *real* training frames, with
the true audio windows against the same windows shifted by +-k frames, and L_AU of the real frames against
their own tracked AUs.

    python scripts/sync_loss_resolution.py DATASET --sizes 128 256 512 --frames 400 [--shift 5] -o out.json
    python scripts/sync_loss_resolution.py DATASET --runs RUN [RUN ...] [--shift 5] -o out.json

Per size: mean L_sync (1 - cos) with the true audio and with the shifted audio, the share of windows whose
true-audio loss is below both shifted ones, and mean L_AU. With --runs: the same on each run's test-split
renders (the left half of RUN/test_render.mp4, at the run's resolution) and, beside them, on the ground-truth
test frames (the right half)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


class _Head:
    """The first `n` frames of a dataset split (what FrameBank and setup_expert_losses read)."""

    def __init__(self, ds, n: int):
        self.d, self.n = ds, min(n, len(ds))
        self.tracks, self.manifest, self.root = ds.tracks, ds.manifest, ds.root
        self.audio_feature, self.audio, self.num_frames = ds.audio_feature, ds.audio, ds.num_frames

    @property
    def background(self):
        return self.d.background

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.d[i]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dataset", type=Path)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--frames", type=int, default=400)
    p.add_argument("--shift", type=int, default=5)
    p.add_argument("--runs", type=Path, nargs="*", default=[])
    p.add_argument("-o", "--out", type=Path, required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.runs:
        res = {str(r): on_run(a.dataset, r, a.shift) for r in a.runs}
        a.out.write_text(json.dumps(dict(dataset=str(a.dataset), shift=a.shift, runs=res), indent=2))
        return
    from emogs.experts.aunet import au_consistency_loss, face_crops
    from emogs.experts.sync import audio_windows, mouth_windows
    from emogs.train.config import build_config
    from emogs.train.data import FrameBank
    from emogs.train.experts import setup_expert_losses
    from emogs.train.loop import open_datasets

    res = {}
    for S in a.sizes:
        cfg = build_config("cpu", overrides={"resolution": S, "loss.sync": 0.1, "loss.au": 0.05})
        tr, _ = open_datasets(a.dataset, cfg)
        ds = _Head(tr, a.frames)
        bank = FrameBank.from_dataset(ds, S)
        sup = setup_expert_losses(cfg, ds, bank, "cpu", log=lambda _: None)
        e = sup.sync_expert
        c = sup.centres[(sup.centres >= a.shift) & (sup.centres < len(bank) - a.shift)]
        ids = c[:, None] + np.arange(-2, 3)[None]
        with torch.no_grad():
            img = bank.images[torch.from_numpy(ids.reshape(-1))].float() / 255
            mouths = mouth_windows(img.reshape(len(c), 5, S, S, 3), sup.mouth_affines[torch.from_numpy(ids)], e.cfg.region)
            v = e.embed_video_rgb(mouths)

            def loss(shift: int) -> np.ndarray:
                aw = torch.from_numpy(np.asarray(audio_windows(sup.audio_rows, e.cfg, sup.frame_index[c] + shift), np.float32))
                return (1 - (v * e.embed_audio(aw)).sum(-1)).numpy()

            true, late, early = loss(0), loss(a.shift), loss(-a.shift)
            fr = torch.from_numpy(c)
            l_au = float(au_consistency_loss(sup.aunet, face_crops(bank.images[fr].float() / 255, sup.face_affines[fr],
                                                                  sup.aunet.cfg.region), sup.au_target[fr]))
        res[S] = dict(windows=int(len(c)), l_sync_true=float(true.mean()), l_sync_audio_late=float(late.mean()),
                      l_sync_audio_early=float(early.mean()),
                      true_below_both_shifts=float(((true < late) & (true < early)).mean()), l_au_real=l_au)
        print(S, json.dumps(res[S]), flush=True)
    a.out.write_text(json.dumps(dict(dataset=str(a.dataset), frames=a.frames, shift=a.shift, sizes=res), indent=2))


def window_losses(e, mouths: torch.Tensor, rows: np.ndarray, centres: np.ndarray, shift: int) -> dict:
    """mouths (W, 5, h, w, 3) of windows centred on clip frames `centres` -> L_sync true vs shifted audio."""
    from emogs.experts.sync import audio_windows

    with torch.no_grad():
        v = e.embed_video_rgb(mouths)

        def loss(s: int) -> np.ndarray:
            aw = torch.from_numpy(np.asarray(audio_windows(rows, e.cfg, centres + s), np.float32))
            return (1 - (v * e.embed_audio(aw)).sum(-1)).numpy()

        true, late, early = loss(0), loss(shift), loss(-shift)
    return dict(windows=int(len(centres)), l_sync_true=float(true.mean()), l_sync_audio_late=float(late.mean()),
                l_sync_audio_early=float(early.mean()), true_below_both_shifts=float(((true < late) & (true < early)).mean()))


def on_run(dataset: Path, run: Path, shift: int) -> dict:
    from emogs.data.dataset import TalkingHeadDataset
    from emogs.experts.crops import crop_affines
    from emogs.experts.sync import load_sync_expert, mouth_windows
    from emogs.io.media import read_frames
    from emogs.train.experts import expert_audio_rows

    e = load_sync_expert()
    ds = TalkingHeadDataset(dataset, split="test")
    side = np.stack(list(read_frames(run / "test_render.mp4")))
    S = side.shape[1]
    halves = {"render": side[:, :, :S], "ground truth": side[:, :, S:2 * S]}
    idx = ds.indices[: len(side)]
    A = crop_affines(np.asarray(ds.tracks["landmarks"], np.float32)[..., :2], e.cfg.region)[idx] * (S / ds.manifest["size"])
    rows = expert_audio_rows(ds, e.cfg, log=lambda _: None)
    p = np.arange(2 + shift, len(idx) - 2 - shift)
    win = p[:, None] + np.arange(-2, 3)[None]
    out = {}
    for k, fr in halves.items():
        x = torch.from_numpy(fr[win.reshape(-1)]).float().reshape(len(p), 5, S, S, 3) / 255
        out[k] = window_losses(e, mouth_windows(x, torch.from_numpy(A[win]), e.cfg.region), rows, idx[p], shift)
    cfg = json.loads((run / "config.json").read_text())
    out["loss"] = {k: cfg["loss"].get(k) for k in ("sync", "au", "sync_every")}
    print(run, json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
