"""Mesh datasets for EmoTaG few-shot pretraining and adaptation (docs/fewshot.md), built in a scratch folder.

    python scripts/fewshot_data.py --prep /work/prep --fits /work/scratch-speech/fits_v1 -o /work/scratch-fewshot/ds

For every clip with an ICT-FaceKit fit (FITS/<clip>.npz) and a prepared dataset (PREP/<clip>/manifest.json):
OUT/<clip>/ = symlinks to the prepared files + the fit as mesh.npz (nothing prepared again). The split is by
person (fits.json's `identity`, so every clip of one person lands on one side): the test people (may, lieu,
macron) get a few-shot view OUT/<clip>_5s/ (train = the first 5 s, never past the clip's test split; test =
the clip's test split); everybody else is pretraining material, except fits with a median reprojection error
above --max-fit-px (at 512 px). Writes OUT/split.json (which clips, which people, which side, why).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

TEST_PEOPLE = ("may", "lieu", "macron")
LINK = ("manifest.json", "frames.mp4", "audio.wav", "tracks.npz", "labels.mkv", "background.png", "audio_mel.npy",
        "audio_whisper.npy")


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--prep", type=Path, default=Path("/work/prep"))
    p.add_argument("--fits", type=Path, default=Path("/work/scratch-speech/fits_v1"))
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--max-fit-px", type=float, default=2.0)
    a = p.parse_args(argv)
    from emogs.train.fewshot_pack import write_few_shot_view

    fits = json.loads((a.fits / "fits.json").read_text())
    a.out.mkdir(parents=True, exist_ok=True)
    split = dict(test_people=list(TEST_PEOPLE), seconds=a.seconds, max_fit_px=a.max_fit_px, pretrain=[], test=[],
                 excluded=[])
    for clip, info in sorted(fits.items()):
        src = a.prep / clip
        if not (src / "manifest.json").is_file() or not (a.fits / f"{clip}.npz").is_file():
            split["excluded"].append(dict(clip=clip, why="no prepared dataset or fit"))
            continue
        dst = a.out / clip
        dst.mkdir(exist_ok=True)
        for f in LINK:
            if (src / f).is_file() and not (dst / f).exists():
                (dst / f).symlink_to(src / f)
        if not (dst / "mesh.npz").is_file():
            shutil.copyfile(a.fits / f"{clip}.npz", dst / "mesh.npz")
        person = info["identity"]
        rec = dict(clip=clip, person=person, dataset=str(dst), frames=info["frames"], size=info["size"],
                   fit_median_px_at_512=info["median_px_at_512"])
        if person in TEST_PEOPLE:
            view = a.out / f"{clip}_{a.seconds:g}s"
            if not (view / "manifest.json").is_file():
                man = write_few_shot_view(dst, view, a.seconds)
            else:
                man = json.loads((view / "manifest.json").read_text())
            rec.update(view=str(view), view_splits=man["splits"], view_ranges=man["subset"]["ranges"])
            split["test"].append(rec)
        elif info["median_px_at_512"] > a.max_fit_px:
            split["excluded"].append(dict(**rec, why=f"fit median {info['median_px_at_512']} px > {a.max_fit_px}"))
        else:
            split["pretrain"].append(rec)
        print(f"{clip}: {person} -> {'test' if person in TEST_PEOPLE else 'pretrain/excluded'}", flush=True)
    split["pretrain_people"] = sorted({r["person"] for r in split["pretrain"]})
    (a.out / "split.json").write_text(json.dumps(split, indent=1))
    print(f"{len(split['pretrain'])} pretraining clips of {len(split['pretrain_people'])} people, "
          f"{len(split['test'])} test people -> {a.out / 'split.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
