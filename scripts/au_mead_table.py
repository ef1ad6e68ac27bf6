"""Measure the AU mapping on the labelled MEAD clips (../shared/data/emotion) and write docs tables.

    python scripts/au_mead_table.py               # print the tables (markdown)
    python scripts/au_mead_table.py --write-docs  # also replace the generated sections of docs/au_mapping.md
    python scripts/au_mead_table.py --calibrate   # print RAMPS measured on these clips (for emogs/face/aus.py)

Tables: per-clip mean of all 17 AUs (16 clips); the emotion-vs-neutral separations the tests check;
and the AU06 / AU09 evidence channels (happy vs neutral, disgusted vs neutral) under both landmark
baselines ("clip" and "canonical").
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from emogs.face import aus as A  # noqa: E402
from emogs.face.analyze import analyze_frames  # noqa: E402
from emogs.io.media import probe, read_frames  # noqa: E402

EMOTION_DIR = ROOT.parent / "shared" / "data" / "emotion"
EMOTIONS = ["neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised"]
SPEAKERS = ["W009", "W011"]
# (AU, emotion that should show more of it than neutral)
CHECKS = [("AU12", "happy"), ("AU01", "surprised"), ("AU02", "surprised"), ("AU05", "surprised"),
          ("AU26", "surprised"), ("AU04", "angry"), ("AU06", "happy"), ("AU09", "disgusted")]


def clip_path(speaker: str, emotion: str, root: Path = EMOTION_DIR) -> Path:
    (p,) = sorted(root.glob(f"{speaker}_front_{emotion}_level*_001.mp4"))
    return p


def track_all(root: Path = EMOTION_DIR) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """(speaker, emotion) -> analyze_frames output, tracked frames only."""
    out = {}
    for s in SPEAKERS:
        for e in EMOTIONS:
            p = clip_path(s, e, root)
            r = analyze_frames(read_frames(p), probe(p).fps)
            ok = r["success"]
            out[(s, e)] = {k: v[ok] for k, v in r.items()}
    return out


def au_means(clips, baseline: str = "clip") -> dict[tuple[str, str], np.ndarray]:
    return {k: A.aus_from_blendshapes(c["blendshapes"], c["landmarks"], baseline=baseline).mean(0)
            for k, c in clips.items()}


def table_means(means) -> str:
    lines = ["| clip | frames | " + " | ".join(A.AU_NAMES) + " |", "|---|---|" + "---|" * len(A.AU_NAMES)]
    for (s, e), m in means.items():
        lines.append(f"| {s} {e} | {m[1]} | " + " | ".join(f"{v:.2f}" for v in m[0]) + " |")
    return "\n".join(lines)


def table_checks(means_by_baseline) -> str:
    head = "| AU | emotion | " + " | ".join(f"{s} {b}: emotion / neutral" for b in means_by_baseline for s in SPEAKERS)
    lines = [head + " |", "|---|---|" + "---|" * (len(SPEAKERS) * len(means_by_baseline))]
    for au, emo in CHECKS:
        j = A.AU_INDEX[au]
        cells = []
        for b, means in means_by_baseline.items():
            for s in SPEAKERS:
                x, n = means[(s, emo)][j], means[(s, "neutral")][j]
                cells.append(f"{x:.3f} / {n:.3f} {'ok' if x > n else 'FAIL'}")
        lines.append(f"| {au} | {emo} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_evidence(clips) -> str:
    """Raw channel means for AU06 (happy vs neutral; angry, disgusted for specificity) and AU09."""
    rows = [("AU06", "bs:AU06", "cheekSquint (blendshape)"), ("AU06", "bs:AU06_squint", "eyeSquint (blendshape)"),
            ("AU06", "geo:cheek_raise", "cheek raise, cm"), ("AU06", "geo:lid_raise", "lower-lid raise, cm"),
            ("AU09", "bs:AU09", "noseSneer (blendshape)"), ("AU09", "geo:ala_raise", "ala raise, cm"),
            ("AU09", "geo:nose_lip_raise", "upper lip towards nose tip, cm")]
    emos = ["neutral", "happy", "disgusted", "angry", "surprised"]
    lines = ["| AU | evidence | baseline | speaker | " + " | ".join(emos) + " |", "|---|---|---|---|" + "---|" * len(emos)]
    for au, ch, label in rows:
        for b in (["-"] if ch.startswith("bs:") else ["canonical", "clip"]):
            for s in SPEAKERS:
                vals = []
                for e in emos:
                    c = clips[(s, e)]
                    geo = None if ch.startswith("bs:") else A.relative_geometry(c["landmarks"], b, c["blendshapes"])
                    vals.append(A.channels(c["blendshapes"], geo)[ch].mean())
                lines.append(f"| {au} | {label} | {b} | {s} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    pat = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
    if not pat.search(text):
        raise SystemExit(f"docs/au_mapping.md has no '<!-- BEGIN {name} -->' section")
    return pat.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    if not EMOTION_DIR.is_dir():
        raise SystemExit(f"{EMOTION_DIR} not found")
    clips = track_all()
    if a.calibrate:
        for b in ("clip", "canonical"):
            ramps = A.calibrate([(c["blendshapes"], c["landmarks"]) for c in clips.values()],
                                [e == "neutral" for (_, e) in clips], baseline=b)
            print(f"# baseline {b!r}")
            print(", ".join(f"{k!r}: ({lo}, {hi})" for k, (lo, hi) in ramps.items()
                            if k.startswith("geo:") or b == "clip"))
        return
    means = {b: au_means(clips, b) for b in ("clip", "canonical")}
    sections = {
        "MEANS": table_means({k: (m, len(clips[k]["success"])) for k, m in means["clip"].items()}),
        "MEANS_CANONICAL": table_means({k: (m, len(clips[k]["success"])) for k, m in means["canonical"].items()}),
        "CHECKS": table_checks(means),
        "EVIDENCE": table_evidence(clips),
    }
    for name, body in sections.items():
        print(f"\n## {name}\n{body}")
    if a.write_docs:
        doc = ROOT / "docs" / "au_mapping.md"
        text = doc.read_text()
        for name, body in sections.items():
            text = replace_section(text, name, body)
        doc.write_text(text)
        print(f"wrote {doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
