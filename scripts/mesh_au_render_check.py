"""Round trip through pixels: render ICT-FaceKit's mean face at each AU (the AU -> blendshape table), run
MediaPipe on the render and read the AUs with the blendshape estimator (the judge shares nothing with the mesh).

    python scripts/mesh_au_render_check.py [--png docs/mesh/au_renders.png] [--json out.json]

Each AU at intensity 1 (`emogs.mesh.au_table.au_to_expression`) is rendered frontally (Lambert-shaded, one skin
colour: no texture, so no eyebrows, lashes or lip colour), tracked with MediaPipe (image mode) and read with
`emogs.face.aus.aus_from_blendshapes` (landmarks, canonical baseline, since these are single frames). The
table gives each AU's own reading minus the neutral render's, and the largest other AU's change.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import cv2

    from emogs.face.aus import AU_NAMES, aus_from_blendshapes
    from emogs.face.tracker import FaceTracker
    from emogs.io.atomic import atomic_path
    from emogs.mesh.au_table import au_to_expression
    from emogs.mesh.draw import render_mesh
    from emogs.mesh.ict import HEAD_REGIONS, load_ict

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "mesh" / "au_renders.png")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    model = load_ict()
    head = model.submesh(list(HEAD_REGIONS))
    S = 512
    K = np.array([[1100.0, 0, S / 2], [0, 1100.0, S / 2], [0, 0, 1]])
    w2c = np.diag([1.0, -1.0, -1.0, 1.0])
    w2c[:3, 3] = -w2c[:3, :3] @ np.array([0.0, 1.0, 5.0]) + np.array([0, 0, 70.0])
    names = [None] + AU_NAMES
    images, reads = [], []
    with FaceTracker(video_mode=False) as tr:
        for au in names:
            e = np.zeros(len(model.expression_names)) if au is None else au_to_expression({au: 1.0}, model.expression_names)
            img, cov = render_mesh(head.vertices(None, e), head.triangles, K, w2c, S, S, color=(0.85, 0.68, 0.58))
            u8 = (np.where(cov[..., None], img, 0.35) * 255).astype(np.uint8)
            r = tr.track(u8, 0)
            reads.append(None if r is None else aus_from_blendshapes(r.blendshapes[None], r.landmarks[None],
                                                                     baseline="canonical")[0])
            cv2.putText(u8, au or "neutral", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
            images.append(u8)
    base = reads[0]
    rows = []
    print("| AU | own AU change | largest other change |\n|---|---|---|")
    for au, rd in zip(names[1:], reads[1:]):
        if rd is None or base is None:
            rows.append({"au": au, "detected": False})
            print(f"| {au} | no face found | |")
            continue
        k = AU_NAMES.index(au)
        d = rd - base
        others = [j for j in range(len(AU_NAMES)) if j != k]
        j = others[int(np.argmax(d[others]))]
        rows.append({"au": au, "own": float(d[k]), "other": AU_NAMES[j], "other_change": float(d[j])})
        print(f"| {au} | {d[k]:+.2f} | {AU_NAMES[j]} {d[j]:+.2f} |")
    sheet = np.vstack([np.hstack(images[i:i + 6]) for i in range(0, 18, 6)])
    with atomic_path(a.png) as tmp:
        cv2.imwrite(str(tmp), cv2.resize(sheet, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)[..., ::-1])
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
