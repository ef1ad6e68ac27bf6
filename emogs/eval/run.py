"""`emogs eval-videos` and `emogs eval`: read inputs, call `evaluate_frames`, write the report.

Both read video at 25 fps (the project's time base: frame i <-> audio samples [640 i, 640 (i+1)) at
16 kHz), so AU-jerk and sync lags are per 25 fps frame whatever the input rate.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np

from emogs.constants import FPS, SAMPLE_RATE
from emogs.errors import InputError
from emogs.eval.report import check_report_dir, write_report
from emogs.eval.suite import EvalOptions, evaluate_frames
from emogs.io.media import load_video_audio, probe, read_frames


def load_aligned_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """Mono audio whose sample 0 is at the first video frame (containers may start the streams at different
    times; `read_frames` starts at the first frame). None when the file has no audio."""
    path = Path(path)
    if not probe(path).has_audio:
        return None
    return load_video_audio(path, sample_rate)


def eval_videos(pred: str | Path, gt: str | Path, out_dir: str | Path, emotion: str | None = None,
                options: EvalOptions | None = None, overwrite: bool = True) -> Path:
    """Evaluate two aligned videos; the sync audio comes from `pred` (else `gt`). Returns metrics.json path.
    The report folder is checked first (`check_report_dir`; an earlier report only with `overwrite`)."""
    pred, gt = Path(pred), Path(gt)
    ip, ig = probe(pred), probe(gt)
    check_report_dir(out_dir, [pred, gt], overwrite)
    o = options or EvalOptions()
    o.emotion = emotion or o.emotion
    notes = []
    size = None
    if (ip.width, ip.height) != (ig.width, ig.height):
        size = (ig.width, ig.height)
        notes.append(f"prediction {ip.width}x{ip.height} resized to the ground truth's {ig.width}x{ig.height}")
    audio, audio_src = load_aligned_audio(pred), str(pred)
    if audio is None:
        audio, audio_src = load_aligned_audio(gt), str(gt)
        if audio is not None:
            notes.append("the prediction has no audio: sync uses the ground truth's audio")
        else:
            audio_src = None
    res = evaluate_frames(read_frames(pred, fps=FPS, size=size), read_frames(gt, fps=FPS), audio, o)
    res.notes[:0] = notes
    _say_notes(res, o)
    inputs = {"pred": str(pred), "gt": str(gt), "audio": audio_src, "emotion": o.emotion,
              "pred_fps": ip.fps, "gt_fps": ig.fps, "read_fps": FPS}
    return write_report(res, out_dir, inputs, title="emogs eval-videos")


def _say_notes(res, o: EvalOptions) -> None:
    """The report's notes (why a metric is n/a, ...) on stderr too, when progress is shown."""
    if o.progress:
        for n in res.notes:
            print(f"eval: note: {n}", file=sys.stderr, flush=True)


def split_side_by_side(frames):
    """(H, 2W, 3) frames -> two iterators of (H, W, 3): left (render) and right (ground truth)."""
    a, b = itertools.tee(frames, 2)

    def half(it, right: bool):
        for f in it:
            w = f.shape[1]
            if w % 2:
                raise InputError(f"side-by-side frame width {w} is odd: cannot split render | ground truth")
            yield np.ascontiguousarray(f[:, w // 2:] if right else f[:, : w // 2])

    return half(a, False), half(b, True)


def _region_dataset(folder, dataset: str | Path | None, split: str):
    """(dataset root, (first, end) frames of the split) for per-region errors, or (None, why not)."""
    from emogs.data.dataset import load_manifest

    if dataset is not None:
        root = Path(dataset)
    else:
        try:
            root = Path(folder.dataset_info().get("root") or "")
        except InputError:
            return None, "per-region errors: the run has no dataset.json (give the dataset with --dataset)"
    if dataset is None and not (root / "manifest.json").is_file():
        return None, f"per-region errors: the run's dataset ({root}) is not here (give it with --dataset)"
    man = load_manifest(root)
    folder.check_dataset(man, root, fix="give the dataset it was trained on (--dataset)")
    if split not in man["splits"]:
        raise InputError(f"{root}: has no split '{split}'")
    return root, tuple(man["splits"][split])


def add_region_errors(res, pred_frames, gt_frames, root: Path, span: tuple[int, int], out: Path,
                      prefix: str = "region", map_name: str = "error_map.png") -> None:
    """Per-region errors of a split render (emogs.eval.regions) into `res` (metrics `<prefix>_*`, extra
    `<prefix>s`; the plain render: `region_*`, still / moving frames too) and the mean error map
    out/`map_name` (ground truth | error)."""
    import cv2

    from emogs.data.labels import read_labels
    from emogs.eval.regions import error_map_image, region_errors
    from emogs.io.atomic import atomic_path

    a, b = span
    first = {}

    def keep_first(it):
        for i, f in enumerate(it):
            if i == 0:
                first["gt"] = f
            yield f

    def labels():  # the dataset's label maps at the render's size (training may render below the dataset's)
        for i, lab in enumerate(read_labels(root / "labels.mkv")):
            if i >= b:
                break
            if i >= a:
                side = first["gt"].shape[:2] if "gt" in first else lab.shape
                yield lab if lab.shape == side else cv2.resize(lab, (side[1], side[0]), interpolation=cv2.INTER_NEAREST)

    r = region_errors(pred_frames, keep_first(gt_frames), labels())
    for name, d in r["regions"].items():
        res.metrics[f"{prefix}_{name}_psnr"] = d["psnr"]
        res.metrics[f"{prefix}_{name}_sse_share"] = d["sse_share"]
    if prefix == "region":
        for name in ("still", "moving"):
            if name in r["frames"]:
                res.metrics[f"face_psnr_{name}_frames"] = r["frames"][name]["psnr_face"]
    res.extra[f"{prefix}s"] = {"regions": r["regions"], "frames": r["frames"], "dataset": str(root)}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / map_name) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(error_map_image(r["error_map"], first["gt"]), cv2.COLOR_RGB2BGR))


