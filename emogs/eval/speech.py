"""`emogs eval-speech`: does the mouth follow other people's speech?

Renders a trained run on each driving audio (as `emogs render` does by default: speech AUs and, for a mesh
head with RUN/speech_motion.safetensors, the mouth's mesh motion from the speech-motion prior), and the same
run on its own test-split audio, then measures every render and the real video's test split with the same
two judges:
- mouth-opening spread: sd over frames of MediaPipe's inner-lip gap / outer-eye-corner distance
  (`emogs.eval.landmarks.mouth_opening`, landmarks from `emogs.face.analyze`); `spread_ratio` = render sd /
  real test-split sd; goal |ratio - 1| <= 25%;
- lip sync: `lipsync_conf` of our own lip-sync expert (`emogs.eval.lipsync`, docs/lipsync.md; not SyncNet) of the
  render with its driving audio; `sync_ratio` = that / `lipsync_conf` of the real test split with its own
  audio; goal >= 90%.
Also reported: `lipsync_score` (cosine at offset 0), `lipsync_offset_frames`, the mouth track's correlation
with the 1-3 kHz speech energy (`emogs.eval.sync`). Writes OUT/results.json and OUT/speech.png (atomically);
renders stay in OUT/videos and are reused when the weights, audio and size match.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emogs.constants import FPS, SAMPLE_RATE
from emogs.errors import InputError

GOAL_SPREAD = 0.25  # |render sd / real sd - 1| at most this
GOAL_SYNC = 0.90  # render lipsync_conf / real lipsync_conf at least this
MIN_SECONDS = 1.0  # the lip-sync expert needs 1 s of frames
REPORT_FILES = ("results.json", "speech.png")
OWN = "own_test_audio"  # the render of the run on its own test-split audio
PLOT_SECONDS = 8.0  # the mouth-opening panel shows this much of each track


@dataclass
class SpeechEvalOptions:
    size: int | None = None  # render size (default: the run's resolution)
    device: str = "auto"
    batch: int = 8
    rerender: bool = False
    own_audio: bool = True  # also render the run on its own test-split audio
    render_only: bool = False  # render (and keep) the videos, measure nothing (a machine without MediaPipe);
    # a later run without it on the same audio files and weights reuses them and measures
    measure_only: bool = False  # measure videos/ rendered elsewhere (--render-only) without the run's weights:
    # each job's video must be there, made from the same audio (the weights are not checked)
    goal_spread: float = GOAL_SPREAD
    goal_sync: float = GOAL_SYNC


def audio_names(audios: list[Path]) -> list[str]:
    """A distinct file-safe name per driving audio (its stem; _2, _3 ... for repeats)."""
    out: list[str] = []
    for a in audios:
        base = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(a).stem) or "audio"
        name, k = base, 2
        while name in out or name == OWN:
            name, k = f"{base}_{k}", k + 1
        out.append(name)
    return out


def real_reference(root: Path, frames: bool = True) -> tuple[np.ndarray | None, np.ndarray, dict[str, Any]]:
    """The real video's test split: (frames (N, S, S, 3) uint8 (None without `frames`), its 16 kHz audio, facts)."""
    from emogs.data.dataset import load_manifest
    from emogs.io.media import load_audio, read_frames

    m = load_manifest(root)
    if "test" not in m["splits"]:
        raise InputError(f"{root}: the dataset has no test split")
    a, b = m["splits"]["test"]
    if (b - a) < MIN_SECONDS * FPS:
        raise InputError(f"{root}: the test split has {b - a} frames; the lip-sync expert needs at least "
                         f"{int(MIN_SECONDS * FPS)}")
    out = []
    for i, f in enumerate(read_frames(root / "frames.mp4") if frames else ()):
        if i >= b:
            break
        if i >= a:
            out.append(f)
    wav = load_audio(root / "audio.wav")
    return (np.stack(out) if frames else None), wav[640 * a: 640 * b], dict(dataset=str(root), test_split=[int(a), int(b)])


