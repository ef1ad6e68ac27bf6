"""Train the speech -> face-mesh-motion prior (`emogs.model.speech_motion`) on every speaking clip.

    python scripts/speech_motion_data.py fit --data /work/prep --out FITS       # ICT fits of the clips, once
    python scripts/train_speech_motion.py offsets --data /work/prep --fits FITS --work WORK
    python scripts/train_speech_motion.py train   --data /work/prep --fits FITS --work WORK --feature mel
    python scripts/train_speech_motion.py drive   --work WORK --feature mel   # other speakers' audio

Identities (clip name -> person, `speech_motion_data.identity`, the lip-sync expert's rule) in `HELD_OUT` are
never trained on (the lip-sync expert's held-out list). The other ("training") identities are split into two
folds by a seeded shuffle.
- `offsets`: a model trained on one fold measures each clip of the other fold (held-out clips: both fold
  models, averaged): the lag (frames, audio window of frame t + lag) maximising the correlation of predicted
  with tracked jawOpen (WORK/offsets_<feature>.json: the lag curves). When training, clips whose lag is not 0
  are shifted by it when the peak is clear, dropped when no lag gives a usable correlation or the best lag
  lies at the edge of the search (`decide`). Held-out clips are never shifted.
- `train`: the two fold models again on the corrected clips give out-of-fold predictions of every training
  clip: their correlations choose nothing, but their spread sets each coefficient's output gain (the network
  trained on MSE shrinks toward the mean); then the final model trains on all training identities and is
  measured on the held-out identities: per clip and overall, per coefficient r, jawOpen r, spread ratio of
  jawOpen and of the mesh's inner-lip gap, smoothness. Writes WORK/<feature>/{model.safetensors, model.json,
  predictions.npz} (copy them into emogs/model/weights/ to ship: `--ship`).
- `drive`: the held-out heads (macron, acosta) driven by the speech files in ../shared/data/audio: predicted
  jawOpen and lip-gap spread against the person's own tracked spread.
All randomness is seeded (`--seed`); torch runs on `--threads` threads.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from speech_motion_data import clip_names, identity, speaking_datasets  # noqa: E402

HELD_OUT = ["macron", "acosta", "feifei_li", "amy_klobuchar", "hdtf_RD_Radio13", "pcavs_downey",
            "latentsync_woman_outdoor_demo1"]
SEED = 0
from emogs.model.speech_motion import SPEECH_COEFFS as SPEECH_COEFFS_DEFAULT  # noqa: E402

MAX_LAG = 10          # frames searched for the audio-video offset
SHIFT_MIN_PEAK = 0.3  # a non-zero lag is applied when its jawOpen r is at least this ...
SHIFT_MIN_GAIN = 0.05  # ... and beats lag 0 by this much
DROP_MAX_PEAK = 0.15  # a training clip whose best r stays below this is dropped (no usable sync)
GAIN_MIN_R = 0.2      # a coefficient's output gain is calibrated only where its out-of-fold r reaches this
BAD_FRAME_PX = 4.0    # frames whose fit error (px at 512) exceeds this are not trained or measured on


@dataclass
class Clip:
    name: str
    identity: str
    rows: np.ndarray          # (R, D) float32 feature rows
    rpf: int                  # rows per frame
    target: np.ndarray        # (N, K) fitted speech coefficients
    full: np.ndarray          # (N, E) all fitted coefficients
    valid: np.ndarray         # (N,) bool: tracked and fitted well
    fit_identity: np.ndarray  # (I,) ICT identity of the fit
    lag: int = 0              # applied audio-video shift (frames)
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.target)

    @property
    def mean(self) -> np.ndarray:
        return self.target[self.valid].mean(0)

    @property
    def scale(self) -> np.ndarray:
        """The person's per-coefficient spread in this clip (`speech_motion.person_stats`)."""
        from emogs.model.speech_motion import person_stats

        return person_stats(self.target[self.valid])[1]


def load_clips(data: Path, fits: Path, feature: str, coeffs) -> list[Clip]:
    from emogs.model.speech_motion import coeff_index

    clips = []
    for ds in speaking_datasets(data, CLIP_NAMES):
        fp = fits / f"{ds.name}.npz"
        if not fp.is_file():
            print(f"  {ds.name}: no fit in {fits}, skipped", flush=True)
            continue
        m = json.loads((ds / "manifest.json").read_text())
        if feature == "whisper" and not (m["features"].get("whisper")):
            print(f"  {ds.name}: no Whisper features, skipped", flush=True)
            continue
        rows = np.load(ds / f"audio_{feature}.npy").astype(np.float32)
        n = m["num_frames"]
        with np.load(fp) as z:
            expr, names, err, fid = z["expression"], list(z["expression_names"]), z["error_px"], z["identity"]
            size = int(z["size"])
        with np.load(ds / "tracks.npz") as t:
            tracked = t["tracked"].astype(bool)
        if len(expr) != n:
            raise SystemExit(f"{ds.name}: fit has {len(expr)} frames, dataset {n}")
        idx = coeff_index(names, coeffs)
        valid = tracked & (err * 512.0 / size <= BAD_FRAME_PX)
        clips.append(Clip(ds.name, identity(ds.name), rows, rows.shape[0] // n, expr[:, idx].astype(np.float32),
                          expr.astype(np.float32), valid, fid.astype(np.float64),
                          info={"frames": n, "valid": int(valid.sum()), "size": size}))
    return clips


def folds(identities, k: int = 2, seed: int = SEED) -> list[list[str]]:
    ids = sorted(set(identities))
    random.Random(seed).shuffle(ids)
    return [sorted(ids[i::k]) for i in range(k)]


