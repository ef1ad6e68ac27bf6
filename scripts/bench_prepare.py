"""Time `emogs prepare` per stage on the shared benchmark clips and write the figures to docs/prepare.md.

    python scripts/bench_prepare.py [--clips macron_50s acosta_71s] [--keep DIR] [--note "machine shared"]

Each clip is prepared from scratch (default settings, Whisper on) into a temporary folder; the stage
times come from the dataset's manifest. The table replaces the block between the BENCH markers.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOGS_SHARED_DATA", ROOT.parent / "shared" / "data"))
DOC = ROOT / "docs" / "prepare.md"
BEGIN, END = "<!-- BENCH:BEGIN -->", "<!-- BENCH:END -->"


def dir_size(p: Path) -> dict[str, int]:
    """Bytes per top-level dataset entry (hidden stage/cache folders excluded)."""
    out = {}
    for f in sorted(p.iterdir()):
        if f.name.startswith("."):
            continue
        out[f.name] = f.stat().st_size if f.is_file() else sum(g.stat().st_size for g in f.rglob("*") if g.is_file())
    return out


def frames_psnr(video: Path, out: Path) -> float:
    """PSNR (dB, over all pixels of all frames, RGB) of frames.mp4 against the crop it encodes."""
    import numpy as np

    from emogs.data.crop import CropBox, crop_frames
    from emogs.io.atomic import read_json
    from emogs.io.media import read_frames

    m = read_json(out / "manifest.json")
    c = m["crop"]
    src = crop_frames(video, CropBox(c["x0"], c["y0"], c["side"]), m["size"], m["num_frames"])
    se, count = 0.0, 0
    for a, b in zip(src, read_frames(out / "frames.mp4")):
        d = a.astype(np.float32) - b
        se += float(np.square(d).sum())
        count += d.size
    return float(10 * np.log10(255.0 ** 2 / (se / count)))


def bench_clip(video: Path, out: Path) -> dict:
    from emogs.data.prepare import PrepareConfig, prepare
    from emogs.io.atomic import read_json

    t0 = time.perf_counter()
    prepare(video, out, PrepareConfig(), force=True)
    total = time.perf_counter() - t0
    m = read_json(out / "manifest.json")
    state = read_json(out / ".prepare" / "state.json")["stages"]
    return {"name": video.stem, "duration": m["num_frames"] / 25, "total": total, "stages": m["stages"],
            "background": {k for k, v in state.items() if v.get("background")},
            "features": state["features"], "sizes": dir_size(out), "masks": m["masks"],
            "psnr": frames_psnr(video, out), "x264": state["frames"].get("x264", {})}


def table(results: list[dict], note: str) -> str:
    from emogs.data.prepare import STAGES

    stages = [s for s in STAGES if s in results[0]["stages"]]
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on this 2-core CPU machine ({os.cpu_count()} cores visible); {note}", "",
             "| stage | " + " | ".join(f"{r['name']} ({r['duration']:.1f} s)" for r in results) + " |",
             "|---|" + "---|" * len(results)]
    for s in stages:
        bg = " (background)" if s in results[0]["background"] else ""
        lines.append(f"| {s}{bg} | " + " | ".join(f"{r['stages'][s]:.1f} s" for r in results) + " |")
    lines.append("| (background stages run in worker threads beside frames; their times overlap it) | "
                 + " | ".join("" for r in results) + " |")
    lines.append("| features: of which Whisper | " + " | ".join(f"{r['features'].get('whisper_seconds', 0):.1f} s" for r in results) + " |")
    lines.append("| **total (incl. probe, hash)** | " + " | ".join(f"**{r['total']:.1f} s** ({r['duration'] / r['total']:.2f}x real time)" for r in results) + " |")
    lines += ["", "Dataset sizes:", "", "| file | " + " | ".join(r["name"] for r in results) + " |", "|---|" + "---|" * len(results)]
    files = sorted({k for r in results for k in r["sizes"]})
    for f in files:
        lines.append(f"| {f} | " + " | ".join(f"{r['sizes'].get(f, 0) / 1e6:.2f} MB" for r in results) + " |")
    lines.append("| **total** | " + " | ".join(f"**{sum(r['sizes'].values()) / 1e6:.1f} MB** "
                                               f"({sum(r['sizes'].values()) / 1e6 / r['duration'] * 60:.1f} MB per 60 s)" for r in results) + " |")
    lines += ["", "Masks: " + "; ".join(f"{r['name']}: static camera {r['masks']['static_camera']}, "
                                          f"person area {r['masks']['person_area_mean']:.2f}" for r in results)]
    lines += ["", "frames.mp4 against the crop it encodes (RGB PSNR over all frames): " + "; ".join(
        f"{r['name']}: {r['psnr']:.2f} dB" for r in results)
        + (f" (libx264 preset {results[0]['x264'].get('preset')}, CRF {results[0]['x264'].get('crf')})" if results[0]["x264"] else "")]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.is_file() else f"# emogs prepare\n\n## Speed\n{BEGIN}\n{END}\n"
    a, b = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    DOC.write_text(doc[:a] + "\n" + text + "\n" + doc[b:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="+", default=["macron_50s", "acosta_71s"])
    ap.add_argument("--keep", type=Path, default=None, help="keep the datasets under this folder")
    ap.add_argument("--note", default="the machine was otherwise idle")
    ap.add_argument("--no-doc", action="store_true")
    a = ap.parse_args()
    if not (SHARED / "video").is_dir():
        raise SystemExit(f"shared data not found at {SHARED}")
    base = a.keep or Path(tempfile.mkdtemp(prefix="emogs-bench-"))
    results = []
    try:
        for c in a.clips:
            results.append(bench_clip(SHARED / "video" / f"{c}.mp4", base / c))
    finally:
        if a.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    text = table(results, a.note)
    print(text)
    if not a.no_doc:
        write_doc(text)


if __name__ == "__main__":
    main()
