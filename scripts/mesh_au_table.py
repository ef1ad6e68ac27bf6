"""Validate AUs read from the ICT-FaceKit fit (`emogs.mesh.aus`) against the blendshape estimator
(`emogs.face.aus`) on the labelled MEAD clips, on macron's AU04 and on a smiling presenter; write the tables.

    python scripts/mesh_au_table.py [--cache DIR] [--calibrate] [--write-docs]

MEAD clips (../shared/data/emotion, W009 and W011, 8 emotions each) are tracked with `emogs.face.analyze`
(as scripts/au_mead_table.py does) and fitted one clip at a time (`emogs.mesh.fit`, default settings,
identity per clip). Estimators compared:
  blendshapes        `aus_from_blendshapes` with landmarks, clip baseline (what `emogs analyze` reports today)
  mesh               `aus_from_expression`, baseline "none" (identity holds the face's shape; ramps from MEAD)
  mesh, clip         baseline "clip": each channel minus its 5th percentile in the clip
  mesh, own neutral  baseline = the channels' 10th percentile on the same speaker's neutral clip
--calibrate prints MESH_RAMPS measured on these clips (baseline "none") for emogs/mesh/aus.py.
Also: macron_50s (a prepared dataset under --prep): how often AU04 reads > 0.5; and
pretrain/noaudio/smiling_woman_edtalk_13s.mp4 (a presenter who smiles throughout): AU01/AU04/AU12 means.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emogs.face.aus import AU_INDEX, AU_NAMES, aus_from_blendshapes  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
EMOTIONS = ["neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised"]
SPEAKERS = ["W009", "W011"]
# (AU, the emotion that should show more of it than neutral): scripts/au_mead_table.py's checks plus the
# other defining AUs of the presets MEAD has clips for
CHECKS = [("AU12", "happy"), ("AU06", "happy"), ("AU01", "surprised"), ("AU02", "surprised"), ("AU05", "surprised"),
          ("AU26", "surprised"), ("AU04", "angry"), ("AU07", "angry"), ("AU09", "disgusted"), ("AU10", "disgusted"),
          ("AU15", "sad"), ("AU01", "sad"), ("AU20", "fear"), ("AU05", "fear"), ("AU14", "contempt")]
ESTIMATORS = ["blendshapes", "mesh", "mesh, clip", "mesh, own neutral"]


def track(path: Path, cache: Path | None) -> dict[str, np.ndarray]:
    from emogs.face.analyze import analyze_frames
    from emogs.io.media import probe, read_frames

    f = None if cache is None else cache / (path.stem + ".npz")
    if f is not None and f.is_file():
        z = np.load(f)
        return {k: z[k] for k in z.files}
    info = probe(path)
    r = analyze_frames(read_frames(path), info.fps)
    out = {"landmarks": r["landmarks"], "blendshapes": r["blendshapes"], "success": r["success"],
           "size": np.array([info.width, info.height])}
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, **out)
    return out


def fit_clip(tr: dict, model, corr) -> dict:
    from emogs.mesh.aus import channels, lip_gap
    from emogs.mesh.fit import fit_landmarks

    ok = tr["success"].astype(bool)
    lm, bs = tr["landmarks"][ok], tr["blendshapes"][ok]
    size = int(tr["size"][0])
    fit = fit_landmarks(model, corr, lm, size, bs)
    gap = lip_gap(model, corr, fit.identity, fit.expression)
    return {"channels": channels(fit.expression, fit.expression_names, gap), "expression": fit.expression,
            "names": fit.expression_names, "gap": gap,
            "aus_blendshapes": aus_from_blendshapes(bs, lm, baseline="auto"), "frames": int(ok.sum())}


def estimates(clips: dict, ramps: dict | None = None) -> dict[str, dict]:
    """estimator -> {(speaker, emotion): (N, 17) AUs}."""
    from emogs.mesh.aus import aus_from_expression

    out = {e: {} for e in ESTIMATORS}
    for (s, emo), c in clips.items():
        neutral = np.percentile(clips[(s, "neutral")]["channels"], 10, axis=0)
        out["blendshapes"][(s, emo)] = c["aus_blendshapes"]
        for est, base in (("mesh", "none"), ("mesh, clip", "clip"), ("mesh, own neutral", neutral)):
            out[est][(s, emo)] = aus_from_expression(c["expression"], c["names"], c["gap"], baseline=base, ramps=ramps)
    return out


def table_means(est: dict, clips: dict) -> str:
    lines = ["| clip | frames | " + " | ".join(AU_NAMES) + " |", "|---|---|" + "---|" * len(AU_NAMES)]
    for (s, e), a in est.items():
        lines.append(f"| {s} {e} | {clips[(s, e)]['frames']} | " + " | ".join(f"{v:.2f}" for v in a.mean(0)) + " |")
    return "\n".join(lines)


def table_checks(ests: dict) -> tuple[str, dict]:
    head = "| AU | emotion | " + " | ".join(f"{e}: W009 / W011 (emotion - neutral)" for e in ESTIMATORS) + " |"
    lines = [head, "|---|---|" + "---|" * len(ESTIMATORS)]
    score = {e: {"pass": 0, "margin": []} for e in ESTIMATORS}
    for au, emo in CHECKS:
        j = AU_INDEX[au]
        cells = []
        for e in ESTIMATORS:
            d = [ests[e][(s, emo)][:, j].mean() - ests[e][(s, "neutral")][:, j].mean() for s in SPEAKERS]
            score[e]["pass"] += sum(x > 0.05 for x in d)
            score[e]["margin"] += d
            cells.append(" / ".join(f"{x:+.2f}" for x in d))
        lines.append(f"| {au} | {emo} | " + " | ".join(cells) + " |")
    n = 2 * len(CHECKS)
    lines.append("| **checks passed (difference > 0.05)** | | " + " | ".join(
        f"**{score[e]['pass']} / {n}**, mean difference {np.mean(score[e]['margin']):.2f}" for e in ESTIMATORS) + " |")
    return "\n".join(lines), score


def table_neutral(ests: dict) -> str:
    lines = ["| estimator | speaker | AUs with neutral-clip mean > 0.1 (speech AUs AU25, AU26 aside) | largest | AU25 | AU26 |",
             "|---|---|---|---|---|---|"]
    for e in ESTIMATORS:
        for s in SPEAKERS:
            m = ests[e][(s, "neutral")].mean(0)
            other = [k for k, a in enumerate(AU_NAMES) if a not in ("AU25", "AU26")]
            hi = [f"{AU_NAMES[k]} {m[k]:.2f}" for k in other if m[k] > 0.1]
            k = other[int(np.argmax(m[other]))]
            lines.append(f"| {e} | {s} | {', '.join(hi) or '-'} | {AU_NAMES[k]} {m[k]:.2f} | {m[AU_INDEX['AU25']]:.2f} | "
                         f"{m[AU_INDEX['AU26']]:.2f} |")
    return "\n".join(lines)


def au04_picture(path: Path, video: Path, au04: np.ndarray) -> None:
    """The 3 frames with the lowest and the 3 with the highest mesh AU04 (top / bottom row), around the brows."""
    import cv2

    from emogs.io.atomic import atomic_path
    from emogs.io.media import read_frames

    order = np.argsort(au04, kind="stable")
    pick = list(order[:3]) + list(order[-3:])
    got = {}
    for i, rgb in enumerate(read_frames(video)):
        if i in pick:
            got[i] = rgb[100:300, 130:380].copy()
            cv2.putText(got[i], f"#{i} AU04 {au04[i]:.2f}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
        if len(got) == len(pick):
            break
    sheet = np.vstack([np.hstack([got[i] for i in pick[:3]]), np.hstack([got[i] for i in pick[3:]])])
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), sheet[..., ::-1])


def other_clips(model, corr, prep: Path, cache: Path | None, ramps=None, png: Path | None = None) -> str:
    """macron AU04 and a smiling presenter's brows, both estimators."""
    from emogs.mesh.aus import aus_from_expression, lip_gap
    from emogs.mesh.fit import fit_landmarks

    rows = []
    t = np.load(prep / "macron_50s" / "tracks.npz")
    fit = fit_landmarks(model, corr, t["landmarks"], 512, t["blendshapes"], t["tracked"], t["K"])
    a_mesh = aus_from_expression(fit.expression, fit.expression_names,
                                 lip_gap(model, corr, fit.identity, fit.expression), baseline="none", ramps=ramps)
    rows.append(("macron_50s (prepared, 1259 frames)", t["aus"], a_mesh))
    if png is not None:
        au04_picture(png, prep / "macron_50s" / "frames.mp4", a_mesh[:, AU_INDEX["AU04"]])
    tr = track(SHARED / "pretrain" / "noaudio" / "smiling_woman_edtalk_13s.mp4", cache)
    c = fit_clip(tr, model, corr)
    a_mesh = aus_from_expression(c["expression"], c["names"], c["gap"], baseline="none", ramps=ramps)
    rows.append((f"smiling_woman_edtalk_13s (tracked here, {c['frames']} frames)", c["aus_blendshapes"], a_mesh))
    lines = ["| clip | estimator | AU04 mean | AU04 > 0.5 (fraction of frames) | AU01 mean | AU02 mean | AU12 mean |",
             "|---|---|---|---|---|---|---|"]
    for name, bsa, ma in rows:
        for est, a in (("blendshapes", bsa), ("mesh", ma)):
            lines.append(f"| {name} | {est} | {a[:, AU_INDEX['AU04']].mean():.2f} | {(a[:, AU_INDEX['AU04']] > 0.5).mean():.2f} | "
                         f"{a[:, AU_INDEX['AU01']].mean():.2f} | {a[:, AU_INDEX['AU02']].mean():.2f} | "
                         f"{a[:, AU_INDEX['AU12']].mean():.2f} |")
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str, doc: str) -> str:
    pat = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
    if not pat.search(text):
        raise SystemExit(f"{doc} has no '<!-- BEGIN {name} -->' section")
    return pat.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None, help="keep / reuse the MediaPipe tracks here")
    ap.add_argument("--prep", type=Path, default=Path("/work/prep"), help="prepared datasets (macron_50s)")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    from emogs.mesh.aus import calibrate
    from emogs.mesh.correspondence import load_correspondence
    from emogs.mesh.ict import load_ict

    model, corr = load_ict(), load_correspondence()
    clips = {}
    for s in SPEAKERS:
        for e in EMOTIONS:
            (p,) = sorted((SHARED / "emotion").glob(f"{s}_front_{e}_level*_001.mp4"))
            clips[(s, e)] = fit_clip(track(p, a.cache), model, corr)
            print(f"{s} {e}: {clips[(s, e)]['frames']} frames", file=sys.stderr, flush=True)
    if a.calibrate:
        ramps = calibrate([c["channels"] for c in clips.values()], [e == "neutral" for (_, e) in clips])
        print("MESH_RAMPS = {" + ", ".join(f'"{k}": {v}' for k, v in ramps.items()) + "}")
        return
    ests = estimates(clips)
    checks, score = table_checks(ests)
    sections = {"MESH_MEANS": table_means(ests["mesh"], clips), "MESH_CHECKS": checks,
                "MESH_NEUTRAL": table_neutral(ests),
                "MESH_OTHER": other_clips(model, corr, a.prep, a.cache, png=ROOT / "docs" / "mesh" / "macron_au04.png"
                                          if a.write_docs else None)}
    for k, v in sections.items():
        print(f"\n## {k}\n{v}")
    if a.write_docs:
        for name in ("au_mapping.md", "mesh.md"):
            doc = ROOT / "docs" / name
            text = doc.read_text()
            for k, v in sections.items():
                if f"<!-- BEGIN {k} -->" in text:
                    text = replace_section(text, k, v, name)
            doc.write_text(text)


if __name__ == "__main__":
    main()
