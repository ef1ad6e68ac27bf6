#!/usr/bin/env python
"""How large a mesh head's Gaussians are on screen, per ICT region: count, how many are fairly opaque (> 0.3) and
the projected 1-sigma radius (largest axis, px at the dataset's size, first training camera, default face, no
network residuals). A face painted by 2 px blobs cannot show 1-2 px skin texture (docs/training.md, session 7).

    python scripts/gaussian_sizes.py RUN DATASET [-o out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("-o", "--out", type=Path)
    a = ap.parse_args()
    from emogs.data.dataset import TalkingHeadDataset
    from emogs.run import RunFolder
    from emogs.train.loop import mesh_regions, person_mesh

    folder = RunFolder(a.run)
    _, m = folder.load_model()
    if not hasattr(m, "canonical_gaussians"):
        raise SystemExit(f"{a.run}: not a mesh head")
    cg = {k: v.detach().numpy() for k, v in m.canonical_gaussians().items()}
    par = m.gaussians.parent.numpy()
    w2c = np.load(a.run / "train_cameras.npz")["world_to_cam"][0]
    f = float(TalkingHeadDataset(a.dataset, mesh=True)[0]["K"][0, 0])
    z = (cg["means"] @ w2c[:3, :3].T + w2c[:3, 3])[:, 2]
    px, op = f * cg["scales"].max(1) / z, cg["opacities"].reshape(-1)
    out: dict = {"command": " ".join(["python scripts/gaussian_sizes.py", *sys.argv[1:]]), "regions": {}}
    for name, (t0, t1) in mesh_regions(person_mesh(a.dataset)).items():
        s = (par >= t0) & (par < t1)
        if name == "narrow_face" or not s.any():
            continue
        r = {"gaussians": int(s.sum()), "opacity_above_0.3": int((s & (op > 0.3)).sum()),
             "radius_px_median": round(float(np.median(px[s])), 2), "radius_px_p10": round(float(np.percentile(px[s], 10)), 2),
             "radius_px_p90": round(float(np.percentile(px[s], 90)), 2)}
        out["regions"][name] = r
        print(f"{name:14s} {r['gaussians']:7d} Gaussians ({r['opacity_above_0.3']:6d} with opacity > 0.3), 1-sigma radius "
              f"median {r['radius_px_median']:.2f} px (p10 {r['radius_px_p10']:.2f}, p90 {r['radius_px_p90']:.2f})")
    if a.out:
        a.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
