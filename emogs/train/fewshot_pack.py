"""Few-shot data on disk: a prepared dataset cut to chosen frames (and size), for the few-shot views of a
test person (the first N seconds + the test split) and for packing pretraining identities small enough to
travel to the GPU machine (`python -m emogs.train.gpu pack-fewshot`).

`subset_dataset(src, dst, frames)` writes an ordinary dataset (docs/architecture.md) holding only `frames`
of `src` (in that order, renumbered 0..n-1): frames.mp4 / labels.mkv re-encoded, every per-frame array of
tracks.npz / mesh.npz and the audio rows / samples cut to the same frames, the manifest's splits given by
the caller. With `size` the crop is resized (labels nearest, intrinsics and landmarks scaled). The person's
head mesh (`person_mesh.npz`) is written beside it: "full" (what `emogs train` reads on a machine without
ICT-FaceKit), "neutral" (without the expression basis and triangles, which every ICT fit shares: those go once
into SHARED_MESH of the parent folder, `load_person_mesh`) or none.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from emogs.io.atomic import read_json, write_json

SHARED_MESH = "shared_mesh.npz"  # basis + triangles shared by the identities of a packed folder
SHARED_KEYS = ("basis", "triangles")
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


def _frames(src: Path, idx: np.ndarray, size: int | None):
    import cv2

    from emogs.io.media import read_frames

    want = {int(i): k for k, i in enumerate(idx)}
    out: list = [None] * len(idx)
    for i, f in enumerate(read_frames(src / "frames.mp4")):
        if i in want:
            out[want[i]] = f if size is None else cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
        if i > idx.max():
            break
    return out


def _labels(src: Path, idx: np.ndarray, size: int | None):
    import cv2

    from emogs.data.labels import read_labels

    want = {int(i): k for k, i in enumerate(idx)}
    out: list = [None] * len(idx)
    for i, f in enumerate(read_labels(src / "labels.mkv")):
        if i in want:
            out[want[i]] = f if size is None else cv2.resize(f, (size, size), interpolation=cv2.INTER_NEAREST)
        if i > idx.max():
            break
    return out


def _cut_npz(path: Path, dst: Path, idx: np.ndarray, n_all: int, scale: float, drop_landmarks: bool) -> None:
    with np.load(path, allow_pickle=False) as z:
        d = {}
        for k in z.files:
            a = z[k]
            if a.ndim >= 1 and a.shape[0] == n_all and k not in ("K",):
                a = a[idx]
            if k == "K" and scale != 1.0:
                a = a.copy()
                a[:2] *= scale
            if k == "landmarks":
                a = (np.zeros_like(a, np.float16) if drop_landmarks else
                     (a * np.array([scale, scale, scale], a.dtype)).astype(np.float16))
            d[k] = a
    np.savez_compressed(dst, **d)


def subset_dataset(src: str | Path, dst: str | Path, frames, splits: dict[str, list[int]], size: int | None = None,
                   whisper: bool = False, person_mesh: str = "full", drop_landmarks: bool = False,
                   note: str = "") -> dict:
    """Write `dst`: dataset `src` cut to `frames` (indices into src, any order), manifest splits `splits`
    (ranges in the new numbering). Returns the new manifest."""
    from emogs.data.labels import LabelWriter
    from emogs.io.media import read_wav, write_video, write_wav

    src, dst = Path(src), Path(dst)
    idx = np.asarray(frames, np.int64)
    man = read_json(src / "manifest.json")
    n_all, s0 = int(man["num_frames"]), int(man["size"])
    scale = 1.0 if size is None else size / s0
    dst.mkdir(parents=True, exist_ok=True)
    imgs = _frames(src, idx, size)
    if any(f is None for f in imgs):
        raise ValueError(f"{src}: frames.mp4 lacks some of the requested frames")
    write_video(dst / "frames.mp4", iter(imgs), fps=25, crf=16)
    labs = _labels(src, idx, size)
    with LabelWriter(dst / "labels.mkv", labs[0].shape[1], labs[0].shape[0]) as w:
        for lab in labs:
            w.write(lab)
    wav = read_wav(src / "audio.wav")
    pad = np.zeros(SAMPLES_PER_FRAME * (n_all + 1), np.float32)
    pad[:len(wav)] = wav[:len(pad)]
    write_wav(dst / "audio.wav", np.concatenate([pad[SAMPLES_PER_FRAME * i: SAMPLES_PER_FRAME * (i + 1)] for i in idx]))
    feats = dict(man["features"])
    for name in ("mel", "whisper"):
        f = src / f"audio_{name}.npy"
        if not f.is_file() or (name == "whisper" and not whisper):
            if name == "whisper":
                feats["whisper"] = None
            continue
        rows = np.load(f, mmap_mode="r")
        r = rows.shape[0] // n_all
        np.save(dst / f"audio_{name}.npy", np.ascontiguousarray(np.concatenate([rows[r * i: r * (i + 1)] for i in idx])))
    _cut_npz(src / "tracks.npz", dst / "tracks.npz", idx, n_all, scale, drop_landmarks)
    if (src / "mesh.npz").is_file():
        _cut_npz(src / "mesh.npz", dst / "mesh.npz", idx, n_all, scale, False)
    if (src / "fer.npz").is_file():  # the frames' FER2013 scores (emogs.data.fer_features)
        _cut_npz(src / "fer.npz", dst / "fer.npz", idx, n_all, 1.0, False)
    import cv2

    bg = cv2.imread(str(src / "background.png"), cv2.IMREAD_COLOR)
    if size is not None:
        bg = cv2.resize(bg, (size, size), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(dst / "background.png"), bg)
    man.update(num_frames=int(len(idx)), splits={k: [int(a), int(b)] for k, (a, b) in splits.items()},
               features=feats, size=int(size or s0))
    man["audio"] = {**man.get("audio", {}), "num_samples": int(SAMPLES_PER_FRAME * len(idx))}
    man["subset"] = dict(source_dataset=str(src), frames=[int(idx[0]), int(idx[-1]) + 1] if len(idx) else [],
                         num_frames=int(len(idx)), size=int(size or s0), note=note,
                         ranges=_ranges(idx))
    write_json(dst / "manifest.json", man)
    if person_mesh != "none" and (src / "mesh.npz").is_file():
        from emogs.train.loop import person_mesh as pm_of

        pm = pm_of(src)
        if person_mesh == "neutral":
            pm = {k: v for k, v in pm.items() if k not in SHARED_KEYS}
        np.savez_compressed(dst / "person_mesh.npz", **pm)
    return man


def _ranges(idx: np.ndarray) -> list[list[int]]:
    """Consecutive runs of source frame indices: [[start, end), ...]."""
    out: list[list[int]] = []
    for i in idx.tolist():
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def few_shot_frames(manifest: dict, seconds: float, fps: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """(train frames, test frames) of a person's few-shot protocol: the first `seconds` of the clip, never
    past the start of its test split, and the dataset's test split."""
    t0, t1 = manifest["splits"]["test"]
    n = min(int(round(seconds * fps)), int(t0))
    return np.arange(0, n), np.arange(int(t0), int(t1))