def field_frames(folder, video: Path, alpha: np.ndarray):
    """(field-protocol frames, ground-truth frames) iterators rebuilt from a split render over the plate and the
    run's rendered alpha (`emogs.train.evaluate.field_composite`): the head pasted on the true frame."""
    import cv2

    from emogs.train.evaluate import field_composite

    plate = folder.background()
    pred, gt = split_side_by_side(read_frames(video, fps=FPS))
    gt_a, gt_b = itertools.tee(gt, 2)

    def rebuild():
        p = None
        for i, (r, g) in enumerate(zip(pred, gt_a)):
            if i >= len(alpha):
                raise InputError(f"{video}: has more frames than {folder.path}/test_alpha.npz ({len(alpha)})")
            if p is None:
                p = plate if plate.shape[:2] == r.shape[:2] else cv2.resize(plate, (r.shape[1], r.shape[0]),
                                                                             interpolation=cv2.INTER_AREA)
            a = alpha[i]
            if a.shape != r.shape[:2]:
                a = cv2.resize(a, (r.shape[1], r.shape[0]), interpolation=cv2.INTER_LINEAR)
            yield field_composite(r, a, g, p)

    return rebuild(), gt_b


def add_field_region_errors(res, folder, video: Path, root: Path, span: tuple[int, int], out: Path, split: str) -> None:
    """The per-region errors under the field's protocol (head pasted by its rendered alpha on the true frame,
    so background and torso are the true frame's and carry only what the head's alpha leaves on them):
    metrics `field_region_*`, `field_psnr_video`, out/error_map_field.png. Needs the run's test_alpha.npz
    (runs trained before it say so in a note; their metrics.json may hold `field_regions` from training)."""
    alpha = folder.test_alpha() if split == "test" else None
    if alpha is None:
        tm = folder.metrics() or {}
        if tm.get("field_regions"):
            res.extra["field_regions_train"] = tm["field_regions"]
            res.notes.append("field-protocol regions: from training (metrics.json field_regions); the run has no "
                             "test_alpha.npz to rebuild them from the video")
        else:
            res.notes.append("field-protocol regions: the run has no test_alpha.npz (trained before it was written)")
        return
    frames, gts = field_frames(folder, video, alpha)
    psnrs = []

    def measured(it):
        from emogs.eval.image import psnr_np

        for f, g in it:
            psnrs.append(psnr_np(f, g))
            yield f, g

    pairs = measured(zip(frames, gts))
    a, b = itertools.tee(pairs, 2)
    add_region_errors(res, (f for f, _ in a), (g for _, g in b), root, span, out, prefix="field_region",
                      map_name="error_map_field.png")
    res.metrics["field_psnr_video"] = float(np.mean(psnrs)) if psnrs else float("nan")


def eval_run(run: str | Path, split: str = "test", out_dir: str | Path | None = None,
             emotion: str | None = None, options: EvalOptions | None = None, overwrite: bool = True,
             dataset: str | Path | None = None) -> Path:
    """Evaluate a training run from RUN/<split>_render.mp4 (render | ground truth side by side, split audio
    muxed in). Adds `fps` from the render benchmark file and keeps RUN/metrics.json as `meta.inputs.train_metrics`.
    With the run's dataset (`dataset`, else the folder RUN/dataset.json names, when present) also the error
    per region (emogs.eval.regions) and out/error_map.png.
    The report folder (default RUN/eval_<split>) is checked first; an earlier report only with `overwrite`."""
    from emogs.run import open_run
    from emogs.run.folder import BENCHMARK_FILES

    if Path(run).is_file():
        raise InputError(f"{run}: is a file; give the run folder made by `emogs train`")
    folder = open_run(run)
    run = folder.path
    video = folder.split_render_path(split)
    if not video.is_file():
        raise InputError(f"{video} not found (train writes test_render.mp4; other splits need a render first)")
    out = Path(out_dir) if out_dir else run / f"eval_{split}"
    check_report_dir(out, [video, run / "metrics.json", *(run / b for b in BENCHMARK_FILES)], overwrite)
    o = options or EvalOptions()
    o.emotion = emotion or o.emotion
    root, span = _region_dataset(folder, dataset, split)
    pred, gt = split_side_by_side(read_frames(video, fps=FPS))
    res = evaluate_frames(pred, gt, load_aligned_audio(video), o)
    _say_notes(res, o)
    if root is None:
        res.notes.append(span)
    else:
        add_region_errors(res, *split_side_by_side(read_frames(video, fps=FPS)), root, span, out)
        add_field_region_errors(res, folder, video, root, span, out, split)
    inputs: dict[str, Any] = {"run": str(run), "split": split, "video": str(video),
                              "layout": "left half = render, right half = ground truth", "emotion": o.emotion,
                              # where the head ends, which the field protocol's numbers depend on (docs/training.md)
                              "neck_keep": folder.config_dict().get("neck_keep")}
    fps, src = folder.benchmark_fps()
    if fps is not None:
        res.metrics["fps"] = fps
        inputs["fps_source"] = src
    else:
        res.notes.append("no render benchmark file (scripts/gpu_render_fps.py writes one): fps not reported")
    train_metrics = folder.metrics()
    if train_metrics is not None:
        inputs["train_metrics"] = train_metrics
    return write_report(res, out, inputs, title=f"emogs eval {run.name}")
