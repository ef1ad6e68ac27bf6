"""Choosing the speech-motion prior's settings on the training identities only (out-of-fold), never on the
held-out ones (`train_speech_motion.HELD_OUT`, asserted).

    python scripts/speech_motion_oof.py NAME ['{SpeechMotionConfig overrides}'] ['{train_model kwargs}']
        [--steps 250] [--fold-seeds 0,1] [--seeds 0] [--exclude CLIP,...] [--smooth S] [--lags]
        [--data /work/datasets] [--fits FITS] [--out exp.jsonl]

For each fold seed the training identities are split into two folds (`train_speech_motion.folds`); a network
(or the average of `--seeds` networks) trained on one fold predicts the other. Reported: jawOpen r of every
training clip (its clip statistics, gain 1), frame-weighted and clip mean over clips, per fold seed, and the
spread ratio at gain 1; one JSON line appended to --out. Clips are those of docs/speech_motion/clips.txt with
the shifts and drops of the shipped prior's JSON. `--exclude`: clips not trained on (still measured).
"""
import argparse, json, sys, time, pickle
from pathlib import Path
import numpy as np
WT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(WT)); sys.path.insert(0, str(WT / "scripts"))
import torch
torch.set_num_threads(1)
import train_speech_motion as T
from speech_motion_data import clip_names

ap = argparse.ArgumentParser()
ap.add_argument("name"); ap.add_argument("config", nargs="?", default="{}"); ap.add_argument("train", nargs="?", default="{}")
ap.add_argument("--steps", type=int, default=250); ap.add_argument("--fold-seeds", default="0,1")
ap.add_argument("--seeds", default="0", help="training seeds averaged (ensemble of independently trained nets)")
ap.add_argument("--smooth", type=float, default=None)
ap.add_argument("--exclude", default="", help="clips left out of every training set (still measured)")
ap.add_argument("--data", default="/work/datasets"); ap.add_argument("--fits", default="/work/scratch-speech5/fits")
ap.add_argument("--out", default="/work/scratch-speech5/exp.jsonl")
ap.add_argument("--cache", default=None, help="pickle of the loaded clips (made when missing)")
ap.add_argument("--lags", action="store_true", help="also the OOF jaw r at extra lags -2..2")
a = ap.parse_args()
T.CLIP_NAMES = clip_names(str(WT / "docs/speech_motion/clips.txt"))
DATA, FITS = Path(a.data), Path(a.fits)
T._NAMES53 = T.names53(FITS)
cache = Path(a.cache) if a.cache else None
if cache is not None and cache.is_file():
    clips = pickle.loads(cache.read_bytes())
else:
    clips = T.load_clips(DATA, FITS, "whisper", T.SPEECH_COEFFS_DEFAULT)
    if cache is not None:
        cache.write_bytes(pickle.dumps(clips))
clips, dropped, _ = T.apply_lags_from(clips, WT / "emogs/model/weights/speech_motion_whisper.json")
train = [c for c in clips if c.identity not in T.HELD_OUT]
assert not any(c.identity in T.HELD_OUT for c in train)
cfg_kw, tr_kw = json.loads(a.config), json.loads(a.train)
j = list(T.SPEECH_COEFFS_DEFAULT).index("jawOpen")
ids = sorted({c.identity for c in train})
res, lagc = {}, {}
t0 = time.time()
for fs in [int(x) for x in a.fold_seeds.split(",")]:
    fl = T.folds(ids, 2, fs)
    for k, f in enumerate(fl):
        tr = [c for c in train if c.identity not in f and c.name not in a.exclude.split(",")]
        preds, nets_of = {}, {}
        for sd in [int(x) for x in a.seeds.split(",")]:
            net, facts = T.train_model(tr, "whisper", a.steps, 1000 * fs + 10 + k + 100 * sd, log=lambda s: None,
                                       cfg_kw=cfg_kw, **tr_kw)
            for c in train:
                if c.identity in f:
                    preds.setdefault(c.name, []).append(T.unit_prediction(net, c, smooth=a.smooth))
                    nets_of.setdefault(c.name, []).append(net)
        for c in train:
            if c.identity in f:
                dev = np.mean(preds[c.name], 0)
                pa, _ = T.predict_absolute(net, c, "clip", dev)
                ok = c.valid
                r = T.corr(pa[ok, j], c.target[ok, j])
                sdr = float(pa[ok, j].std() / c.target[ok, j].std())
                res.setdefault(c.name, []).append((r, sdr, int(ok.sum())))
                if a.lags:
                    for L in range(-2, 3):
                        devL = np.mean([T.unit_prediction(nn_, c, lag=c.lag + L, smooth=a.smooth) for nn_ in nets_of[c.name]], 0)
                        pL, _ = T.predict_absolute(net, c, "clip", devL)
                        lagc.setdefault(L, []).append((T.corr(pL[ok, j], c.target[ok, j]), int(ok.sum())))
w = np.array([v[0][2] for v in res.values()], float)
rr = np.array([np.mean([x[0] for x in v]) for v in res.values()])
sr = np.array([np.mean([x[1] for x in v]) for v in res.values()])
# per fold-seed numbers too (noise of the estimate)
per_fs = []
for i in range(len(a.fold_seeds.split(","))):
    ri = np.array([v[i][0] for v in res.values()])
    per_fs.append((round(float(np.average(ri, weights=w)), 3), round(float(ri.mean()), 3)))
out = {"name": a.name, "config": cfg_kw, "train": tr_kw, "steps": a.steps, "fold_seeds": a.fold_seeds, "seeds": a.seeds,
       "smooth": a.smooth, "exclude": a.exclude, "oof_jaw_r_fw": round(float(np.average(rr, weights=w)), 4), "oof_jaw_r_clip": round(float(rr.mean()), 4),
       "oof_jaw_sd_ratio_fw": round(float(np.average(sr, weights=w)), 3), "per_fold_seed": per_fs,
       "lag_curve_fw": {L: round(float(np.average([x[0] for x in v], weights=[x[1] for x in v])), 4) for L, v in lagc.items()},
       "seconds": round(time.time() - t0, 1), "params": facts["params"],
       "clips": {n: round(float(np.mean([x[0] for x in v])), 3) for n, v in res.items()}}
with open(a.out, "a") as fh:
    fh.write(json.dumps(out) + "\n")
print(json.dumps({k: v for k, v in out.items() if k != "clips"}))