def write_few_shot_view(src: str | Path, dst: str | Path, seconds: float = 5.0, size: int | None = None,
                        person_mesh: str = "full") -> dict:
    """The few-shot view of a test person: a dataset whose train split is the first `seconds` (at most up to
    the source's test split) and whose test split is the source's test split, back to back."""
    man = read_json(Path(src) / "manifest.json")
    tr, te = few_shot_frames(man, seconds)
    return subset_dataset(src, dst, np.concatenate([tr, te]), {"train": [0, len(tr)], "test": [len(tr), len(tr) + len(te)]},
                          size=size, person_mesh=person_mesh,
                          note=f"few-shot view: train = the first {len(tr) / 25:g} s, test = the source's test split")


def load_person_mesh(root: str | Path) -> dict[str, np.ndarray]:
    """`emogs.train.loop.person_mesh` of a dataset, completed from the parent folder's SHARED_MESH when its
    person_mesh.npz holds only the person's own part (a packed pretraining identity)."""
    from emogs.train.loop import PERSON_MESH, person_mesh

    root = Path(root)
    if (root / PERSON_MESH).is_file():
        with np.load(root / PERSON_MESH, allow_pickle=False) as z:
            have = set(z.files)
        if not set(SHARED_KEYS) <= have:
            pm = person_mesh(root)
            with np.load(root.parent / SHARED_MESH, allow_pickle=False) as z:
                pm.update({k: z[k] for k in SHARED_KEYS})
            return pm
    return person_mesh(root)


