"""Data for the speech -> mesh-motion prior (`scripts/train_speech_motion.py`): the speaking clips of a folder
of prepared datasets, their ICT-FaceKit fits, and the identity of each clip.

    python scripts/speech_motion_data.py fit --data /work/prep --out FITS [--correspondence C.npz]

`fit` fits ICT-FaceKit to every speaking clip's tracks (`emogs.mesh.fit.fit_landmarks`, the mesh stage's
call and config) and writes `FITS/<clip>.npz` (the `mesh.npz` arrays of the prepare mesh stage, plus
`error_p95_px`, `size`) and `FITS/fits.json` (per clip: frames, median / p95 landmark error in crop px and at
512 px, fit seconds). A dataset that already has `mesh.npz` (prepared with the mesh stage) is read instead
of refitted. Clips already in FITS are skipped (resume).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from expert_data import identity  # noqa: E402  (one identity rule, so the experts and the prior share the split)

SPEECH_MIN = 0.2  # a clip "has speech" when the manifest's VAD speech fraction is at least this


def speaking_datasets(data: Path, names=None) -> list[Path]:
    """Every prepared dataset under `data` (itself included) with speech audio, sorted by clip name; with
    `names` (a collection of clip names) only those."""
    out = []
    for p in sorted(data.rglob("manifest.json")):
        if ".prepare" in p.parts or (names is not None and p.parent.name not in names):
            continue
        m = json.loads(p.read_text())
        a = m.get("audio") or {}
        if a.get("num_samples") and (a.get("speech_fraction") or 0.0) >= SPEECH_MIN \
                and not a.get("synthetic_silence", False):
            out.append(p.parent)
    return sorted(out, key=lambda d: d.name)


def clip_names(arg: str | None):
    """The clip-name filter of `--clips`: None (every clip) or the names of a file (one per line, `#` comments)
    or of a comma-separated list."""
    if not arg:
        return None
    p = Path(arg)
    text = p.read_text() if p.is_file() else arg.replace(",", "\n")
    names = {ln.split("#")[0].strip() for ln in text.splitlines()} - {""}
    if not names:
        raise SystemExit(f"--clips {arg}: no clip names")
    return names


def file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def fit_clip(ds: Path, model, corr, corr_sha: str) -> dict[str, np.ndarray]:
    """The mesh stage's fit of one dataset (`emogs.data.meshstage.run_mesh`, without writing into it)."""
    from emogs.mesh.aus import aus_from_expression, lip_gap
    from emogs.mesh.fit import FitConfig, fit_landmarks, reprojection_errors

    size = json.loads((ds / "manifest.json").read_text())["size"]
    with np.load(ds / "tracks.npz") as z:
        lm, bs, tracked, K = z["landmarks"], z["blendshapes"], z["tracked"], z["K"]
    fit = fit_landmarks(model, corr, lm, size, bs, tracked, K, FitConfig())
    err = reprojection_errors(model, corr, fit, lm)[:, corr.weight > 0]
    gap = lip_gap(model, corr, fit.identity, fit.expression)
    aus = aus_from_expression(fit.expression, fit.expression_names, gap)
    return dict(identity=fit.identity.astype(np.float32), expression=fit.expression.astype(np.float32),
                expression_names=np.array(fit.expression_names), world_to_cam=fit.world_to_cam, K=fit.K,
                error_px=fit.error_px.astype(np.float32), aus=aus, correspondence_version=np.int64(corr.version),
                correspondence_sha=np.array(corr_sha), size=np.int64(size),
                error_median_px=np.float32(np.median(err)), error_p95_px=np.float32(np.percentile(err, 95)),
                fit_seconds=np.float32(fit.seconds))


def cmd_fit(a) -> None:
    import torch

    from emogs.io.atomic import atomic_path
    from emogs.mesh.correspondence import DATA_FILE, load_correspondence
    from emogs.mesh.ict import load_ict

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cpath = Path(a.correspondence) if a.correspondence else DATA_FILE
    model, corr, sha = load_ict(), load_correspondence(cpath), file_sha(cpath)
    summary_path = out / "fits.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    dsets = speaking_datasets(Path(a.data), clip_names(a.clips))
    for k, ds in enumerate(dsets):
        dst = out / f"{ds.name}.npz"
        if dst.is_file() and ds.name in summary and not a.force:
            continue
        t0 = time.perf_counter()
        if (ds / "mesh.npz").is_file() and not a.refit:
            with np.load(ds / "mesh.npz") as z:
                arrays = {kk: z[kk] for kk in z.files}
            arrays.setdefault("size", np.int64(json.loads((ds / "manifest.json").read_text())["size"]))
            source = "dataset mesh.npz"
        else:
            arrays = fit_clip(ds, model, corr, sha)
            source = f"fit (correspondence {cpath}, sha {sha})"
        with atomic_path(dst) as tmp:
            np.savez_compressed(tmp, **arrays)
        s = 512.0 / float(arrays["size"])
        e = arrays["error_px"]
        row = {"dataset": str(ds), "identity": identity(ds.name), "frames": int(len(arrays["expression"])),
               "size": int(arrays["size"]), "source": source,
               "median_px": round(float(arrays.get("error_median_px", np.median(e))), 3),
               "p95_px": round(float(arrays.get("error_p95_px", np.percentile(e, 95))), 3),
               "seconds": round(time.perf_counter() - t0, 1)}
        row["median_px_at_512"] = round(row["median_px"] * s, 3)
        row["p95_px_at_512"] = round(row["p95_px"] * s, 3)
        summary[ds.name] = row
        with atomic_path(summary_path) as tmp:
            Path(tmp).write_text(json.dumps(summary, indent=1, sort_keys=True))
        print(f"[{k + 1}/{len(dsets)}] {ds.name}: {row['frames']} frames, median {row['median_px_at_512']:.2f} px "
              f"p95 {row['p95_px_at_512']:.2f} px at 512, {row['seconds']:.0f} s", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit ICT-FaceKit to every speaking clip")
    f.add_argument("--data", required=True, help="folder of prepared datasets (searched recursively)")
    f.add_argument("--out", required=True, help="folder for <clip>.npz fits and fits.json")
    f.add_argument("--correspondence", default=None, help="MediaPipe->ICT table (default: the mesh room's)")
    f.add_argument("--threads", type=int, default=1)
    f.add_argument("--clips", default=None, help="only these clips: a file of names (one a line) or a comma list")
    f.add_argument("--force", action="store_true", help="refit clips already in --out")
    f.add_argument("--refit", action="store_true", help="fit even where the dataset has mesh.npz")
    a = ap.parse_args(argv)
    if a.cmd == "fit":
        cmd_fit(a)


if __name__ == "__main__":
    main()
