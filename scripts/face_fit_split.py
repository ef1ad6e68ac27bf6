#!/usr/bin/env python
"""Is a head's soft face a fitting ceiling or a generalisation gap? Face-box PSNR (labels 3-6 box, field
composite: the head pasted by its alpha on the true frame, through the inference path with each frame's tracked
camera, audio, AU window and fitted expression, as the training-time test metrics) on a spread of training frames
against test frames. CPU, about a minute for a 150 k-Gaussian head at 512 px:

    python scripts/face_fit_split.py RUN DATASET -o out.json [--train 10] [--test 9] [--size 512]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


class _Subset:
    def __init__(self, ds, ids):
        self.ds, self.ids, self.background = ds, ids, ds.background

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return self.ds[self.ids[i]]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--train", type=int, default=10)
    ap.add_argument("--test", type=int, default=9)
    ap.add_argument("--size", type=int, default=512)
    a = ap.parse_args()
    from emogs.run import RunFolder
    from emogs.train.config import config_from_run
    from emogs.train.data import FrameBank, face_box
    from emogs.train.evaluate import render_bank
    from emogs.train.loop import open_datasets

    folder = RunFolder(a.run)
    _, model = folder.load_model()
    train, test = open_datasets(a.dataset, config_from_run(folder.config_dict()))
    res: dict = {"command": " ".join(["python scripts/face_fit_split.py", *sys.argv[1:]])}
    for name, ds, k in (("train", train, a.train), ("test", test, a.test)):
        ids = np.unique(np.linspace(0, len(ds) - 1, k).round().astype(int)).tolist()
        bank = FrameBank.from_dataset(_Subset(ds, ids), a.size)
        t = time.time()
        out, gt = render_bank(model, bank, over_ground_truth=True), bank.images.numpy()
        ps = []
        for j in range(len(out)):
            x0, y0, x1, y1 = face_box(bank.labels[j].numpy())
            d = (out[j, y0:y1, x0:x1].astype(np.float32) - gt[j, y0:y1, x0:x1]) / 255
            ps.append(float(-10 * np.log10(max((d ** 2).mean(), 1e-12))))
        res[name] = {"split_frames": ids, "face_psnr": [round(p, 2) for p in ps], "mean": round(float(np.mean(ps)), 2)}
        print(f"{name}: face PSNR {res[name]['mean']:.2f} over {len(ids)} frames ({time.time() - t:.0f}s)", flush=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
