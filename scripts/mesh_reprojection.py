"""Fit ICT-FaceKit to clips and measure it: landmark reprojection error, fit time, pose smoothness, and
whether expression coefficients stay free of face shape. Writes the table of docs/mesh.md.

    python scripts/mesh_reprojection.py [--prep /work/prep] [--clips macron_50s ...] [--mead] [--write-docs]

Datasets: prepared folders (`emogs prepare` output: tracks.npz landmarks, crop pixels); the MEAD clips
(`../shared/data/emotion`, no audio, so not preparable) are tracked here with `emogs.face.analyze`
at their native 256 px. Errors are per landmark (the 478 MediaPipe landmarks, irises included) and frame,
in pixels of the image fitted and scaled to a 512 px image ("@512"); "no outline" leaves out the 36
face-outline landmarks (`FACE_OVAL`), whose place on the face changes with the silhouette.
CPU seconds are the fit's process time (`time.process_time`, one thread).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("EMOGS_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_CLIPS = ["macron_50s", "acosta_71s", "lieu_60s_256px", "may_5s"]


def load_prepared(root: Path) -> dict:
    t = np.load(root / "tracks.npz")
    m = json.loads((root / "manifest.json").read_text())
    return {"name": root.name, "landmarks": t["landmarks"], "blendshapes": t["blendshapes"], "tracked": t["tracked"],
            "K": t["K"], "size": m["size"], "world_to_cam_mp": t["world_to_cam"], "source": "prepared"}


def load_mead(path: Path, cache: Path | None = None) -> dict:
    """Track a MEAD clip (or read the tracks `cache/<name>.npz` kept by an earlier run)."""
    from emogs.face.analyze import analyze_frames
    from emogs.face.camera import GL_TO_CV, intrinsics
    from emogs.io.media import probe, read_frames

    f = None if cache is None else cache / (path.stem + ".npz")
    if f is not None and f.is_file() and "transform" in np.load(f).files:
        r = dict(np.load(f))
    else:
        info = probe(path)
        a = analyze_frames(read_frames(path), info.fps)
        r = {"landmarks": a["landmarks"], "blendshapes": a["blendshapes"], "success": a["success"],
             "transform": a["transform"], "size": np.array([info.width, info.height])}
        if f is not None:
            f.parent.mkdir(parents=True, exist_ok=True)
            np.savez(f, **r)
    ok = r["success"].astype(bool)
    w, h = (int(x) for x in r["size"])
    return {"name": path.stem, "landmarks": r["landmarks"][ok], "blendshapes": r["blendshapes"][ok], "tracked": None,
            "K": intrinsics(w, h), "size": w, "world_to_cam_mp": GL_TO_CV @ r["transform"][ok], "source": "tracked here"}


def rotation_step_deg(R: np.ndarray) -> np.ndarray:
    """Angle (deg) between consecutive rotations (N-1,)."""
    d = np.einsum("nji,njk->nik", R[:-1], R[1:])
    return np.degrees(np.arccos(np.clip((np.trace(d, axis1=1, axis2=2) - 1) / 2, -1, 1)))


def measure(clip: dict, model, corr) -> dict:
    import torch

    from emogs.mesh.correspondence import FACE_OVAL
    from emogs.mesh.fit import fit_landmarks, reprojection_errors

    torch.set_num_threads(1)
    t0 = time.process_time()
    fit = fit_landmarks(model, corr, clip["landmarks"], clip["size"], clip["blendshapes"], clip["tracked"], clip["K"])
    cpu = time.process_time() - t0
    err = reprojection_errors(model, corr, fit, clip["landmarks"])  # (N, 478) px
    sc = 512.0 / clip["size"]
    inner = np.setdiff1d(np.arange(err.shape[1]), FACE_OVAL)
    per_frame = np.median(err, axis=1)
    # pose smoothness: frame-to-frame rotation change, ours vs MediaPipe's (smoothed in prepare) transform
    Rm = clip["world_to_cam_mp"][:, :3, :3]
    Rm = Rm / np.cbrt(np.linalg.det(Rm))[:, None, None]
    acc = lambda x: np.abs(x[2:] - 2 * x[1:-1] + x[:-2]).mean()  # noqa: E731  mean |second difference|
    names = list(fit.expression_names)
    brow = [names.index(n) for n in ("browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R")]
    e = fit.expression
    return {"clip": clip["name"], "size": clip["size"], "frames": len(err), "source": clip["source"],
            "median_px": float(np.median(err)), "p95_px": float(np.percentile(err, 95)),
            "median_512": float(np.median(err)) * sc, "p95_512": float(np.percentile(err, 95)) * sc,
            "frame_median_p95_512": float(np.percentile(per_frame, 95)) * sc,
            "inner_median_512": float(np.median(err[:, inner])) * sc, "inner_p95_512": float(np.percentile(err[:, inner], 95)) * sc,
            "cpu_s": cpu, "cpu_s_per_50s": cpu * 1250 / len(err), "focal_px": float(fit.K[0, 0]),
            "focal_prior_px": float(clip["K"][0, 0]),
            "rot_step_deg": float(np.median(rotation_step_deg(fit.rotation))),
            "rot_step_deg_mediapipe": float(np.median(rotation_step_deg(Rm))),
            "trans_acc_cm": float(acc(fit.translation)),
            "expr_acc": float(acc(e)),
            "brow_p5": float(np.percentile(e[:, brow], 5, axis=0).max()),
            "rest_p5_max": float(np.percentile(e, 5, axis=0).max()),
            "rest_p5_argmax": names[int(np.argmax(np.percentile(e, 5, axis=0)))]}


def table(rows: list[dict]) -> str:
    head = ("| clip | size | frames | median px | p95 px | median @512 | p95 @512 | p95 of frame medians @512 | "
            "no outline: median / p95 @512 | fit CPU s (per 50 s) | focal px (prior) |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['clip']} | {r['size']} | {r['frames']} | {r['median_px']:.2f} | {r['p95_px']:.2f} | "
                     f"**{r['median_512']:.2f}** | {r['p95_512']:.2f} | {r['frame_median_p95_512']:.2f} | "
                     f"{r['inner_median_512']:.2f} / {r['inner_p95_512']:.2f} | {r['cpu_s']:.1f} ({r['cpu_s_per_50s']:.1f}) | "
                     f"{r['focal_px']:.0f} ({r['focal_prior_px']:.0f}) |")
    return "\n".join(lines)


def table_usefulness(rows: list[dict]) -> str:
    lines = ["| clip | rotation change per frame, median deg (MediaPipe's) | translation accel. cm/frame^2 | "
             "expression accel. /frame^2 | brow coefficients' 5th pct (max of 4) | largest 5th pct of any coefficient |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['clip']} | {r['rot_step_deg']:.3f} ({r['rot_step_deg_mediapipe']:.3f}) | {r['trans_acc_cm']:.4f} | "
                     f"{r['expr_acc']:.4f} | {r['brow_p5']:.3f} | {r['rest_p5_max']:.3f} ({r['rest_p5_argmax']}) |")
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    pat = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
    if not pat.search(text):
        raise SystemExit(f"docs/mesh.md has no '<!-- BEGIN {name} -->' section")
    return pat.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prep", type=Path, default=Path("/work/prep"), help="folder of prepared datasets")
    ap.add_argument("--clips", nargs="*", default=DEFAULT_CLIPS)
    ap.add_argument("--mead", action="store_true", help="also the 16 MEAD clips (tracked here)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    ap.add_argument("--cache", type=Path, default=None, help="keep / reuse the MEAD tracks here")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    from emogs.mesh.correspondence import load_correspondence
    from emogs.mesh.ict import load_ict

    model, corr = load_ict(), load_correspondence()
    rows = []
    for c in a.clips:
        rows.append(measure(load_prepared(a.prep / c), model, corr))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if a.mead:
        for p in sorted((SHARED / "emotion").glob("*.mp4")):
            rows.append(measure(load_mead(p, a.cache), model, corr))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    note = (f"Measured {time.strftime('%Y-%m-%d')} on the 2-core CPU machine (shared with other jobs; one thread), "
            f"correspondence version {corr.version}, `python scripts/mesh_reprojection.py"
            f"{' --mead' if a.mead else ''}`.")
    body = note + "\n\n" + table(rows) + "\n\n" + table_usefulness(rows)
    print(body)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    if a.write_docs:
        doc = ROOT / "docs" / "mesh.md"
        doc.write_text(replace_section(doc.read_text(), "REPROJECTION", body))


if __name__ == "__main__":
    main()