def split(clips: list[Clip], data: Path | None = None):
    """(training clips, held-out clips, the two folds of training identities). The folds are drawn from the
    identities of every speaking clip in `data` (default: of `clips`), so dropping a clip does not reshuffle
    them."""
    train = [c for c in clips if c.identity not in HELD_OUT]
    held = [c for c in clips if c.identity in HELD_OUT]
    ids = [identity(d.name) for d in speaking_datasets(data, CLIP_NAMES)] if data is not None else [c.identity for c in clips]
    return train, held, folds([i for i in ids if i not in HELD_OUT])


# ------------------------------------------------------------------------------------------------ training
def window_index(n_rows: int, rpf: int, half: int, frames: np.ndarray) -> np.ndarray:
    """Row indices (len(frames), 2*half) of each frame's window (`emogs.data.windows.window`)."""
    c2 = 2 * rpf * frames + rpf
    start = (c2 - 2 * half) // 2
    return np.clip(start[:, None] + np.arange(2 * half)[None], 0, n_rows - 1)


def feature_stats(clips: list[Clip], row_norm: bool = False) -> tuple[np.ndarray, np.ndarray]:
    allr = np.concatenate([c.rows for c in clips])
    if row_norm:
        allr = (allr - allr.mean(-1, keepdims=True)) / (allr.std(-1, keepdims=True) + 1e-5)
    return allr.mean(0), allr.std(0) + 1e-3


def train_model(clips: list[Clip], feature: str, steps: int, seed: int, log=print, batch: int = 32, seq: int = 8,
                lr: float = 2e-3, cfg_kw: dict | None = None, freq_shift: int = 0, level: float = 0.4,
                vel_weight: float = 0.5, jaw_weight: float = 3.0, weight_decay: float = 1e-2, callback=None,
                callback_every: int = 100, geo_weight: float = 0.0, gram: np.ndarray | None = None,
                corr_weight: float = 0.0, noise: float = 0.1, feat_drop: float = 0.1):
    """A SpeechMotion trained on `clips` (their `lag` applied). Returns (module, training facts).
    Loss: per-coefficient MSE of the deviation (jawOpen weighted `jaw_weight`) + `vel_weight` x MSE of its
    frame-to-frame change (+ `geo_weight` x the mouth-geometry error) + `corr_weight` x (1 - Pearson r) of each
    coefficient over the `seq` frames of a sample (weights as the MSE's). Augmentation of Whisper rows: Gaussian
    noise of `noise` x the rows' sd, and `feat_drop` of the feature dimensions set to the row mean."""
    import torch
    import torch.nn.functional as F

    from emogs.model.speech_motion import SpeechMotion, SpeechMotionConfig

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = SpeechMotionConfig.for_feature(feature, **(cfg_kw or {}))
    net = SpeechMotion(cfg)
    mu, sd = feature_stats(clips, cfg.row_norm)
    net.feat_mean.copy_(torch.from_numpy(mu))
    net.feat_std.copy_(torch.from_numpy(sd))
    raw_sd = torch.from_numpy(feature_stats(clips)[1]).float()
    K = len(cfg.coeffs)
    # per-clip arrays: for each frame t the rows of frame t + lag; targets as deviations from the clip mean
    # (with cfg.person_norm in units of the clip's own spread)
    data = []
    for c in clips:
        t = np.arange(c.n)
        src = t + c.lag
        ok = c.valid & (src >= 0) & (src < c.n)
        dev = (c.target - c.mean) / (c.scale if cfg.person_norm else 1.0)
        data.append((torch.from_numpy(c.rows), window_index(len(c.rows), c.rpf, cfg.half, np.clip(src, 0, c.n - 1)),
                     torch.from_numpy(dev.astype(np.float32)), torch.from_numpy(ok)))
    if cfg.person_norm:
        scale = torch.ones(K)
        net.ref_scale.copy_(torch.from_numpy(np.median([c.scale for c in clips], 0).astype(np.float32)))
    else:  # per-coefficient loss scale
        dev_all = np.concatenate([(c.target - c.mean)[c.valid] for c in clips])
        scale = torch.from_numpy(dev_all.std(0) + 0.02).float()
    wk = torch.ones(K)
    if "jawOpen" in cfg.coeffs:
        wk[list(cfg.coeffs).index("jawOpen")] = jaw_weight
    wk = wk / wk.mean()
    if geo_weight > 0:  # mouth geometry: squared landmark displacement of the coefficient error (Gram matrix)
        if cfg.person_norm:
            raise ValueError("the geometry loss works in coefficient units (person_norm off)")
        G = torch.as_tensor(gram, dtype=torch.float32)
        dv = torch.from_numpy(np.concatenate([(c.target - c.mean)[c.valid] for c in clips]))
        geo_norm = float(torch.einsum("nk,kl,nl->n", dv, G, dv).mean())
    p = np.array([math.sqrt(c.n) for c in clips])
    p = p / p.sum()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    net.train()
    t0 = time.perf_counter()
    ema = None
    for step in range(1, steps + 1):
        ci = rng.choice(len(clips), size=batch, p=p)
        ws, ys, ms = [], [], []
        for i in ci:
            rows, widx, dev, ok = data[i]
            s = int(rng.integers(0, max(1, len(dev) - seq + 1)))
            fr = np.arange(s, s + seq).clip(0, len(dev) - 1)
            w = rows[torch.from_numpy(widx[fr])]            # (T, 2h, D)
            if feature == "mel":                            # recording level: a log10 power offset
                w = w + float(rng.uniform(-level, level))
                sh = int(rng.integers(-freq_shift, freq_shift + 1)) if freq_shift else 0
                if sh:                                      # vocal tract length: shift the mel bins
                    w = torch.roll(w, sh, dims=-1)
                    if sh > 0:
                        w[..., :sh] = w[..., sh:sh + 1]
                    else:
                        w[..., sh:] = w[..., sh - 1:sh]
            ws.append(w)
            ys.append(dev[fr])
            ms.append(ok[fr])
        w = torch.stack(ws)
        if feature == "whisper" and noise > 0:
            w = w + noise * raw_sd * torch.randn_like(w)
        keep = (torch.rand(w.shape[0], 1, 1, w.shape[-1]) > feat_drop).float()  # feature-dimension dropout
        w = w * keep + (1 - keep) * w.mean(-1, keepdim=True)
        y, m = torch.stack(ys), torch.stack(ms).float()[..., None]
        pr = net(w)                                         # (B, T, K)
        e = ((pr - y) / scale) ** 2 * wk
        loss = (e * m).sum() / (m.sum() * K + 1e-6)
        v = (((pr[:, 1:] - pr[:, :-1]) - (y[:, 1:] - y[:, :-1])) / scale) ** 2 * wk
        mv = m[:, 1:] * m[:, :-1]
        loss = loss + vel_weight * (v * mv).sum() / (mv.sum() * K + 1e-6)
        if corr_weight > 0:  # 1 - Pearson r over each sample's frames, per coefficient
            ms_ = m.sum(1, keepdim=True) + 1e-6
            pc = (pr - (pr * m).sum(1, keepdim=True) / ms_) * m
            yc = (y - (y * m).sum(1, keepdim=True) / ms_) * m
            r = (pc * yc).sum(1) / torch.sqrt((pc * pc).sum(1) * (yc * yc).sum(1) + 1e-8)  # (B, K)
            live = (m.sum(1) >= 3).float()                                                # (B, 1)
            loss = loss + corr_weight * ((1 - r) * wk * live).sum() / (live.sum() * K + 1e-6)
        if geo_weight > 0:
            d = pr - y
            geo = torch.einsum("btk,kl,btl->bt", d, G, d)[..., None]
            loss = loss + geo_weight * (geo * m).sum() / (m.sum() * geo_norm + 1e-9)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if step % 250 == 0 or step == steps:
            log(f"    step {step}/{steps} loss {ema:.4f} ({time.perf_counter() - t0:.0f} s)")
        if callback is not None and (step % callback_every == 0 or step == steps):
            net.eval()
            callback(step, net)
            net.train()
    net.eval()
    return net, {"steps": steps, "seconds": round(time.perf_counter() - t0, 1), "final_loss": round(ema, 5),
                 "batch": batch, "seq": seq, "lr": lr, "freq_shift": freq_shift, "level": level,
                 "vel_weight": vel_weight, "jaw_weight": jaw_weight, "weight_decay": weight_decay,
                 "geo_weight": geo_weight, "corr_weight": corr_weight, "noise": noise, "feat_drop": feat_drop,
                 "params": sum(q.numel() for q in net.parameters())}


