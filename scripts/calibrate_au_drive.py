#!/usr/bin/env python
"""How far must an ICT-FaceKit shape go for an AU at intensity 1? Measured on real faces (MEAD level-3 clips).

    python scripts/calibrate_au_drive.py [--emotion-dir ../shared/data/emotion] [-o docs/mesh/au_drive.json]

For each AU with a clear geometric signature, a landmark feature (in units of the inter-ocular distance, the
outer eye corners 33 / 263, so faces and image sizes compare):
  AU01 inner-brow height above the eye-corner line   AU02 outer-brow height     AU05 eye aperture
  AU06 infraorbital cheek height                      AU12 mouth width           AU15 lip-corner height
measured with MediaPipe on each MEAD speaker's level-3 clip of the emotion that shows the AU (surprised:
AU01 AU02 AU05; happy: AU06 AU12; sad: AU15) as its 95th percentile change (5th for features that fall) over the
speaker's neutral clip median, and on ICT-FaceKit's mean face at the shape's coefficient 1 vs 0 (the
MediaPipe -> ICT correspondence points, frontal orthographic view). gain = real change / ICT change: the
coefficient at which the mesh moves as much as a strong real expression. The shipped table
(`emogs.mesh.au_table.AU_GAIN`) takes these gains, rounded, within [1, 2.5] (never weaker than the shape at 1).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

EYE = (33, 263)
FEATURES = {  # AU -> (landmarks, kind, emotion clip, direction)
    "AU01": ((107, 336, 55, 285), "height", "surprised", +1),
    "AU02": ((70, 300, 46, 276), "height", "surprised", +1),
    "AU05": (((159, 145), (386, 374)), "gap", "surprised", +1),
    "AU06": ((117, 118, 119, 346, 347, 348), "height", "happy", +1),
    "AU12": ((61, 291), "width", "happy", +1),
    "AU15": ((61, 291), "height", "sad", -1),
}
SHAPES = {"AU01": ("browInnerUp_L", "browInnerUp_R"), "AU02": ("browOuterUp_L", "browOuterUp_R"),
          "AU05": ("eyeWide_L", "eyeWide_R"), "AU06": ("cheekSquint_L", "cheekSquint_R"),
          "AU12": ("mouthSmile_L", "mouthSmile_R"), "AU15": ("mouthFrown_L", "mouthFrown_R")}


def feature(lm: np.ndarray, au: str) -> np.ndarray:
    """(N, 478, 2+) landmarks with y DOWN (image) -> (N,) feature in inter-ocular units, larger = more of the
    AU's movement for "height"/"gap"/"width" (heights are measured upwards)."""
    ids, kind, _, _ = FEATURES[au]
    a, b = lm[:, EYE[0], :2], lm[:, EYE[1], :2]
    iod = np.linalg.norm(b - a, axis=-1)
    mid = (a + b) / 2
    if kind == "height":
        return (mid[:, 1] - lm[:, list(ids), 1].mean(-1)) / iod  # up is smaller y in the image
    if kind == "gap":
        return np.mean([lm[:, lo, 1] - lm[:, up, 1] for up, lo in ids], axis=0) / iod
    if kind == "width":
        return np.linalg.norm(lm[:, ids[1], :2] - lm[:, ids[0], :2], axis=-1) / iod
    raise ValueError(kind)


def track(path: Path) -> np.ndarray:
    from emogs.face.analyze import analyze_frames
    from emogs.io.media import read_frames

    r = analyze_frames(read_frames(path), 25.0)
    return r["landmarks"][r["success"]]


def ict_change(au: str) -> float:
    """The feature's change on ICT's mean face from coefficient 0 to 1 of the AU's shapes (frontal view)."""
    from emogs.mesh.correspondence import load_correspondence
    from emogs.mesh.ict import load_ict

    m = load_ict()
    P0, _, E = load_correspondence().basis(m)  # (478, 3), (E, 478, 3)
    e = np.zeros(E.shape[0], np.float32)
    for s in SHAPES[au]:
        e[m.expression_index(s)] = 1.0
    pts = [P0, P0 + np.einsum("e,epc->pc", e, E)]
    lm = np.stack([np.stack([p[:, 0], -p[:, 1]], -1) for p in pts])  # image axes: y down
    f = feature(lm, au)
    return float(f[1] - f[0])


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser()
    ap.add_argument("--emotion-dir", type=Path, default=root.parent / "shared" / "data" / "emotion")
    ap.add_argument("-o", "--out", type=Path, default=root / "docs" / "mesh" / "au_drive.json")
    a = ap.parse_args(argv)
    speakers = sorted({p.name.split("_")[0] for p in a.emotion_dir.glob("*_front_*.mp4")})
    if not speakers:
        sys.exit(f"no MEAD clips in {a.emotion_dir}")
    out = {"method": __doc__.split("\n\n")[1].strip(), "speakers": speakers, "aus": {}}
    tracks = {}
    for sp in speakers:
        for emo in ("neutral", "surprised", "happy", "sad"):
            p = next(iter(sorted(a.emotion_dir.glob(f"{sp}_front_{emo}_level*_001.mp4"))), None)
            if p is not None:
                tracks[(sp, emo)] = track(p)
                print(f"tracked {p.name}: {len(tracks[(sp, emo)])} frames", file=sys.stderr)
    for au, (_, _, emo, sign) in FEATURES.items():
        real = []
        for sp in speakers:
            if (sp, "neutral") not in tracks or (sp, emo) not in tracks:
                continue
            base = np.median(feature(tracks[(sp, "neutral")], au))
            f = feature(tracks[(sp, emo)], au)
            real.append(float(np.percentile(f, 95) - base) if sign > 0 else float(base - np.percentile(f, 5)))
        ict = ict_change(au) * sign
        r = float(np.mean(real))
        out["aus"][au] = dict(real_change_iod=[round(x, 4) for x in real], real_mean=round(r, 4),
                              ict_change_iod=round(ict, 4), gain=round(r / ict, 2) if ict > 1e-6 else None)
        print(f"{au}: real {r:+.4f} IOD, ICT at 1: {ict:+.4f} IOD -> gain {r / max(ict, 1e-6):.2f}", file=sys.stderr)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["aus"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
