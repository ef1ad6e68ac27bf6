"""Measure how well `camera_from_transform` projects MediaPipe's canonical face mesh onto the detected
landmarks: per clip, mean / median / 95th-percentile pixel distance between K @ world_to_cam @ v_i and
landmark i (i < 468; also on the 33 rigid landmarks MediaPipe fits the pose to), over every `--step`-th frame of the first `--seconds` seconds.

    python scripts/camera_reprojection.py [VIDEO ...] [--seconds 4] [--step 5]

Also reports the error normalised by the inter-ocular distance, and the same error after a fitted
per-frame 2D similarity (what the expression/identity shape difference alone leaves), to show how much
of it is the camera and how much is the face not being the canonical face.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from emogs.face.camera import (GL_TO_CV, camera_from_transform, canonical_face_mesh, intrinsics, procrustes_basis,
                               project)
from emogs.face.tracker import FaceTracker
from emogs.io.media import probe, read_frames

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT = [SHARED / "video" / "macron_50s.mp4", SHARED / "video" / "acosta_71s.mp4",
           SHARED / "video" / "lieu_60s_256px.mp4", SHARED / "emotion" / "W009_front_surprised_level3_001.mp4"]


def _similarity_residual(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Residual (N,) after the best 2D similarity src -> dst (Umeyama)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, s, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    D = np.diag([1.0, d])
    R = u @ D @ vt
    scale = (s * np.diag(D)).sum() / (a ** 2).sum()
    return np.linalg.norm(scale * a @ R.T - b, axis=1)


def fov_sweep(video: Path, seconds: float, step: int, fovs=(53, 58, 63, 68, 73)) -> dict[int, float]:
    """Mean reprojection error (px) if MediaPipe's camera had another vertical FOV (same transforms)."""
    info = probe(video)
    verts, _, _ = canonical_face_mesh()
    errs: dict[int, list[float]] = {f: [] for f in fovs}
    with FaceTracker(video_mode=True) as tr:
        for i, rgb in enumerate(read_frames(video, max_seconds=seconds)):
            res = tr.track(rgb, int(i * 1000 / info.fps))
            if res is None or i % step:
                continue
            for f in fovs:
                uv = project(verts, intrinsics(info.width, info.height, f), GL_TO_CV @ res.transform)
                errs[f].append(float(np.linalg.norm(uv - res.landmarks[:468, :2], axis=1).mean()))
    return {f: float(np.mean(e)) for f, e in errs.items()}


def measure(video: Path, seconds: float, step: int) -> dict[str, float]:
    info = probe(video)
    verts, _, _ = canonical_face_mesh()
    basis, _ = procrustes_basis()  # the rigid landmarks MediaPipe fits the pose to
    errs, rel, sim, rig = [], [], [], []
    with FaceTracker(video_mode=True) as tr:
        for i, rgb in enumerate(read_frames(video, max_seconds=seconds)):
            res = tr.track(rgb, int(i * 1000 / info.fps))
            if res is None or i % step:
                continue
            K, w2c = camera_from_transform(res.transform, info.width, info.height)
            uv = project(verts, K, w2c)  # (468, 2)
            e = np.linalg.norm(uv - res.landmarks[:468, :2], axis=1)
            iod = np.linalg.norm(res.landmarks[33, :2] - res.landmarks[263, :2])
            errs.append(e)
            rig.append(e[basis])
            rel.append(e / iod)
            sim.append(_similarity_residual(uv, res.landmarks[:468, :2].astype(np.float64)))
    e, r, s, g = (np.concatenate(x) for x in (errs, rel, sim, rig))
    return {"frames": len(errs), "size": f"{info.width}x{info.height}", "mean_px": e.mean(),
            "median_px": float(np.median(e)), "p95_px": float(np.percentile(e, 95)),
            "mean_rel_iod": r.mean(), "basis_mean_px": g.mean(), "mean_px_after_2d_similarity": s.mean()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="*", type=Path, default=DEFAULT)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--step", type=int, default=5)
    ap.add_argument("--fov-sweep", action="store_true", help="also print the error for other vertical FOVs")
    a = ap.parse_args()
    print("| clip | size | frames | mean px | median px | p95 px | mean / inter-ocular | mean px, 33 pose-fit landmarks | mean px after 2D similarity |")
    print("|---|---|---|---|---|---|---|---|---|")
    for v in a.videos:
        m = measure(v, a.seconds, a.step)
        print(f"| {v.name} | {m['size']} | {m['frames']} | {m['mean_px']:.2f} | {m['median_px']:.2f} | "
              f"{m['p95_px']:.2f} | {m['mean_rel_iod']:.3f} | {m['basis_mean_px']:.2f} | {m['mean_px_after_2d_similarity']:.2f} |")
    if a.fov_sweep:
        _sweep_table(a.videos, a.seconds, a.step)



def _sweep_table(videos, seconds, step) -> None:
    rows = {v.name: fov_sweep(v, seconds, step) for v in videos}
    fovs = next(iter(rows.values())).keys()
    print("\n| clip | " + " | ".join(f"FOV {f} deg" for f in fovs) + " |")
    print("|---|" + "---|" * len(fovs))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{e:.2f}" for e in r.values()) + " |")


if __name__ == "__main__":
    main()