# ------------------------------------------------------------------------------------------------ measuring
def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 1e-12 else 0.0


def unit_prediction(net, c: Clip, lag: int | None = None, smooth=None) -> np.ndarray:
    """The network's output (N, K) on clip c, gain applied, before any person scale; at the clip's applied
    audio-video shift unless `lag` is given."""
    from emogs.model.speech_motion import predict_rows

    return predict_rows(net, c.rows, c.n, scale=np.ones(c.target.shape[1], np.float32),
                        lag=c.lag if lag is None else lag, smooth=smooth)


def lag_curve(net, c: Clip, jaw: int, max_lag: int = MAX_LAG) -> list[float]:
    """jawOpen r (valid frames) of the prediction with audio lag L, for L in [-max_lag, max_lag]."""
    dev = c.target[:, jaw] - c.mean[jaw]
    out = []
    for L in range(-max_lag, max_lag + 1):
        p = unit_prediction(net, c, lag=L)[:, jaw]
        t = np.arange(c.n)
        ok = c.valid & (t + L >= 0) & (t + L < c.n)
        out.append(corr(p[ok], dev[ok]))
    return out


def mesh_basis_lip():
    """Functions of the ICT model for the inner-lip gap (cm) of full expressions."""
    from emogs.mesh.aus import lip_gap
    from emogs.mesh.correspondence import load_correspondence
    from emogs.mesh.ict import load_ict

    model = load_ict()
    corr_ = load_correspondence(CORRESPONDENCE) if CORRESPONDENCE else load_correspondence()
    return lambda ident, expr: lip_gap(model, corr_, ident, expr)


CORRESPONDENCE = None
CLIP_NAMES = None    # --clips: only these clip names of --data (None: every speaking clip)
MOUTH_POINTS = None  # MediaPipe landmarks of the geometry loss: lips and the lower face outline


def mouth_gram(coeffs) -> np.ndarray:
    """(K, K) Gram matrix G of the coefficients' displacement of the mouth landmarks on the ICT surface, per
    landmark (cm^2): a coefficient error d moves those landmarks by d^T G d on average (identity-free: ICT's
    expression deltas do not depend on the identity)."""
    from emogs.mesh import correspondence as C
    from emogs.mesh.ict import load_ict
    from emogs.model.speech_motion import coeff_index

    model = load_ict()
    corr_ = C.load_correspondence(CORRESPONDENCE) if CORRESPONDENCE else C.load_correspondence()
    lower_oval = C.FACE_OVAL[C.FACE_OVAL.index(361):C.FACE_OVAL.index(132) + 1]
    pts = C.LIPS_UPPER_OUTER + C.LIPS_LOWER_OUTER + C.LIPS_UPPER_INNER + C.LIPS_LOWER_INNER + lower_oval
    _, _, Be = corr_.basis(model)
    B = Be[coeff_index(model.expression_names, coeffs)][:, pts].astype(np.float64)  # (K, P, 3)
    return (np.einsum("kpc,lpc->kl", B, B) / len(pts)).astype(np.float32)