def measure_clip(frames: np.ndarray, wav: np.ndarray, expert=None) -> tuple[dict[str, float], np.ndarray]:
    """Mouth spread and lip-sync numbers of one clip (frames at 25 fps, its 16 kHz audio) -> (metrics, the
    per-frame mouth opening)."""
    from emogs.eval import landmarks as lmk
    from emogs.eval.controls import mouth_motion, track
    from emogs.eval.lipsync import lipsync_scores

    r = track(frames)
    ok = r["success"].astype(bool)
    lms = r["landmarks"]
    out = dict(frames=int(len(frames)), tracked=float(ok.mean()))
    out.update(mouth_motion(lms, ok, wav))
    ls, _ = lipsync_scores(frames, wav, landmarks=np.where(ok[:, None, None], lms, np.nan), expert=expert)
    out.update(ls)
    return out, lmk.mouth_opening(np.where(ok[:, None, None], lms, np.nan))


def mouth_source(run) -> str:
    """What moves the mouth of this run on new audio."""
    kind = getattr(run.model_config(), "kind", "free")
    if kind == "mesh" and run.file("speech_motion.safetensors").is_file():
        return "speech-motion prior (mesh coefficients from the audio) + speech AUs on the learned detail"
    if run.file("speech_aus.safetensors").is_file():
        return "speech AUs (ridge regression from the audio)" + (" through the mesh" if kind == "mesh" else "")
    return "the head's own audio features only"


def _sha(path: Path) -> str | None:
    from emogs.io.atomic import sha256_file

    return sha256_file(path) if path.is_file() else None


def check_renders(jobs: dict[str, tuple[np.ndarray, str]], videos: Path, size: int | None) -> dict[str, Path]:
    """Renders made elsewhere, for measuring without the weights: every job's video there, made from the same
    audio at the same size (videos/specs.json; weights not checked). -> {name: mp4}."""
    from emogs.io.atomic import read_json

    spec_file = videos / "specs.json"
    if not spec_file.is_file():
        raise InputError(f"{videos}: no renders to measure (specs.json missing); render them with --render-only")
    specs = read_json(spec_file)
    paths = {}
    for n, (_, aid) in jobs.items():
        p, have = videos / f"{n}.mp4", specs.get(n) or {}
        if not p.is_file() or have.get("audio") != aid or have.get("size") != size:
            raise InputError(f"{p}: missing or rendered from other audio or at another size; render it again")
        paths[n] = p
    return paths


def render_all(run, jobs: dict[str, tuple[np.ndarray, str]], videos: Path, opts: SpeechEvalOptions,
               log: Callable[[str], None]) -> dict[str, Path]:
    """Render each job (name -> (16 kHz samples, audio id)) into videos/<name>.mp4 unless a render made from
    the same weights, audio and size is there. -> {name: mp4}."""
    from emogs.io.atomic import read_json, write_json

    videos.mkdir(parents=True, exist_ok=True)
    spec_file = videos / "specs.json"
    specs = read_json(spec_file) if spec_file.is_file() else {}
    weights = {f: _sha(run.file(f)) for f in ("model.safetensors", "speech_motion.safetensors", "speech_aus.safetensors")}
    paths = {n: videos / f"{n}.mp4" for n in jobs}
    want = {n: dict(weights=weights, audio=aid, size=opts.size) for n, (_, aid) in jobs.items()}
    todo = [n for n in jobs if opts.rerender or not paths[n].is_file() or specs.get(n) != want[n]]
    if not todo:
        log(f"[eval-speech] reusing {len(jobs)} renders in {videos}")
        return paths
    from emogs.avatar import Avatar

    av = Avatar.load(run.path, device=opts.device, size=opts.size)
    for k, n in enumerate(todo):
        t0 = time.time()
        av.render(jobs[n][0], paths[n], quiet=True, batch=opts.batch)
        specs[n] = want[n]
        write_json(spec_file, specs)
        log(f"[eval-speech] rendered {n} [{k + 1}/{len(todo)}] in {time.time() - t0:.1f} s")
    return paths