def pack_pretrain(sources: list[str | Path], dst: str | Path, size: int = 256, seconds: float = 6.0,
                  max_mb: float = 20.0, log=print) -> dict:
    """Pack pretraining identities into `dst/<name>/` (the first `seconds` at `size` px, no landmarks, the
    person's neutral mesh) plus `dst/shared_mesh.npz`, identity by identity until `max_mb` would be passed.
    Returns the packing record (also `dst/pack.json`)."""
    from emogs.train.loop import person_mesh as pm_of

    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    total = lambda: sum(f.stat().st_size for f in dst.rglob("*") if f.is_file()) / 2 ** 20
    packed, skipped = [], []
    shared = None
    for s in map(Path, sources):
        man = read_json(s / "manifest.json")
        n = min(int(man["num_frames"]), int(round(seconds * 25)))
        out = dst / s.name
        subset_dataset(s, out, np.arange(n), {"train": [0, n], "test": [n, n]}, size=size, person_mesh="neutral",
                       drop_landmarks=True, note=f"pretraining pack: the first {n / 25:g} s at {size} px")
        if shared is None:
            pm = pm_of(s)
            shared = {k: pm[k] for k in SHARED_KEYS}
            np.savez_compressed(dst / SHARED_MESH, **shared)
        if total() > max_mb:
            shutil.rmtree(out)
            skipped.append(s.name)
            log(f"[pack] {s.name}: would pass {max_mb} MB, left out")
            continue
        packed.append(dict(name=s.name, frames=n, source=str(s)))
        log(f"[pack] {s.name}: {n} frames, {total():.1f} MB so far")
    rec = dict(size=size, seconds=seconds, max_mb=max_mb, identities=packed, left_out=skipped, mb=round(total(), 2))
    write_json(dst / "pack.json", rec)
    return rec


WILD_PREFIXES = ("pcavs_", "latentsync_", "astorfi_")  # in-the-wild clips (pretrain/wild/): packed last


def pack_fewshot_cli(argv: list[str]) -> int:
    """`python -m emogs.train.gpu pack-fewshot SPLIT.json OUT [--max-mb 20] [--seconds 6] [--size 256]`: the
    pretraining identities of a split (scripts/fewshot_data.py; one clip per person, avatar-grade clips first,
    then by fit error) into OUT/pretrain/, the test people's few-shot views into OUT/test/<name>/ (as
    `pack-dataset`: full person_mesh.npz, no Whisper features)."""
    import argparse
    import json

    from emogs.train.gpu import pack_dataset

    p = argparse.ArgumentParser(prog="python -m emogs.train.gpu pack-fewshot")
    p.add_argument("split", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--max-mb", type=float, default=20.0, help="pretraining data at most this size")
    p.add_argument("--seconds", type=float, default=6.0, help="seconds per pretraining identity")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--no-fer", action="store_true",
                   help="do not compute the FER2013 scores (fer.npz) the emotion guidance reads (the GPU image "
                        "cannot: an emotag head with model.emotion_dim > 0 then refuses to train there)")
    a = p.parse_args(argv)
    split = json.loads(a.split.read_text())
    best: dict[str, dict] = {}
    for r in split["pretrain"]:
        if r["person"] not in best or r["fit_median_px_at_512"] < best[r["person"]]["fit_median_px_at_512"]:
            best[r["person"]] = r
    order = sorted(best.values(), key=lambda r: (r["clip"].startswith(WILD_PREFIXES), r["fit_median_px_at_512"]))
    if not a.no_fer:  # computed here, once, on the full-size sources (cached beside them), cut with the frames
        from emogs.data.fer_features import ensure_fer_features

        for d in [*(r["dataset"] for r in best.values()), *(r["view"] for r in split["test"])]:
            ensure_fer_features(d)
    rec = pack_pretrain([r["dataset"] for r in order], a.out / "pretrain", a.size, a.seconds, a.max_mb)
    for r in split["test"]:
        pack_dataset(Path(r["view"]), a.out / "test" / Path(r["view"]).name)
    rec["test"] = [Path(r["view"]).name for r in split["test"]]
    write_json(a.out / "pack.json", rec)
    mb = sum(f.stat().st_size for f in a.out.rglob("*") if f.is_file()) / 2 ** 20
    print(f"[pack] {len(rec['identities'])} pretraining identities ({rec['mb']} MB), {len(rec['test'])} test people; "
          f"{mb:.1f} MB in {a.out}")
    return 0