def predict_absolute(net, c: Clip, protocol: str = "halves", dev: np.ndarray | None = None):
    """Predicted coefficients (N, K) in [0, 1] and the person's mean full expression (N, E) they sit in.
    The person's statistics (mean, scale) come from the whole clip (`protocol` "clip") or, for honest
    measurement, from the other half of the clip ("halves": frames of the first half use the second half's
    statistics and vice versa). `dev`: the network's deviations with unit scale (computed when None)."""
    from emogs.model.speech_motion import person_stats, predict_rows

    if dev is None:
        dev = unit_prediction(net, c)
    unit = net.scale_of(np.ones(c.target.shape[1])).numpy()  # 1 where the output is in person units
    person = bool(net.cfg.person_norm)
    out = np.zeros_like(c.target)
    base = np.zeros_like(c.full)
    parts = [(np.arange(c.n), np.arange(c.n))] if protocol == "clip" else \
        [(np.arange(c.n // 2, c.n), np.arange(0, c.n // 2)), (np.arange(0, c.n // 2), np.arange(c.n // 2, c.n))]
    for src, dst in parts:
        ok = src[c.valid[src]]
        m, sc = person_stats(c.target[ok])
        out[dst] = np.clip(m + dev[dst] * (sc if person else unit), 0, 1)
        base[dst] = c.full[ok].mean(0)
    return out, base


def clip_metrics(c: Clip, pa: np.ndarray, base: np.ndarray, coeffs, lip=None) -> dict:
    """Metrics of predicted coefficients pa (N, K) against the clip's fit (valid frames); `base` (N, E) the
    person's mean full expression the prediction is written into (for the mesh's lip gap)."""
    from emogs.model.speech_motion import coeff_index

    ok = c.valid
    K = len(coeffs)
    rs = {coeffs[k]: round(corr(pa[ok, k], c.target[ok, k]), 3) for k in range(K)}
    j = list(coeffs).index("jawOpen")
    out = {"frames": int(ok.sum()), "jaw_r": rs["jawOpen"],
           "jaw_sd_pred": round(float(pa[ok, j].std()), 4), "jaw_sd_true": round(float(c.target[ok, j].std()), 4),
           "jaw_mean_true": round(float(c.mean[j]), 4),
           "jaw_step_pred": round(float(np.abs(np.diff(pa[:, j])).mean()), 4),
           "jaw_step_true": round(float(np.abs(np.diff(c.target[:, j])).mean()), 4),
           "r": rs}
    out["jaw_sd_ratio"] = round(out["jaw_sd_pred"] / max(out["jaw_sd_true"], 1e-9), 3)
    if lip is not None:
        full = base.copy()
        full[:, coeff_index(list(_NAMES53), coeffs)] = pa
        g_pred, g_true = lip(c.fit_identity, full), lip(c.fit_identity, c.full)
        out.update(lip_r=round(corr(g_pred[ok], g_true[ok]), 3), lip_sd_pred=round(float(g_pred[ok].std()), 4),
                   lip_sd_true=round(float(g_true[ok].std()), 4))
        out["lip_sd_ratio"] = round(out["lip_sd_pred"] / max(out["lip_sd_true"], 1e-9), 3)
    return out


def spreads_in_halves(c: Clip, pa: np.ndarray, base: np.ndarray, coeffs, lip=None) -> dict:
    """Spread ratios (predicted sd / tracked sd of jawOpen and of the mesh's inner-lip gap) within each half
    of the clip, from `predict_absolute(..., "halves")` (each half predicted with the other half's person
    statistics), averaged over the two halves by frames."""
    from emogs.model.speech_motion import coeff_index

    j = list(coeffs).index("jawOpen")
    halves = [np.arange(0, c.n // 2), np.arange(c.n // 2, c.n)]
    if lip is not None:
        full = base.copy()
        full[:, coeff_index(list(_NAMES53), coeffs)] = pa
        g_pred, g_true = lip(c.fit_identity, full), lip(c.fit_identity, c.full)
    jr, lr, w = [], [], []
    for h in halves:
        h = h[c.valid[h]]
        w.append(len(h))
        jr.append(pa[h, j].std() / max(c.target[h, j].std(), 1e-9))
        if lip is not None:
            lr.append(g_pred[h].std() / max(g_true[h].std(), 1e-9))
    out = {"jaw_sd_ratio": round(float(np.average(jr, weights=w)), 3)}
    if lip is not None:
        out["lip_sd_ratio"] = round(float(np.average(lr, weights=w)), 3)
    return out


def measure(net, c: Clip, coeffs, lip=None, dev: np.ndarray | None = None) -> dict:
    """A clip's metrics: correlations with the clip's own person statistics (they only matter through the
    [0, 1] clipping), spread ratios with the other half's (`spreads_in_halves`)."""
    if dev is None:
        dev = unit_prediction(net, c)
    row = clip_metrics(c, *predict_absolute(net, c, "clip", dev), coeffs, lip)
    row["jaw_sd_ratio_clip_stats"] = row["jaw_sd_ratio"]
    if "lip_sd_ratio" in row:
        row["lip_sd_ratio_clip_stats"] = row["lip_sd_ratio"]
    row.update(spreads_in_halves(c, *predict_absolute(net, c, "halves", dev), coeffs, lip))
    return row


_NAMES53: tuple = ()


def names53(fits: Path) -> tuple:
    for p in sorted(fits.glob("*.npz")):
        with np.load(p) as z:
            return tuple(str(x) for x in z["expression_names"])
    raise SystemExit(f"no fits in {fits}")


def summarise(rows: dict[str, dict], coeffs) -> dict:
    """Frame-weighted means over clips of the metrics, plus per-identity jaw r."""
    w = np.array([r["frames"] for r in rows.values()], float)
    keys = ["jaw_r", "jaw_sd_ratio", "lip_r", "lip_sd_ratio"]
    out = {}
    for k in keys:
        v = [r.get(k) for r in rows.values()]
        if all(x is not None for x in v):
            out[k + "_mean"] = round(float(np.average(v, weights=w)), 3)
            out[k + "_clip_mean"] = round(float(np.mean(v)), 3)
    out["r_per_coeff"] = {n: round(float(np.average([r["r"][n] for r in rows.values()], weights=w)), 3)
                          for n in coeffs}
    return out


# ------------------------------------------------------------------------------------------------ commands
def cmd_offsets(a) -> None:
    from emogs.io.atomic import atomic_path
    from emogs.model.speech_motion import SPEECH_COEFFS

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    clips = load_clips(Path(a.data), Path(a.fits), a.feature, SPEECH_COEFFS)
    train, held, fl = split(clips, Path(a.data))
    jaw = SPEECH_COEFFS.index("jawOpen")
    curves: dict[str, list[list[float]]] = {}
    for k, f in enumerate(fl):
        tr = [c for c in train if c.identity not in f]
        print(f"fold {k}: training on {len(tr)} clips ({len({c.identity for c in tr})} people), "
              f"measuring {sum(c.identity in f for c in train)} + {len(held)} held-out", flush=True)
        net, _ = train_model(tr, a.feature, a.steps, a.seed + k, cfg_kw=json.loads(a.config or "{}"),
                             **train_kwargs(a, tr))
        for c in [c for c in train if c.identity in f] + held:
            curves.setdefault(c.name, []).append(lag_curve(net, c, jaw))
    out = {}
    for c in clips:
        cur = np.mean(curves[c.name], 0)
        lags = np.arange(-MAX_LAG, MAX_LAG + 1)
        best = int(lags[np.argmax(cur)])
        r0, rb = float(cur[MAX_LAG]), float(cur.max())
        held_out = c.identity in HELD_OUT
        decision, lag = decide([float(x) for x in cur], held_out)
        out[c.name] = {"identity": c.identity, "best_lag": best, "r_at_0": round(r0, 3), "r_best": round(rb, 3),
                       "curve": [round(float(x), 3) for x in cur], "decision": decision, "lag": lag,
                       "held_out": held_out}
        print(f"  {c.name:40s} best lag {best:+3d}  r(0) {r0:+.3f}  r(best) {rb:+.3f}  -> {decision}", flush=True)
    res = {"feature": a.feature, "steps": a.steps, "seed": a.seed, "max_lag": MAX_LAG, "folds": fl,
           "rules": {"shift_min_peak": SHIFT_MIN_PEAK, "shift_min_gain": SHIFT_MIN_GAIN,
                     "drop_max_peak": DROP_MAX_PEAK}, "clips": out}
    with atomic_path(work / f"offsets_{a.feature}.json") as tmp:
        Path(tmp).write_text(json.dumps(res, indent=1))


def train_kwargs(a, clips) -> dict:
    """`train_model` keyword arguments from --train-config (JSON), with the mouth Gram matrix when the
    geometry loss is asked for."""
    kw = json.loads(a.train_config or "{}")
    if kw.get("geo_weight"):
        kw["gram"] = mouth_gram(tuple(json.loads(a.config or "{}").get("coeffs", SPEECH_COEFFS_DEFAULT)))
    return kw


def train_ensemble(a, clips, seed: int, log, cfg_kw):
    """`a.ensemble` networks trained on `clips` with seeds seed, seed + 1000, ... merged into one prior
    (`merge_members`: their average); one network when `a.ensemble` is 1. -> (module, facts)."""
    from emogs.model.speech_motion import merge_members

    nets, facts = [], []
    for i in range(max(1, getattr(a, "ensemble", 1))):
        n, f = train_model(clips, a.feature, a.steps, seed + 1000 * i, log=log, cfg_kw=cfg_kw, **train_kwargs(a, clips))
        nets.append(n)
        facts.append(f)
    if len(nets) == 1:
        return nets[0], facts[0]
    out = dict(facts[0], seconds=round(sum(f["seconds"] for f in facts), 1),
               final_loss=[f["final_loss"] for f in facts], params=sum(f["params"] for f in facts),
               ensemble=len(nets), ensemble_seeds=[seed + 1000 * i for i in range(len(nets))])
    return merge_members(nets), out


def decide(curve: list[float], held_out: bool) -> tuple[str, int | None]:
    """(decision, lag or None = drop) for a clip's jawOpen-r lag curve over [-MAX_LAG, MAX_LAG]."""
    cur = np.asarray(curve)
    max_lag = (len(cur) - 1) // 2
    k = int(np.argmax(cur))
    best, r0, rb = k - max_lag, float(cur[max_lag]), float(cur[k])
    if held_out:
        return "held out: measured, never shifted", 0
    if rb < DROP_MAX_PEAK:
        return "drop: no lag gives a usable jawOpen correlation", None
    if abs(best) == max_lag and rb - r0 >= SHIFT_MIN_GAIN:
        return "drop: best lag at the edge of the search", None
    if best != 0 and rb >= SHIFT_MIN_PEAK and rb - r0 >= SHIFT_MIN_GAIN:
        return f"shift by {best}", best
    return "keep at 0", 0


def apply_offsets(clips: list[Clip], path: Path) -> tuple[list[Clip], list[str], dict]:
    """Clips shifted or dropped by `decide` on the measured lag curves of `path` (the rules apply at this
    point, so changing them needs no new measurement); returns (kept clips, dropped names, decisions)."""
    off = json.loads(path.read_text())["clips"]
    keep, dropped, decisions = [], [], {}
    for c in clips:
        o = off.get(c.name)
        if o is None:
            keep.append(c)
            decisions[c.name] = "not measured: kept at 0"
            continue
        decision, lag = decide(o["curve"], c.identity in HELD_OUT)
        decisions[c.name] = decision
        if lag is None:
            dropped.append(c.name)
            continue
        c.lag = int(lag)
        keep.append(c)
    return keep, dropped, decisions


def apply_lags_from(clips: list[Clip], path: Path) -> tuple[list[Clip], list[str], dict]:
    """The shifts and drops a trained model's JSON (`train_clips[*].lag`, `dropped_clips`) recorded, applied to
    `clips` (reuses that model's offset measurement instead of measuring again). Held-out clips and clips the
    JSON does not name stay at lag 0."""
    info = json.loads(Path(path).read_text())
    lags = {n: int(v.get("lag", 0)) for n, v in info.get("train_clips", {}).items()}
    gone = set(info.get("dropped_clips", []))
    old = info.get("offset_decisions", {})
    keep, dropped, decisions = [], [], {}
    for c in clips:
        if c.name in gone:
            dropped.append(c.name)
            decisions[c.name] = f"{old.get(c.name, 'drop')} (from {path})"
            continue
        c.lag = 0 if c.identity in HELD_OUT else lags.get(c.name, 0)
        decisions[c.name] = ("held out: never shifted" if c.identity in HELD_OUT else
                             f"lag {c.lag} (from {path})" if c.name in lags else "not in the JSON: kept at 0")
        keep.append(c)
    return keep, dropped, decisions


def cmd_train(a) -> None:
    import torch

    from emogs.io.atomic import atomic_path
    from emogs.model.speech_motion import SPEECH_COEFFS, save_speech_motion

    cfg_kw = json.loads(a.config) if a.config else {}
    coeffs = tuple(cfg_kw.get("coeffs", SPEECH_COEFFS))
    work = Path(a.work) / (a.name or a.feature)
    work.mkdir(parents=True, exist_ok=True)
    logf = open(work / "train.log", "a")

    def log(s):
        print(s, flush=True)
        logf.write(s + "\n")
        logf.flush()

    clips = load_clips(Path(a.data), Path(a.fits), a.feature, coeffs)
    dropped = []
    off_path = Path(a.offsets) if a.offsets else Path(a.work) / "offsets_mel.json"
    if a.lags_from:
        clips, dropped, decisions = apply_lags_from(clips, Path(a.lags_from))
        off_path = Path(a.lags_from)
        log(f"lags from {off_path}: shifted {[(c.name, c.lag) for c in clips if c.lag]}, dropped {dropped}")
    elif off_path.is_file():
        clips, dropped, decisions = apply_offsets(clips, off_path)
        log(f"offsets from {off_path}: shifted {[(c.name, c.lag) for c in clips if c.lag]}, dropped {dropped}")
    else:
        decisions = {}
        log(f"no offsets file {off_path}: every clip at lag 0")
    train, held, fl = split(clips, Path(a.data))
    excluded = set(clip_names(a.exclude_train) or ())
    if excluded & {c.name for c in held}:
        raise SystemExit(f"--exclude-train names held-out clips: {sorted(excluded & {c.name for c in held})}")
    if excluded:
        log(f"not trained on (still measured out-of-fold): {sorted(excluded)}")
    lip = mesh_basis_lip()
    # 1. out-of-fold predictions of the training clips -> per-coefficient gain
    oof: dict[str, np.ndarray] = {}
    cv_rows = {}
    K = len(coeffs)
    if not a.no_cv:
        for k, f in enumerate(fl):
            tr = [c for c in train if c.identity not in f and c.name not in excluded]
            log(f"cv fold {k}: {len(tr)} training clips")
            net, _ = train_ensemble(a, tr, a.seed + 10 + k, log, cfg_kw)
            for c in train:
                if c.identity in f:
                    oof[c.name] = unit_prediction(net, c)
                    cv_rows[c.name] = measure(net, c, coeffs, lip, oof[c.name])
        person = bool(net.cfg.person_norm)
        P = np.concatenate([(oof[c.name] - oof[c.name][c.valid].mean(0))[c.valid] for c in train])
        T = np.concatenate([((c.target - c.mean) / (c.scale if person else 1.0))[c.valid] for c in train])
        sd_p, sd_t = P.std(0), T.std(0)
        r_oof = np.array([corr(P[:, k], T[:, k]) for k in range(K)])
        # the spread of speech the network misses by shrinking toward the mean, restored where it has signal
        gain = np.where(r_oof >= GAIN_MIN_R, np.clip(sd_t / np.maximum(sd_p, 1e-6), 1.0, 3.0), 1.0)
        log("cv (out-of-fold, gain 1) jaw r per clip: " +
            ", ".join(f"{n}: {r['jaw_r']:.2f}" for n, r in cv_rows.items()))
        cv_summary = summarise(cv_rows, coeffs)
        log(f"cv summary: {json.dumps({k: v for k, v in cv_summary.items() if k != 'r_per_coeff'})}")
        log("cv r per coeff: " + json.dumps(cv_summary["r_per_coeff"]))
        log("gain: " + json.dumps({n: round(float(g), 3) for n, g in zip(coeffs, gain)}))
    else:
        gain, r_oof, cv_summary = np.ones(K), None, None
    # 2. the final model on all training identities, measured on the held-out identities
    fit_on = [c for c in train if c.name not in excluded]
    log(f"final: {len(fit_on)} training clips, {len({c.identity for c in fit_on})} people")
    net, facts = train_ensemble(a, fit_on, a.seed, log, cfg_kw)
    raw = {c.name: measure(net, c, coeffs, lip) for c in held}
    net.gain.copy_(torch.from_numpy(gain.astype(np.float32)))
    rows, preds = {}, {}
    for c in held:
        preds[c.name] = predict_absolute(net, c, "clip")[0]
        rows[c.name] = measure(net, c, coeffs, lip)
        rows[c.name]["jaw_sd_ratio_gain1"] = raw[c.name]["jaw_sd_ratio"]
        rows[c.name]["lip_sd_ratio_gain1"] = raw[c.name]["lip_sd_ratio"]
        curve = lag_curve(net, c, coeffs.index("jawOpen"), 5)
        rows[c.name]["best_lag"] = int(np.argmax(curve)) - 5
        rows[c.name]["jaw_r_best_lag"] = round(float(max(curve)), 3)
    per_id = {}
    for ident in sorted({c.identity for c in held}):
        sub = {n: r for n, r in rows.items() if identity(n) == ident}
        per_id[ident] = summarise(sub, coeffs)
    overall = summarise(rows, coeffs)
    for n, r in rows.items():
        log(f"  held-out {n:40s} jaw r {r['jaw_r']:+.3f}  jaw sd {r['jaw_sd_pred']:.3f}/{r['jaw_sd_true']:.3f} "
            f"= {r['jaw_sd_ratio']:.2f} (gain 1: {r['jaw_sd_ratio_gain1']:.2f})  lip r {r['lip_r']:+.3f} "
            f"sd ratio {r['lip_sd_ratio']:.2f}  best lag {r['best_lag']:+d}")
    log(f"held-out overall: {json.dumps({k: v for k, v in overall.items() if k != 'r_per_coeff'})}")
    log("held-out r per coeff: " + json.dumps(overall["r_per_coeff"]))
    info = {"name": "speech_motion", "feature": a.feature, "config": net.cfg.to_dict(), "seed": a.seed,
            "training": facts, "script": "scripts/train_speech_motion.py",
            "command": " ".join(sys.argv), "data": str(a.data), "fits": str(a.fits), "clips_filter": a.clips,
            "correspondence": a.correspondence, "offsets": str(off_path) if off_path.is_file() else None,
            "held_out_identities": HELD_OUT, "folds": fl,
            "train_clips": {c.name: {"identity": c.identity, "lag": c.lag, **c.info} for c in fit_on},
            "excluded_from_training": {c.name: {"identity": c.identity, "lag": c.lag, **c.info,
                                                "oof_jaw_r": cv_rows.get(c.name, {}).get("jaw_r")}
                                       for c in train if c.name in excluded},
            "held_out_clips": [c.name for c in held], "dropped_clips": dropped, "offset_decisions": decisions,
            "offset_rules": {"shift_min_peak": SHIFT_MIN_PEAK, "shift_min_gain": SHIFT_MIN_GAIN,
                             "drop_max_peak": DROP_MAX_PEAK, "max_lag": MAX_LAG},
            "bad_frame_px": BAD_FRAME_PX,
            "gain": {n: round(float(g), 4) for n, g in zip(coeffs, gain)},
            "cv": {"summary": cv_summary, "clips": cv_rows,
                   "r_oof_pooled": None if r_oof is None else {n: round(float(r), 3) for n, r in zip(coeffs, r_oof)}},
            "held_out": {"overall": overall, "per_identity": per_id, "clips": rows}}
    save_speech_motion(net, work / "model.safetensors", info)
    with atomic_path(work / "predictions.npz") as tmp:
        np.savez_compressed(tmp, **{n: p for n, p in preds.items()},
                            **{f"{c.name}__target": c.target for c in held})
    if a.ship:
        from emogs.model.speech_motion import weights_path
        save_speech_motion(net, weights_path(a.feature), info)
        log(f"shipped to {weights_path(a.feature)}")


def cmd_drive(a) -> None:
    """macron / acosta (held-out) driven by other speakers' speech: spread of predicted jawOpen and lip gap
    against the person's own tracked spread."""
    from emogs.audio.features import log_mel
    from emogs.io.atomic import atomic_path
    from emogs.io.media import frames_for_audio, load_audio
    from emogs.model.speech_motion import SPEECH_COEFFS, coeff_index, load_speech_motion, predict_rows

    work = Path(a.work) / (a.name or a.feature)
    net = load_speech_motion(a.feature, path=work / "model.safetensors")
    lip = mesh_basis_lip()
    audio = sorted(Path(a.audio).glob("*.wav"))
    res = {}
    jaw = SPEECH_COEFFS.index("jawOpen")
    for person in a.people:
        ds = Path(a.data) / person
        with np.load(Path(a.fits) / f"{person}.npz") as z:
            expr, names, fid = z["expression"], [str(x) for x in z["expression_names"]], z["identity"]
        idx = coeff_index(names, SPEECH_COEFFS)
        mean = expr[:, idx].mean(0)
        g_true = lip(fid, expr)
        own_rows = np.load(ds / f"audio_{a.feature}.npy").astype(np.float32)
        own = predict_rows(net, own_rows, len(expr), mean=mean)
        res[person] = {"tracked_jaw_sd": round(float(expr[:, idx[jaw]].std()), 4),
                       "tracked_lip_sd": round(float(g_true.std()), 4),
                       "own_audio_jaw_sd": round(float(own[:, jaw].std()), 4), "drives": {}}
        for wp in audio:
            wav = load_audio(wp, 16000)   # as `emogs render --audio` reads it: 16 kHz mono
            if a.feature == "mel":
                rows = log_mel(wav)
            else:
                from emogs.audio.whisper import whisper_features
                rows = whisper_features(wav)
            n = frames_for_audio(len(wav))
            p = predict_rows(net, rows.astype(np.float32), n, mean=mean)
            full = np.broadcast_to(expr.mean(0), (n, expr.shape[1])).copy()
            full[:, idx] = p
            g = lip(fid, full)
            res[person]["drives"][wp.name] = {"seconds": round(n / 25, 2), "jaw_sd": round(float(p[:, jaw].std()), 4),
                                              "jaw_sd_ratio": round(float(p[:, jaw].std()) / res[person]["tracked_jaw_sd"], 3),
                                              "lip_sd": round(float(g.std()), 4),
                                              "lip_sd_ratio": round(float(g.std()) / res[person]["tracked_lip_sd"], 3)}
            print(f"{person} <- {wp.name}: jawOpen sd {p[:, jaw].std():.3f} vs tracked "
                  f"{res[person]['tracked_jaw_sd']:.3f}; lip gap sd {g.std():.3f} vs {res[person]['tracked_lip_sd']:.3f} cm",
                  flush=True)
        d = res[person]["drives"].values()
        res[person]["mean_jaw_sd_ratio"] = round(float(np.mean([x["jaw_sd_ratio"] for x in d])), 3)
        res[person]["mean_lip_sd_ratio"] = round(float(np.mean([x["lip_sd_ratio"] for x in d])), 3)
    with atomic_path(work / "drive.json") as tmp:
        Path(tmp).write_text(json.dumps(res, indent=1))
    print(json.dumps({p: (r["mean_jaw_sd_ratio"], r["mean_lip_sd_ratio"]) for p, r in res.items()}))


def cmd_finetune(a) -> None:
    """Per-person fine-tuning of the trained prior on each held-out clip: `fine_tune` on the clip's train
    split (manifest), measured on its test split against the prior alone (person statistics from the train
    split in both)."""
    from emogs.io.atomic import atomic_path
    from emogs.model.speech_motion import (SPEECH_COEFFS, fine_tune, load_speech_motion, person_stats,
                                           predict_rows)

    work = Path(a.work) / (a.name or a.feature)
    prior = load_speech_motion(a.feature, path=work / "model.safetensors")
    coeffs = prior.cfg.coeffs
    clips = [c for c in load_clips(Path(a.data), Path(a.fits), a.feature, coeffs) if c.identity in HELD_OUT]
    j = list(coeffs).index("jawOpen")
    res = {}
    for c in clips:
        if c.n < a.min_seconds * 25:
            continue
        m = json.loads((Path(a.data) / c.name / "manifest.json").read_text())
        (tr0, tr1), (te0, te1) = m["splits"]["train"], m["splits"]["test"]
        ok = c.valid[tr0:tr1]
        frames = np.arange(tr0, tr1)[ok]
        from emogs.model.speech_motion import _feature_windows
        windows = _feature_windows(c.rows, c.rpf, frames, prior.cfg.half).astype(np.float32)
        t0 = time.perf_counter()
        ft = fine_tune(prior, windows, c.target[frames], steps=a.ft_steps, seed=a.seed)
        secs = time.perf_counter() - t0
        mean, scale = person_stats(c.target[frames])
        te = np.arange(te0, te1)[c.valid[te0:te1]]
        row = {"train_frames": int(len(frames)), "test_frames": int(len(te)), "seconds": round(secs, 1),
               "report": {k: v for k, v in ft.fine_tune_report.items() if k not in ("mean", "scale")}}
        for label, net in (("prior", prior), ("fine_tuned", ft)):
            p = predict_rows(net, c.rows, c.n, mean=mean, scale=scale)
            row[label] = {"jaw_r": round(corr(p[te, j], c.target[te, j]), 3),
                          "jaw_sd_ratio": round(float(p[te, j].std() / max(c.target[te, j].std(), 1e-9)), 3),
                          "mse": round(float(((p[te] - c.target[te]) ** 2).mean()), 5),
                          "r": {n: round(corr(p[te, k], c.target[te, k]), 3) for k, n in enumerate(coeffs)}}
        res[c.name] = row
        print(f"{c.name}: test jaw r prior {row['prior']['jaw_r']:+.3f} -> fine-tuned {row['fine_tuned']['jaw_r']:+.3f}; "
              f"mse {row['prior']['mse']:.5f} -> {row['fine_tuned']['mse']:.5f}; best step "
              f"{row['report']['best_step']} ({secs:.0f} s)", flush=True)
    with atomic_path(work / "finetune.json") as tmp:
        Path(tmp).write_text(json.dumps({"steps": a.ft_steps, "clips": res}, indent=1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("offsets", "train", "drive", "finetune"):
        s = sub.add_parser(name)
        s.add_argument("--data", default="/work/prep", help="folder of prepared datasets")
        s.add_argument("--fits", default="/work/scratch-speech/fits_v1", help="speech_motion_data.py fit output")
        s.add_argument("--work", default="/work/scratch-speech/work")
        s.add_argument("--feature", default="mel", choices=["mel", "whisper"])
        s.add_argument("--steps", type=int, default=250)
        s.add_argument("--seed", type=int, default=SEED)
        s.add_argument("--threads", type=int, default=1)
        s.add_argument("--correspondence", default=None, help="MediaPipe->ICT table the fits used")
        s.add_argument("--config", default=None, help="JSON of SpeechMotionConfig overrides")
        s.add_argument("--train-config", default=None, help="JSON of train_model keyword arguments")
        s.add_argument("--name", default=None, help="sub-folder of WORK for this run (default: the feature)")
        s.add_argument("--clips", default=None, help="only these clips of --data: a file of names (one a line) "
                       "or a comma list (default: every speaking clip there)")
    t = sub.choices["train"]
    t.add_argument("--offsets", default=None, help="offsets JSON (default WORK/offsets_mel.json when present)")
    t.add_argument("--lags-from", default=None, help="apply the shifts / drops recorded in a trained model's JSON "
                   "(e.g. the shipped prior's) instead of an offsets file")
    t.add_argument("--no-cv", action="store_true", help="skip the fold models (gain 1)")
    t.add_argument("--exclude-train", default=None, help="training-identity clips not trained on (fold models and "
                   "final), still measured out-of-fold: a file of names or a comma list")
    t.add_argument("--ensemble", type=int, default=1, help="networks trained with different seeds and merged "
                   "into one prior (their average), for the fold models and the final one")
    t.add_argument("--ship", action="store_true", help="also write emogs/model/weights/speech_motion_<feature>.*")
    f = sub.choices["finetune"]
    f.add_argument("--ft-steps", type=int, default=300)
    f.add_argument("--min-seconds", type=float, default=10.0, help="clips shorter than this are not fine-tuned")
    d = sub.choices["drive"]
    d.add_argument("--audio", default=str(ROOT.parent / "shared" / "data" / "audio"))
    d.add_argument("--people", nargs="+", default=["macron_50s", "acosta_71s"])
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    global CORRESPONDENCE, _NAMES53, CLIP_NAMES
    CORRESPONDENCE = a.correspondence
    CLIP_NAMES = clip_names(a.clips)
    _NAMES53 = names53(Path(a.fits))
    {"offsets": cmd_offsets, "train": cmd_train, "drive": cmd_drive, "finetune": cmd_finetune}[a.cmd](a)


if __name__ == "__main__":
    main()
