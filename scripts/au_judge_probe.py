#!/usr/bin/env python
"""Why does an AU edit on a mesh head not register with the judge (MediaPipe's blendshape-based AU estimator)?
Two probes (CPU, one thread; docs/control_proof.md "Session 5" has the numbers):

    python scripts/au_judge_probe.py mead DATASET [--emotion-dir ../shared/data/emotion] [-o out.json]
    python scripts/au_judge_probe.py follow RUN --dataset DATASET [--visible] [-o out.json]
    python scripts/au_judge_probe.py head RUN --dataset DATASET --audio WAV [--aus AU01,AU02] [--variants ...]
                                     [--frames 30,45,60] [--size 512] [-o out.json] [--png sheet.png]

`mead`: a *real* strong expression's landmark motion (the MEAD level-3 surprised / sad / angry clips of each
speaker: mean of the clip's top-10% frames by the key AU's blendshape, minus the speaker's neutral-clip median, in
MediaPipe's canonical face frame) is added (x1, x1.5, x2) to DATASET's tracked landmarks (every 25th frame) and
read by MediaPipe's blendshape stage alone (`emogs.face.blendshape_stage`) and the AU ramps. It asks: does the
judge see a real expression's geometry on this face at all?

`follow`: do the Gaussians a render shows at an AU's landmarks move with the mesh? For each AU at 1.0 from the
default face (the AU table's drive, mesh only, first training camera), the Gaussians within 3 px (projected) and
1 cm (depth) of the AU's landmarks with opacity > 0.3 (`--visible`: and not hidden behind the lid or eyeball
triangles at the default face, a z-buffer test), and the share of the landmarks' projected motion they make
(opacity-weighted), per parent region of the ICT mesh.

`head`: renders a few frames of a trained mesh head on the CPU for the plain controls and for each AU at 1.0
(0.51-4.51 s, the standard suite's window), split into the parts of the drive (variants below), tracks them
with MediaPipe (image mode) and reports per variant: the judge's rise of the edited AU over the plain frames
(geometry baseline: the plain frames' median), the vertical motion of the AU's landmarks against what the fitted
mesh alone predicts (the correspondence points of the full ICT model with the dataset's identity, projected with
the render's cameras), and the lip-landmark shift against the plain frames (px at the render size).
Variants (residual = the learned part's AU input; mesh = the expression coefficients):
  hold      residual clamped to the training range + 0.1 (until session 5), mesh as asked
  fade      residual faded back to the default beyond the range (ModelConfig.residual_beyond = fade)
  mesh      residual at the plain controls' values, mesh as asked (the mesh alone)
  resid     residual clamped, mesh at the plain values (the residual alone)
  meshG     residual plain, the mesh's change G times (e.g. mesh2, mesh1.5)
  fadeG     fade, the mesh's change G times (e.g. fade1.4)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LIPS = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 146, 91, 181, 84, 17, 314, 405, 321, 375, 78, 191, 80, 81,
        82, 13, 312, 311, 310, 415, 308, 95, 88, 178, 87, 14, 317, 402, 318, 324]
GROUPS = {"AU01": [107, 336, 55, 285], "AU02": [70, 300, 46, 276], "AU04": [107, 336, 55, 285], "AU05": [159, 386],
          "AU06": [117, 118, 119, 346, 347, 348], "AU07": [145, 374], "AU12": [61, 291], "AU15": [61, 291],
          "AU45": [159, 386]}
CH = {"AU01": ["browInnerUp"], "AU02": ["browOuterUpLeft", "browOuterUpRight"], "AU04": ["browDownLeft", "browDownRight"],
      "AU05": ["eyeWideLeft", "eyeWideRight"], "AU15": ["mouthFrownLeft", "mouthFrownRight"]}


def _similarity(P: np.ndarray):
    """The similarity `emogs.face.aus.frontalize` applies to one landmark set: (s, R, ms, md)."""
    from emogs.face.aus import RIGID_LANDMARKS
    from emogs.face.camera import canonical_face_mesh

    canon = canonical_face_mesh()[0].astype(np.float64)[RIGID_LANDMARKS]
    P = np.asarray(P, np.float64) * np.array([1.0, -1.0, -1.0])
    src = P[RIGID_LANDMARKS]
    ms, md = src.mean(0), canon.mean(0)
    a, b = src - ms, canon - md
    U, S, Vt = np.linalg.svd(a.T @ b)
    D = np.array([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = (U * D) @ Vt
    return (S * D).sum() / (a ** 2).sum(), R, ms, md


def cmd_mead(a) -> dict:
    from emogs.face.analyze import analyze_frames
    from emogs.face.aus import BS_INDEX, RAMPS, frontalize
    from emogs.face.blendshape_stage import blendshapes_from_landmarks
    from emogs.io.media import read_frames

    def au_of(b, k):
        lo, hi = RAMPS["bs:" + k]
        return np.clip((b[..., [BS_INDEX[n] for n in CH[k]]].mean(-1) - lo) / (hi - lo), 0, 1)

    t = np.load(Path(a.dataset) / "tracks.npz")
    ids = np.arange(0, len(t["landmarks"]), 25)
    real = t["landmarks"][ids[t["tracked"][ids]]].astype(np.float64)
    b0 = blendshapes_from_landmarks(real)
    out: dict = {"dataset": str(a.dataset), "frames": len(real), "rows": []}
    for sp in sorted({p.name.split("_")[0] for p in Path(a.emotion_dir).glob("*_front_*.mp4")}):
        tr = {}
        for emo in ("neutral", "surprised", "sad", "angry"):
            p = next(iter(sorted(Path(a.emotion_dir).glob(f"{sp}_front_{emo}_level*_001.mp4"))), None)
            if p is None:
                break
            r = analyze_frames(read_frames(p), 25.0)
            tr[emo] = (r["landmarks"][r["success"]], r["blendshapes"][r["success"]])
        if len(tr) < 4:
            continue
        base = np.median(frontalize(tr["neutral"][0]), 0)
        for emo, key in (("surprised", "AU01"), ("sad", "AU15"), ("angry", "AU04")):
            lm, bs = tr[emo]
            raw = bs[:, [BS_INDEX[n] for n in CH[key]]].mean(-1)
            top = np.argsort(raw)[-max(5, len(raw) // 10):]
            D = frontalize(lm[top]).mean(0) - base
            row = {"speaker": sp, "emotion": emo, "frames": len(top),
                   "on_mead": {k: float(au_of(bs[top], k).mean() - au_of(tr["neutral"][1], k).mean()) for k in CH}}
            for g in (1.0, 1.5, 2.0):
                moved = []
                for P in real:
                    s, R, ms, md = _similarity(P)
                    F = s * ((P * np.array([1, -1, -1.0]) - ms) @ R) + md + g * D
                    moved.append(((F - md) / s @ R.T + ms) * np.array([1.0, -1.0, -1.0]))
                b1 = blendshapes_from_landmarks(np.array(moved))
                row[f"on_person_x{g:g}"] = {k: float((au_of(b1, k) - au_of(b0, k)).mean()) for k in CH}
            out["rows"].append(row)
            print(f"{sp} {emo}: on MEAD " + " ".join(f"{k} {v:+.2f}" for k, v in row["on_mead"].items()), flush=True)
            for g in (1.0, 1.5, 2.0):
                print(f"   on {Path(a.dataset).name} x{g:g}: "
                      + " ".join(f"{k} {v:+.2f}" for k, v in row[f"on_person_x{g:g}"].items()), flush=True)
    return out


def cmd_follow(a) -> dict:
    import torch

    from emogs.face.aus import AU_NAMES
    from emogs.mesh.au_table import drive_matrix
    from emogs.mesh.correspondence import load_correspondence
    from emogs.mesh.ict import HEAD_REGIONS, load_ict
    from emogs.model.binding import to_world, triangle_frames
    from emogs.run import open_run

    r = open_run(a.run)
    _, model = r.load_model("cpu", checkpoint_ok=False)
    g, info = model.gaussians, r.dataset_info()
    head = load_ict().submesh(HEAD_REGIONS)
    region = np.empty(len(head.triangles), object)
    for n, rg in head.regions.items():
        region[rg.t0:rg.t1] = n
    par = g.parent.numpy()
    op = torch.sigmoid(g.opacity_logit).detach().numpy()
    w2c, K = r.train_cameras()[0].astype(np.float64), np.asarray(info["K"], np.float64)
    full, corr, m = load_ict(), load_correspondence(), np.load(Path(a.dataset) / "mesh.npz")

    def cam(p):
        return np.asarray(p, np.float64) @ w2c[:3, :3].T + w2c[:3, 3]

    def uv(c):
        return np.stack([K[0, 0] * c[:, 0] / c[:, 2] + K[0, 2], K[1, 1] * c[:, 1] / c[:, 2] + K[1, 2]], -1)

    def gauss(e):
        v = model.mesh_vertices(torch.as_tensor(e, dtype=torch.float32)[None])[0]
        c, R, k = triangle_frames(v, model.mesh_triangles)
        return cam(to_world(g.means, g.parent, c, R, k).detach().numpy())

    seen = np.ones(len(par), bool)
    if a.visible:  # only what the camera sees: not behind the lids or the eyeballs (z-buffer of those triangles)
        from emogs.model.eyelid import eye_occluders, visible
        from emogs.train.loop import person_mesh

        pm = person_mesh(Path(a.dataset))
        regs = {str(n): (int(x), int(y)) for n, (x, y) in zip(pm["region_names"], pm["region_triangles"])}
        with torch.no_grad():
            vv = model.mesh_vertices(model.expr_mean[None])[0]
            wc = to_world(g.means, g.parent, *triangle_frames(vv, model.mesh_triangles)).numpy().astype(np.float64)
        vn, tn = vv.numpy().astype(np.float64), model.mesh_triangles.numpy()
        seen = visible(wc, vn, tn, eye_occluders(vn, tn, regs), K, w2c, int(info.get("size", 512)))
    M = drive_matrix(info["expression_names"], AU_NAMES, calibrated=True)
    e0, d = model.expr_mean.numpy().astype(np.float64), np.asarray(info["au_mean"], np.float64)
    c0 = gauss(e0)
    l0c = cam(corr.points(full, full.vertices(m["identity"], e0)))
    out: dict = {"run": str(a.run), "aus": {}}
    for au, idx in GROUPS.items():
        j = AU_NAMES.index(au)
        e1 = e0 + (1 - d[j]) * M[j]
        g0, g1 = uv(c0), uv(gauss(e1))
        l0, l1 = uv(l0c), uv(cam(corr.points(full, full.vertices(m["identity"], e1))))
        dl = (l1 - l0)[idx]
        dd = np.linalg.norm(g0[:, None] - l0[idx][None], axis=-1)
        k = dd.argmin(1)
        near = (dd.min(1) < 3.0) & (op > 0.3) & (np.abs(c0[:, 2] - l0c[idx][k, 2]) < 1.0) & seen
        ratio = ((g1 - g0)[near] * dl[k[near]]).sum(-1) / (np.linalg.norm(dl[k[near]], axis=-1) ** 2 + 1e-9)
        w, regs = op[near], region[par[near]]
        row = dict(landmark_motion_px=float(np.linalg.norm(dl, axis=-1).mean()), gaussians=int(near.sum()),
                   follow=float((w * ratio).sum() / w.sum()),
                   by_region={str(rg): dict(opacity_share=float(w[regs == rg].sum() / w.sum()),
                                            follow=float((w * ratio)[regs == rg].sum() / w[regs == rg].sum()))
                              for rg in np.unique(regs)})
        out["aus"][au] = row
        print(f"{au}: landmarks move {row['landmark_motion_px']:.1f} px; the {row['gaussians']} visible Gaussians there "
              f"follow {row['follow']:.2f} of it; " + ", ".join(f"{k} {v['opacity_share']:.0%} of the opacity, follow "
                                                                 f"{v['follow']:.2f}" for k, v in row["by_region"].items()),
              flush=True)
    return out


def cmd_head(a) -> dict:
    import torch

    from emogs import Avatar
    from emogs.audio import feature_rows
    from emogs.avatar import clamp_to_range
    from emogs.data.windows import feature_windows, frame_windows
    from emogs.face.aus import AU_NAMES, aus_from_blendshapes, geometry_features
    from emogs.face.tracker import FaceTracker
    from emogs.io.media import frames_for_audio, load_audio
    from emogs.mesh.correspondence import load_correspondence
    from emogs.mesh.ict import load_ict

    torch.set_num_threads(1)
    av = Avatar.load(a.run, device="cpu", size=a.size, threads=1, au_drive="table")
    wav = load_audio(a.audio, 16000)
    F = frames_for_audio(len(wav), 16000, 25)
    ids = np.array([int(x) for x in a.frames.split(",")])
    mc = av.model.cfg
    rows, rpf = feature_rows(wav, mc.audio_feature)
    sbase = av.speech_expression(wav, F, rows)
    lo, hi = av.training_range()

    def inputs(plan):
        req = av.effective_au(plan, rows, rpf, True)
        expr = av.expressions(plan.au, sbase) if sbase is not None else av.expressions(req)
        return dict(fade=av.clamp_to_training(req), hold=clamp_to_range(req, lo, hi), expr=expr)

    w2c_all = av.plan(F, blinks=False).resolve_pose(av.train_w2c).world_to_cam

    def render(au, expr):
        call = (torch.as_tensor(w2c_all[ids], dtype=torch.float32), torch.as_tensor(av.K).expand(len(ids), 3, 3),
                torch.as_tensor(feature_windows(rows, rpf, ids, mc.audio_window), dtype=torch.float32),
                torch.as_tensor(frame_windows(au.astype(np.float32), ids, mc.au_window)),
                torch.as_tensor(av.background).expand(len(ids), -1, -1, -1),
                torch.as_tensor(expr[ids].astype(np.float32)))
        return torch.cat(list(av.renderer.run([call], av.size, av.size, av.cfg.backend))).numpy()

    ict, corr, m = load_ict(), load_correspondence(), np.load(Path(a.dataset) / "mesh.npz")

    def mesh_lm(expr):
        p = corr.points(ict, ict.vertices(m["identity"], expr[ids])).astype(np.float64)
        c = np.einsum("nij,npj->npi", w2c_all[ids][:, :3, :3], p) + w2c_all[ids][:, None, :3, 3]
        return np.stack([av.K[0, 0] * c[..., 0] / c[..., 2] + av.K[0, 2], av.K[1, 1] * c[..., 1] / c[..., 2] + av.K[1, 2]], -1)

    with FaceTracker(video_mode=False) as tr:
        def track(frames):
            res = [tr.track(np.ascontiguousarray(f), 0) for f in frames]
            return (np.array([np.full((478, 3), np.nan) if r is None else r.landmarks for r in res]),
                    np.array([np.full(52, np.nan) if r is None else r.blendshapes for r in res]))

        P = inputs(av.plan(F, blinks=False))
        fr_p = render(P["hold"], P["expr"])
        lm_p, bs_p = track(fr_p)
        base = np.median(geometry_features(lm_p), 0)
        aus_p = aus_from_blendshapes(bs_p, lm_p, baseline=base)
        mlm_p = mesh_lm(P["expr"])
        out: dict = {"run": str(a.run), "audio": str(a.audio), "frames": ids.tolist(), "size": av.size,
                     "plain": dict(zip(AU_NAMES, aus_p.mean(0).round(3).tolist())), "rows": []}
        sheet = [fr_p[0]]
        for au in [x for x in a.aus.split(",") if x]:
            E = inputs(av.plan(F, blinks=False, au=[f"{au}=1.0@0.51-4.51"]))
            for v in a.variants.split(","):
                name, g = v.rstrip("0123456789."), v[len(v.rstrip("0123456789.")):]
                g = float(g) if g else 1.0
                expr = P["expr"] + g * (E["expr"] - P["expr"])
                res_au = {"hold": E["hold"], "fade": E["fade"], "mesh": P["hold"], "resid": E["hold"]}[name]
                if name == "resid":
                    expr = P["expr"]
                t0 = time.time()
                fr = render(res_au, expr)
                lm, bs = track(fr)
                aus = aus_from_blendshapes(bs, lm, baseline=base)
                mlm = mesh_lm(expr)
                grp = GROUPS.get(au, GROUPS["AU01"])
                row = dict(au=au, variant=v, rise=float(np.nanmean(aus[:, AU_NAMES.index(au)] - aus_p[:, AU_NAMES.index(au)])),
                           up_px=float(-np.nanmean(lm[:, grp, 1] - lm_p[:, grp, 1])),
                           mesh_up_px=float(-np.mean(mlm[:, grp, 1] - mlm_p[:, grp, 1])),
                           lip_shift_px=float(np.nanmean(np.linalg.norm(lm[:, LIPS, :2] - lm_p[:, LIPS, :2], axis=-1))),
                           mesh_lip_shift_px=float(np.mean(np.linalg.norm(mlm[:, LIPS] - mlm_p[:, LIPS], axis=-1))),
                           others={k: round(float(x), 3) for k, x in zip(AU_NAMES, np.nanmean(aus - aus_p, 0))
                                   if k != au and abs(x) >= 0.1})
                out["rows"].append(row)
                sheet.append(fr[0])
                print(f"{au} {v:9s} rise {row['rise']:+.2f}  landmarks up {row['up_px']:+.1f} px (mesh {row['mesh_up_px']:+.1f})"
                      f"  lips {row['lip_shift_px']:.2f} px (mesh {row['mesh_lip_shift_px']:.2f})  others "
                      + (" ".join(f"{k} {x:+.2f}" for k, x in row["others"].items()) or "none")
                      + f"  [{time.time() - t0:.0f} s]", flush=True)
    if a.png:
        import cv2

        S = av.size
        crops = [s[int(0.08 * S):int(0.78 * S), int(0.19 * S):int(0.81 * S)] for s in sheet]
        labels = ["plain"] + [f"{r['au']} {r['variant']}" for r in out["rows"]]
        for c, t in zip(crops, labels):
            cv2.putText(c, t, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        n = len(a.variants.split(","))
        grid = [np.hstack(crops[:1] + [np.zeros_like(crops[0])] * (n - 1))] + \
               [np.hstack(crops[1 + i:1 + i + n]) for i in range(0, len(crops) - 1, n)]
        cv2.imwrite(a.png, np.vstack(grid)[..., ::-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("mead")
    p.add_argument("dataset")
    p.add_argument("--emotion-dir", default=str(ROOT.parent / "shared" / "data" / "emotion"))
    p.add_argument("-o", "--out", default=None)
    p = sub.add_parser("follow")
    p.add_argument("run")
    p.add_argument("--dataset", required=True)
    p.add_argument("--visible", action="store_true", help="count only Gaussians the camera sees (not behind the lids)")
    p.add_argument("-o", "--out", default=None)
    p = sub.add_parser("head")
    p.add_argument("run")
    p.add_argument("--dataset", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--aus", default="AU01,AU02,AU05,AU06,AU15")
    p.add_argument("--variants", default="hold,fade,mesh,resid,mesh2")
    p.add_argument("--frames", default="30,45,60,75,90,105")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("-o", "--out", default=None)
    p.add_argument("--png", default=None)
    a = ap.parse_args()
    res = {"mead": cmd_mead, "follow": cmd_follow, "head": cmd_head}[a.cmd](a)
    res["command"] = " ".join(["python", "scripts/au_judge_probe.py"] + sys.argv[1:])
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