def plot(path: Path, res: dict[str, Any], tracks: dict[str, np.ndarray], opts: SpeechEvalOptions) -> None:
    """Left: spread and sync ratios per driving audio against their goals; right: mouth opening over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emogs.io.atomic import atomic_path

    names = list(res["renders"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=90, gridspec_kw=dict(width_ratios=[1, 1.4]))
    x = np.arange(len(names))
    sp = [res["renders"][n].get("spread_ratio") for n in names]
    sy = [res["renders"][n].get("sync_ratio") for n in names]
    a1.bar(x - 0.2, [np.nan if v is None else v for v in sp], 0.4, label="mouth spread / real", color="C0")
    a1.bar(x + 0.2, [np.nan if v is None else v for v in sy], 0.4, label="lipsync_conf / real", color="C1")
    a1.axhspan(1 - opts.goal_spread, 1 + opts.goal_spread, color="C0", alpha=0.12, lw=0)
    a1.axhline(opts.goal_sync, color="C1", ls="--", lw=1)
    a1.axhline(1.0, color="k", lw=0.6)
    a1.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
    a1.set_ylabel("ratio to the real video's test split", fontsize=8)
    a1.legend(fontsize=7, frameon=False)
    a1.set_title("goals: spread within the band, sync above the dashed line", fontsize=9)
    real = tracks.get("real")
    n_show = int(PLOT_SECONDS * FPS)  # the first seconds of every track, on one time axis
    if real is not None:
        a2.plot(np.arange(min(len(real), n_show)) / FPS, real[:n_show], "k-", lw=1.6, label="real (test split)")
    for k, n in enumerate(names):
        t = tracks[n][:n_show]
        a2.plot(np.arange(len(t)) / FPS, t, lw=0.8, color=f"C{k % 10}", label=n)
    a2.set_xlabel("time (s)", fontsize=8)
    a2.set_ylabel("mouth opening (lip gap / eye width)", fontsize=8)
    a2.legend(fontsize=6, ncol=3, frameon=False, loc="upper right")
    a2.set_title(f"mouth opening (MediaPipe), first {PLOT_SECONDS:.0f} s of every render and of the real test split", fontsize=9)
    for a in (a1, a2):
        a.tick_params(labelsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) or b <= 0:
        return None
    return float(a / b)


def eval_speech(run_dir: str | Path, audios: list[str | Path], out_dir: str | Path, dataset: str | Path | None = None,
                opts: SpeechEvalOptions | None = None, overwrite: bool = False,
                log: Callable[[str], None] | None = None) -> Path:
    """Render RUN on every driving audio (and its own test-split audio), measure the renders and the real
    test split; -> OUT/results.json. `dataset`: the run's DATASET (default: where it was trained from).
    An earlier report in OUT is replaced only with `overwrite` (its renders are reused either way)."""
    from emogs.data.dataset import load_manifest
    from emogs.eval.controls import json_safe
    from emogs.io.atomic import sha256_file, write_json
    from emogs.io.media import load_audio
    from emogs.io.paths import output_dir
    from emogs.run import open_run

    opts = opts or SpeechEvalOptions()
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    t0 = time.time()
    run = open_run(run_dir)
    if opts.render_only and opts.measure_only:
        raise InputError("--render-only and --measure-only exclude each other")
    if not run.has_model() and not opts.measure_only:
        raise InputError(f"{run.path}: no model.safetensors (training not finished?)")
    if not audios:
        raise InputError("give at least one driving audio (--audio A.wav [B.wav ...])")
    if opts.size is not None and not 16 <= opts.size <= 4096:
        raise InputError(f"--size {opts.size} out of range (16-4096)")
    audios = [Path(a) for a in audios]
    for a in audios:
        if not a.is_file():
            raise InputError(f"{a}: audio file not found")
    root = Path(dataset) if dataset is not None else Path(run.info().get("dataset", {}).get("root") or "")
    if not str(root) or not (root / "manifest.json").is_file():
        raise InputError(f"the run's dataset {str(root) or '(unknown)'} is not there; pass --dataset DATASET (the "
                         "folder `emogs prepare` made for this run)")
    run.check_dataset(load_manifest(root), root, fix="give the dataset it was trained on (--dataset)")
    out = Path(out_dir)
    output_dir(out, inputs=[*audios, root / "frames.mp4", root / "audio.wav",
                            *(run.path / f for f in ("model.safetensors", "config.json", "run.json"))],
               writes=REPORT_FILES, what="report folder")
    if (out / "results.json").exists() and not overwrite:
        raise InputError(f"{out}: holds an earlier report (results.json); pass --force to replace it (its renders "
                         "are reused when their settings match), or choose another -o folder")
    wavs = {}
    for a, n in zip(audios, audio_names(audios)):
        w = load_audio(a, SAMPLE_RATE)
        if len(w) < MIN_SECONDS * SAMPLE_RATE:
            raise InputError(f"{a}: {len(w) / SAMPLE_RATE:.2f} s of audio; the lip-sync expert needs at least "
                             f"{MIN_SECONDS:.0f} s")
        if float(np.abs(w).max()) < 1e-3:
            raise InputError(f"{a}: the audio is silent")
        wavs[n] = (w, sha256_file(a))
    log(f"[eval-speech] real video: {root} test split")
    real_frames, real_wav, real_facts = real_reference(root, frames=not opts.render_only)
    jobs = dict(wavs)
    if opts.own_audio:
        jobs[OWN] = (real_wav, "test-split:" + sha256_file(root / "audio.wav")[:16] + f":{real_facts['test_split']}")
    paths = (check_renders(jobs, out / "videos", opts.size) if opts.measure_only
             else render_all(run, jobs, out / "videos", opts, log))
    if opts.render_only:
        log(f"[eval-speech] rendered only: {len(paths)} videos in {out / 'videos'}; measure them with the same "
            "command without --render-only")
        return out / "videos"

    from emogs.eval.controls import read_render
    from emogs.experts.sync import load_sync_expert

    expert = load_sync_expert()
    real, real_track = measure_clip(real_frames, real_wav, expert)
    tracks = {"real": real_track}
    renders = {}
    for n, (w, _) in jobs.items():
        frames = read_render(paths[n])
        m, tracks[n] = measure_clip(frames, w[: int(len(frames) * SAMPLE_RATE / FPS)], expert)
        m["spread_ratio"] = _ratio(m.get("mouth_open_sd"), real.get("mouth_open_sd"))
        m["sync_ratio"] = _ratio(m.get("lipsync_conf"), real.get("lipsync_conf"))
        m["spread_ok"] = m["spread_ratio"] is not None and abs(m["spread_ratio"] - 1) <= opts.goal_spread
        m["sync_ok"] = m["sync_ratio"] is not None and m["sync_ratio"] >= opts.goal_sync
        m["audio"] = str(audios[list(wavs).index(n)]) if n in wavs else "the run's own test-split audio"
        renders[n] = m
        log(f"[eval-speech] {n}: mouth sd {m.get('mouth_open_sd', float('nan')):.4f} (x{m['spread_ratio'] or float('nan'):.2f} "
            f"of real), lipsync_conf {m.get('lipsync_conf', float('nan')):.3f} (x{m['sync_ratio'] or float('nan'):.2f})")
    other = [renders[n] for n in wavs]
    summary = dict(
        driving_audios=len(other),
        spread_ratio_mean=float(np.mean([r["spread_ratio"] for r in other if r["spread_ratio"] is not None]))
        if any(r["spread_ratio"] is not None for r in other) else None,
        sync_ratio_mean=float(np.mean([r["sync_ratio"] for r in other if r["sync_ratio"] is not None]))
        if any(r["sync_ratio"] is not None for r in other) else None,
        spread_goal_met=sum(r["spread_ok"] for r in other), sync_goal_met=sum(r["sync_ok"] for r in other))
    res = dict(
        meta=dict(command="emogs eval-speech " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["eval-speech"] else None,
                  run=str(run.path), model_kind=getattr(run.model_config(), "kind", "free"), mouth=mouth_source(run),
                  options=asdict(opts), seconds=None,
                  judges="mouth opening: MediaPipe FaceLandmarker landmarks (inner-lip gap / eye width); sync: "
                         "emogs' own lip-sync expert (lipsync_conf, docs/lipsync.md), not SyncNet",
                  goals=dict(spread=f"|spread_ratio - 1| <= {opts.goal_spread}", sync=f"sync_ratio >= {opts.goal_sync}")),
        real=dict(**real_facts, **real), renders=renders, summary=summary)
    res["meta"]["seconds"] = round(time.time() - t0, 1)
    safe = json_safe(res)
    out.mkdir(parents=True, exist_ok=True)
    plot(out / "speech.png", safe, tracks, opts)
    write_json(out / "results.json", safe)
    log(f"[eval-speech] {summary['spread_goal_met']}/{len(other)} within the spread goal, {summary['sync_goal_met']}/"
        f"{len(other)} at the sync goal; wrote {out}/results.json and speech.png in {time.time() - t0:.0f} s")
    return out / "results.json"
