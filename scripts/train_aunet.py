"""Train and validate AUNet (`emogs.experts.aunet`): face crop -> the 17 AU intensities of our AU tracks.

    python scripts/expert_data.py --data /work/prep --cache CACHE --videos ../shared/data/emotion/*.mp4 \
        ../shared/data/pretrain/noaudio/*.mp4                               # crops + tracks, once
    python scripts/train_aunet.py train --cache CACHE -o emogs/experts/weights/aunet.safetensors [--minutes 40]
    python scripts/train_aunet.py evaluate --cache CACHE --model emogs/experts/weights/aunet.safetensors
    python scripts/train_aunet.py reliability --cache CACHE -o OUT.json   # the tracks' own mirror test-retest

Targets: `aus` of every tracked frame (interpolated gap frames are left out) of every cached clip: the
speaking clips (video/, pretrain/, pretrain/wild/), the MEAD emotion clips and pretrain/noaudio (tracked by
expert_data.py the way prepare does). Identities in `HELD_OUT` (the lip-sync expert's held-out people plus
MEAD W011 and dpe_man_suit) are only used for validation: per-AU mean absolute error and Pearson r.
Augmentation: scale / rotation / shift / mirror (the AUs are bilateral means, so a mirrored face has the same
AUs), brightness / contrast / saturation / colour gains, blur, down-up sampling, JPEG, noise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from expert_data import FACE_CACHE, Clip, open_clips, schedule_lr  # noqa: E402
from train_sync_expert import HELD_OUT as SYNC_HELD_OUT  # noqa: E402
from train_sync_expert import _blur  # noqa: E402

from emogs.experts.aunet import AUNet, AUNetConfig, load_aunet  # noqa: E402
from emogs.experts.crops import FACE  # noqa: E402
from emogs.experts.weights import save_weights  # noqa: E402
from emogs.face.aus import AU_NAMES  # noqa: E402

HELD_OUT = SYNC_HELD_OUT + ["W011", "dpe_man_suit"]
SEED = 0
MIN_CONFIDENCE = 0.9  # frames whose face is partly outside the image have less reliable AUs


def usable(clip: Clip) -> np.ndarray:
    t = clip.tracks
    return np.flatnonzero(t["tracked"] & (t["confidence"] >= MIN_CONFIDENCE))


def split(clips: list[Clip]) -> tuple[list[Clip], list[Clip]]:
    return [c for c in clips if c.identity not in HELD_OUT], [c for c in clips if c.identity in HELD_OUT]


def augment(x: np.ndarray, rng: np.random.Generator, strong: bool = True) -> torch.Tensor:
    """(B, 128, 128, 3) uint8 cached crops -> (B, 112, 112, 3) float [0, 1]."""
    import cv2

    b, hc, wc, _ = x.shape
    s = FACE.height
    t = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0).permute(0, 3, 1, 2)
    v, u = np.meshgrid(np.arange(s) + 0.5 - s / 2, np.arange(s) + 0.5 - s / 2, indexing="ij")
    grids = np.empty((b, s, s, 2), np.float32)
    for i in range(b):
        sc = np.exp(rng.uniform(-0.08, 0.08)) if strong else 1.0
        th = np.deg2rad(rng.uniform(-8, 8)) if strong else 0.0
        sh = rng.uniform(-5, 5, 2) if strong else np.zeros(2)
        uu = -u if (strong and rng.random() < 0.5) else u
        c, sn = np.cos(th) * sc, np.sin(th) * sc
        grids[i, ..., 0] = 2 * (c * uu - sn * v + wc / 2 + sh[0]) / wc - 1
        grids[i, ..., 1] = 2 * (sn * uu + c * v + hc / 2 + sh[1]) / hc - 1
    t = F.grid_sample(t, torch.from_numpy(grids), mode="bilinear", padding_mode="border", align_corners=False)
    if not strong:
        return t.permute(0, 2, 3, 1).contiguous()
    out = []
    for i in range(b):
        xi = t[i:i + 1]
        gray = xi.mean(1, keepdim=True)
        xi = gray + (xi - gray) * float(rng.uniform(0.6, 1.3))  # saturation
        xi = xi * torch.from_numpy(rng.uniform(0.85, 1.15, (1, 3, 1, 1)).astype(np.float32))  # colour gains
        m = xi.mean()
        xi = (xi - m) * float(rng.uniform(0.7, 1.3)) + m + float(rng.uniform(-0.12, 0.12))  # contrast, brightness
        xi = xi.clamp(0, 1)
        if rng.random() < 0.3:
            f = rng.uniform(0.35, 0.8)
            xi = F.interpolate(F.interpolate(xi, scale_factor=f, mode="area"), size=(s, s), mode="bilinear",
                               align_corners=False)
        if rng.random() < 0.4:
            sig = float(rng.uniform(0.3, 1.5))
            xi = _blur(xi.reshape(3, 1, s, s), sig).reshape(1, 3, s, s)
        if rng.random() < 0.3:
            q = int(rng.integers(20, 80))
            im = (xi[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
            im = cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)
            xi = torch.from_numpy(im).float().div_(255.0).permute(2, 0, 1)[None]
        if rng.random() < 0.4:
            xi = xi + torch.randn_like(xi) * float(rng.uniform(0, 0.03))
        out.append(xi)
    return torch.cat(out).clamp_(0, 1).permute(0, 2, 3, 1).contiguous()


def centre(face: np.ndarray) -> np.ndarray:
    """(N, 128, 128, 3) cached -> (N, 112, 112, 3): the network crop (same px / cm: a slice)."""
    d = (FACE_CACHE.height - FACE.height) // 2
    return np.ascontiguousarray(face[:, d:d + FACE.height, d:d + FACE.width])


@torch.no_grad()
def predict(model: AUNet, clip: Clip, idx: np.ndarray, batch: int = 128) -> np.ndarray:
    out = []
    for s in range(0, len(idx), batch):
        x = torch.from_numpy(centre(clip.face[idx[s:s + batch]])).float() / 255.0
        out.append(model(x).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(AU_NAMES)), np.float32)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() < 1e-6 or b.std() < 1e-6:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def au_table(pred: np.ndarray, target: np.ndarray, train_mean: np.ndarray | None = None) -> dict:
    res = {}
    for j, n in enumerate(AU_NAMES):
        r = {"mae": float(np.abs(pred[:, j] - target[:, j]).mean()), "r": pearson(pred[:, j], target[:, j]),
             "target_mean": float(target[:, j].mean()), "target_sd": float(target[:, j].std())}
        if train_mean is not None:
            r["mae_predict_train_mean"] = float(np.abs(train_mean[j] - target[:, j]).mean())
        res[n] = r
    return res


def evaluate(model: AUNet, clips: list[Clip], train_mean: np.ndarray | None = None) -> dict:
    model.eval()
    P, T, per = [], [], {}
    for c in clips:
        idx = usable(c)
        if len(idx) == 0:
            continue
        p, t = predict(model, c, idx), c.tracks["aus"][idx]
        P.append(p), T.append(t)
        per[c.name] = {"frames": int(len(idx)), "mae": float(np.abs(p - t).mean()),
                       "r_mean": float(np.nanmean([pearson(p[:, j], t[:, j]) for j in range(p.shape[1])]))}
    P, T = np.concatenate(P), np.concatenate(T)
    table = au_table(P, T, train_mean)
    return {"frames": int(len(P)), "mae": float(np.abs(P - T).mean()),
            "r_mean": float(np.nanmean([v["r"] for v in table.values()])), "per_au": table, "clips": per}


def cmd_train(a) -> None:
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    clips = [c for c in open_clips(a.cache) if len(usable(c))]
    train, val = split(clips)
    items = [(c, usable(c)) for c in train]
    n = np.array([len(i) for _, i in items], np.float64)
    prob = np.sqrt(n) / np.sqrt(n).sum()
    train_mean = np.concatenate([c.tracks["aus"][i] for c, i in items]).mean(0)
    cfg = AUNetConfig(width=a.width)
    model = AUNet(cfg)
    with torch.no_grad():  # start the output at the training mean
        model.net[-1].bias.copy_(torch.logit(torch.from_numpy(train_mean).float().clamp(0.02, 0.98)))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    print(f"train {len(train)} clips ({len({c.identity for c in train})} people, {int(n.sum())} frames); "
          f"validate {len(val)} clips ({sorted({c.identity for c in val})})", flush=True)
    t0, step, log, ema = time.monotonic(), 0, [], None
    while True:
        el = time.monotonic() - t0
        lr = schedule_lr(a, step, el)
        if lr is None:
            break
        for g in opt.param_groups:
            g["lr"] = lr
        ks = rng.choice(len(items), a.batch, p=prob)
        xs, ys = [], []
        for k in ks:
            c, idx = items[k]
            f = int(idx[rng.integers(len(idx))])
            xs.append(c.face[f]), ys.append(c.tracks["aus"][f])
        x = augment(np.stack(xs), rng)
        y = torch.from_numpy(np.stack(ys)).float()
        model.train()
        loss = (model(x) - y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if step % 50 == 0:
            print(f"step {step} {el / 60:.1f} min L1 {ema:.4f} lr {lr:.2e}", flush=True)
        if a.eval_every and step % a.eval_every == 0:
            r = evaluate(model, val, train_mean)
            log.append({"step": step, "minutes": el / 60, "train_l1": ema, "val_mae": r["mae"], "val_r_mean": r["r_mean"]})
            print("  val", json.dumps(log[-1]), flush=True)
    model.eval()
    r = evaluate(model, val, train_mean)
    info = {"name": "aunet", "config": asdict(cfg), "au_names": list(AU_NAMES), "seed": a.seed, "steps": step,
            "batch": a.batch, "lr": a.lr, "minutes": round((time.monotonic() - t0) / 60, 1),
            "threads": torch.get_num_threads(), "min_confidence": MIN_CONFIDENCE,
            "train_clips": [c.name for c in train], "train_identities": sorted({c.identity for c in train}),
            "held_out_identities": HELD_OUT, "validation_clips": [c.name for c in val],
            "train_au_mean": train_mean.tolist(), "log": log, "final_train_l1": ema,
            "validation": {k: v for k, v in r.items() if k != "clips"}, "validation_clips_detail": r["clips"],
            "script": "scripts/train_aunet.py", "data": str(a.cache)}
    print(f"final val MAE {r['mae']:.4f} mean r {r['r_mean']:.3f}", flush=True)
    save_weights(model, a.output, info)
    print("wrote", a.output)


def cmd_evaluate(a) -> None:
    clips = [c for c in open_clips(a.cache) if len(usable(c))]
    train, val = split(clips)
    model = load_aunet(a.model)
    mean = np.concatenate([c.tracks["aus"][usable(c)] for c in train]).mean(0)
    r = evaluate(model, val, mean)
    print(f"held-out frames {r['frames']}: MAE {r['mae']:.4f}, mean r {r['r_mean']:.3f}")
    for k, v in r["per_au"].items():
        print(f"  {k} MAE {v['mae']:.3f} (train-mean predictor {v['mae_predict_train_mean']:.3f}) r {v['r']:.3f} "
              f"target sd {v['target_sd']:.3f}")
    for k, v in r["clips"].items():
        print(f"  {k:40s} {v['frames']:5d} MAE {v['mae']:.3f} r {v['r_mean']:.3f}")
    if a.output:
        from emogs.io.atomic import write_json

        write_json(a.output, r)


def cmd_reliability(a) -> None:
    """The AU tracks against themselves on mirrored frames: MediaPipe + emogs.face.aus on the horizontally
    flipped frames of the held-out clips vs the tracks (bilateral AUs should not change)."""
    from emogs.face.analyze import analyze_frames
    from emogs.io.media import read_frames

    clips = [c for c in open_clips(a.cache) if c.identity in HELD_OUT and len(usable(c))]
    P, T = [], []
    for c in clips:
        src = Path(c.info["video"]) if c.info.get("video") else c.ds / "frames.mp4"
        fr = np.stack([f[:, ::-1] for f in read_frames(src, fps=25.0 if c.info.get("video") else None)])[: c.n]
        res = analyze_frames(fr, 25.0, total=len(fr))
        idx = usable(c)
        idx = idx[res["success"][idx]]
        P.append(res["aus"][idx]), T.append(c.tracks["aus"][idx])
        print(f"{c.name}: {len(idx)} frames, MAE {np.abs(P[-1] - T[-1]).mean():.4f}", flush=True)
    P, T = np.concatenate(P), np.concatenate(T)
    r = {"method": cmd_reliability.__doc__.replace("\n", " "), "clips": [c.name for c in clips],
         "frames": int(len(P)), "mae": float(np.abs(P - T).mean()), "per_au": au_table(P, T)}
    r["r_mean"] = float(np.nanmean([v["r"] for v in r["per_au"].values()]))
    for k, v in r["per_au"].items():
        print(f"  {k} MAE {v['mae']:.3f} r {v['r']:.3f}")
    from emogs.io.atomic import write_json

    write_json(a.output, r)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--cache", type=Path, required=True)
    t.add_argument("-o", "--output", type=Path, required=True)
    t.add_argument("--width", type=int, default=24)
    t.add_argument("--minutes", type=float, default=40.0)
    t.add_argument("--steps", type=int, default=0)
    t.add_argument("--batch", type=int, default=48)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--eval-every", type=int, default=0)
    t.add_argument("--seed", type=int, default=SEED)
    e = sub.add_parser("evaluate")
    e.add_argument("--cache", type=Path, required=True)
    e.add_argument("--model", type=Path, required=True)
    e.add_argument("-o", "--output", type=Path, default=None)
    r = sub.add_parser("reliability")
    r.add_argument("--cache", type=Path, required=True)
    r.add_argument("-o", "--output", type=Path, required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    {"train": cmd_train, "evaluate": cmd_evaluate, "reliability": cmd_reliability}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
