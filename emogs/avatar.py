"""`Avatar`: drive a trained head with any speech and explicit AU / emotion / pose controls.

    from emogs import Avatar
    av = Avatar.load("runs/macron")
    av.render("speech.wav", "out.mp4", au={"AU01": (1.0, 2.0, 4.0)}, emotion="happy:0.7")
    frames = av.render("speech.wav")          # (F, H, W, 3) uint8, F = audio length at 25 fps

Pipeline per chunk of frames: audio features (the run's kind: log-mel or Whisper) -> feature windows,
AU windows from the ControlPlan -> deformation -> rasterisation -> compositing on the run's plate.
Frames are produced chunk by chunk and streamed to the encoder, so memory stays bounded for long audio.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from emogs.errors import InputError

FPS = 25.0
SAMPLE_RATE = 16000
SILENCE_PEAK = 1e-3  # peak |amplitude| below which the audio counts as silent (-60 dBFS)
CLAMP_MARGIN = 0.1  # requested AUs may exceed the training range by this much


def audio_feature_rows(wav: np.ndarray, kind: str) -> tuple[np.ndarray, int]:
    """16 kHz mono audio -> (feature rows (R, D) f32, rows per video frame)."""
    if kind == "mel":
        from emogs.audio.features import log_mel

        return np.asarray(log_mel(wav), np.float32), 4
    if kind == "whisper":
        from emogs.audio.whisper import whisper_features

        return np.asarray(whisper_features(wav), np.float32), 2
    raise InputError(f"unknown audio feature kind '{kind}'")


def audio_windows(rows: np.ndarray, rows_per_frame: int, frames: np.ndarray, half: int) -> np.ndarray:
    """(R, D) rows -> (len(frames), 2*half, D) windows centred on each frame (as the training loader)."""
    from emogs.data.dataset import feature_windows

    return feature_windows(rows, rows_per_frame, frames, half)


def au_windows(au: np.ndarray, frames: np.ndarray, T: int) -> np.ndarray:
    """(F, 17) tracks -> (len(frames), T, 17) centred windows, edge-padded."""
    h = T // 2
    idx = np.clip(frames[:, None] - h + np.arange(T)[None, :], 0, len(au) - 1)
    return au[idx]


# Files of RUN/ that rendering reads: an output path may not be one of them.
RUN_INPUT_FILES = ("config.json", "model.safetensors", "dataset.json", "background.png", "train_cameras.npz",
                   "speech_aus.safetensors")


def check_speech(wav: np.ndarray, allow_silent: bool = False) -> None:
    """InputError for audio that cannot drive a render: not mono, shorter than a frame, silent."""
    if wav.ndim != 1:
        raise InputError("audio samples must be mono (1-D) at 16 kHz")
    if len(wav) < SAMPLE_RATE // 25:
        raise InputError("the audio is shorter than one frame (40 ms)")
    peak = float(np.abs(wav).max())
    if peak < SILENCE_PEAK and not allow_silent:
        raise InputError(f"the audio is silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS); "
                         "pass allow_silent=True / --allow-silent to render an idle head")


def check_render_output(out: str | Path, run_dir: str | Path, inputs: list = (), overwrite: bool = True) -> Path:
    """Check the output MP4 before any work: not a folder, not an input (the speech, control files, the
    run's own files), writable; an existing file only with `overwrite` (the CLI's --force)."""
    from emogs.io.paths import output_file

    run_inputs = [Path(run_dir) / f for f in RUN_INPUT_FILES]
    return output_file(out, inputs=[*(i for i in inputs if isinstance(i, (str, Path))), *run_inputs],
                       force=overwrite, what="output video")


@dataclass
class RenderResult:
    frames: int
    seconds: float  # wall time
    path: Path | None
    plan_summary: str
    au_requested: np.ndarray  # (F, 17)


class Avatar:
    """A trained run, ready to render."""

    def __init__(self, run_dir: Path, cfg: Any, model: Any, info: dict, background: np.ndarray,
                 train_w2c: np.ndarray, device: torch.device, size: int | None = None,
                 inference: str = "auto") -> None:
        import cv2

        from emogs.model.infer import PipelinedRenderer

        self.run_dir, self.cfg, self.model, self.info = run_dir, cfg, model, info
        self.train_w2c = train_w2c  # (N, 4, 4) training cameras
        self.device = device
        self.size = int(size or cfg.resolution)  # output frames are size x size
        s = self.size / int(cfg.resolution)
        self.K = np.asarray(info["K"], np.float32).copy()  # (3, 3) at the training resolution ...
        self.K[:2] *= s  # ... scaled to the output size
        self.background = cv2.resize(background, (self.size, self.size), interpolation=cv2.INTER_AREA)  # (S, S, 3)
        self.renderer = PipelinedRenderer(model, inference)  # CUDA-graph replay of the deformation on CUDA
        from emogs.model.speech_aus import FILE, SpeechAUs

        sp = run_dir / FILE  # speech-driven lower-face AUs (runs trained before it have none)
        try:
            self.speech = SpeechAUs.load(sp) if sp.is_file() else None
        except Exception as e:  # noqa: BLE001 - a damaged file: say which, and how to get a good one
            raise InputError(f"{sp}: unreadable ({type(e).__name__}); delete it to render without speech AUs, "
                             "or refit: python -m emogs.model.speech_aus RUN DATASET") from None

    # -- loading -----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", size: int | None = None,
             inference: str = "auto", threads: int | None = None) -> "Avatar":
        """Load RUN (config.json + model.safetensors + dataset.json + background.png). `size`: output
        resolution (default: the training resolution; other sizes rescale the camera intrinsics).
        `inference`: eager | graph | graph-bf16 | auto (graph on CUDA, eager on CPU; emogs.model.infer).
        `threads`: CPU threads for PyTorch; None picks them for the machine's current load
        (emogs.runtime.configure_threads; EMOGS_THREADS / OMP_NUM_THREADS override)."""
        import cv2
        from safetensors import safe_open

        from emogs.io.atomic import read_json
        from emogs.train.checkpoint import RUN_FORMAT_VERSION, load_run
        from emogs.train.loop import resolve_device

        run_dir = Path(run_dir)
        if run_dir.is_file():
            raise InputError(f"{run_dir}: is a file; give the run folder made by `emogs train`")
        if not run_dir.is_dir():
            raise InputError(f"{run_dir}: no such run folder")
        if size is not None and not 16 <= size <= 4096:
            raise InputError(f"render size {size} out of range (16-4096)")
        from emogs.runtime import apply_threads, configure_threads

        if threads is None:
            configure_threads()  # threads that do not oversubscribe a busy machine
        elif threads < 1:
            raise InputError(f"threads must be at least 1, got {threads}")
        else:
            apply_threads(int(threads))
        weights = run_dir / "model.safetensors"
        if not weights.is_file():
            raise InputError(f"{run_dir}: no model.safetensors (training not finished? run `emogs train` again)")
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
        ver = meta.get("run_format_version")
        if ver != str(RUN_FORMAT_VERSION):
            raise InputError(f"{run_dir}: run format version {ver} is not supported by this emogs "
                             f"(needs {RUN_FORMAT_VERSION}); retrain with this version")
        dev = resolve_device(device)
        cfg, model = load_run(run_dir, dev)
        info = read_json(run_dir / "dataset.json")
        S = int(cfg.resolution)
        bgr = cv2.imread(str(run_dir / "background.png"), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"{run_dir}: background.png missing or unreadable")
        bg = cv2.resize(bgr[..., ::-1], (S, S), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        cams = run_dir / "train_cameras.npz"
        if cams.is_file():
            with np.load(cams, allow_pickle=False) as z:
                w2c = z["world_to_cam"].astype(np.float32)
        else:  # older runs: read the training cameras from the dataset the run was trained on
            root = Path(info.get("root", ""))
            if not (root / "tracks.npz").is_file():
                raise InputError(f"{run_dir}: no train_cameras.npz and the dataset {root} is gone")
            from emogs.data.dataset import load_manifest

            m = load_manifest(root)
            a, b = m["splits"]["train"]
            with np.load(root / "tracks.npz", allow_pickle=False) as z:
                w2c = z["world_to_cam"][a:b].astype(np.float32)
        return cls(run_dir, cfg, model, info, bg, w2c, dev, size, inference)

    @property
    def default_au(self) -> np.ndarray:
        """(17,) the model's default expression: mean AUs of the training frames."""
        return np.asarray(self.info["au_mean"], np.float32)

    # -- rendering ---------------------------------------------------------------------------------------
    def plan(self, num_frames: int, **controls: Any):
        """ControlPlan for `num_frames` (see emogs.control.build_plan for the keywords)."""
        from emogs.control.plan import build_plan

        controls.setdefault("default_au", self.default_au)
        return build_plan(num_frames, FPS, **controls)

    def training_range(self) -> tuple[np.ndarray, np.ndarray]:
        """(17,), (17,): the lowest and highest value of each AU in the training frames."""
        return np.asarray(self.info["au_min"], np.float32), np.asarray(self.info["au_max"], np.float32)

    def clamp_to_training(self, au: np.ndarray, warn: Callable[[str], None] | None = None) -> np.ndarray:
        """(F, 17) requested AUs -> clamped to what the training clip showed (+ CLAMP_MARGIN). A per-person
        model has never seen an AU beyond that range and extrapolates badly (a broken face: see
        docs/control_proof.md); `warn` gets one line per AU that was cut."""
        lo, hi = self.training_range()
        lo, hi = np.clip(lo - CLAMP_MARGIN, 0, 1), np.clip(hi + CLAMP_MARGIN, 0, 1)
        out = np.clip(au, lo, hi)
        if warn is not None:
            from emogs.face.aus import AU_NAMES

            for k in np.flatnonzero(np.abs(out - au).max(0) > 0.02):
                warn(f"{AU_NAMES[k]} requested up to {au[:, k].max():.2f}, but the training clip only shows "
                     f"{lo[k]:.2f}-{hi[k]:.2f}: clamped (the model cannot show what it never saw; "
                     "--allow-extrapolation to try anyway)")
        return out

    def effective_au(self, plan, rows: np.ndarray, rows_per_frame: int, speech_aus: bool = True) -> np.ndarray:
        """(F, 17) the AUs the model is driven with: the plan's, plus the speech AUs' predicted deviation
        from the audio feature rows where the user did not set them."""
        au = plan.au.astype(np.float32)
        if not speech_aus or self.speech is None:
            return au
        dev = self.speech.deviation_from_rows(rows, rows_per_frame, plan.num_frames, self.model.cfg.audio_window)
        return self.speech.add_deviation(au, plan.mask, dev)

    def frames(self, wav: np.ndarray, plan, batch: int = 8, chunk: int = 256,
               progress: Callable[[int, int], None] | None = None, clamp: bool = True,
               speech_aus: bool = True) -> Iterator[np.ndarray]:
        """Yield uint8 (H, W, 3) frames for 16 kHz audio `wav` under `plan`, chunk by chunk. AUs are
        clamped to the training range unless `clamp` is False. With `speech_aus` (and a run that has
        them) the speech AUs the user did not set follow the audio (emogs.model.speech_aus)."""
        F = plan.num_frames
        mc = self.model.cfg
        rows, rpf = audio_feature_rows(wav, mc.audio_feature)
        au = self.effective_au(plan, rows, rpf, speech_aus)
        au = self.clamp_to_training(au) if clamp else au
        dev, S = self.device, self.size
        w2c = torch.as_tensor(plan.resolve_pose(self.train_w2c).world_to_cam, dtype=torch.float32, device=dev)
        K = torch.as_tensor(self.K, device=dev)
        bg = torch.as_tensor(self.background, device=dev)
        backend = getattr(self.cfg, "backend", "auto")
        for s in range(0, F, chunk):
            ids = np.arange(s, min(F, s + chunk))
            aud = torch.as_tensor(audio_windows(rows, rpf, ids, mc.audio_window), device=dev)  # (C, R, D)
            auw = torch.as_tensor(au_windows(au, ids, mc.au_window), device=dev)  # (C, T, 17)
            calls = ((w2c[ids[j]], K.expand(len(ids[j]), 3, 3), aud[j], auw[j], bg.expand(len(ids[j]), -1, -1, -1))
                     for j in (slice(i, min(len(ids), i + batch)) for i in range(0, len(ids), batch)))
            outs = list(self.renderer.run(calls, S, S, backend))  # uint8 (b, S, S, 3) on the device
            for fr in torch.cat(outs).cpu().numpy():
                yield fr
            if progress:
                progress(int(ids[-1]) + 1, F)

    def render(self, audio: str | Path | np.ndarray, out: str | Path | None = None, *, au: Any = None,
               emotion: str | None = None, au_timeline: str | Path | None = None,
               au_from: str | Path | None = None, pose: str = "training", pose_from: str | Path | None = None,
               base: str = "default", blinks: bool = True, blink_seed: int = 0, allow_silent: bool = False,
               side_by_side: bool = False, plan=None, batch: int = 8, quiet: bool = False,
               allow_extrapolation: bool = False, speech_aus: bool = True, overwrite: bool = True
               ) -> np.ndarray | RenderResult:
        """Render speech with controls. `audio`: a file (any format FFmpeg reads, a video's audio track
        too) or 16 kHz mono float32 samples. Returns frames (F, H, W, 3) uint8 when `out` is None, else
        writes an H.264 MP4 with the audio muxed in and returns a RenderResult. `out` is checked before
        any work (check_render_output); an existing file is replaced only with `overwrite`."""
        from emogs.io.media import frames_for_audio, load_audio, write_video

        t0 = time.time()
        log = (lambda *a: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
        if batch < 1:
            raise InputError(f"batch must be at least 1, got {batch}")
        if out is not None:
            check_render_output(out, self.run_dir, [audio, au_timeline, au_from, pose_from], overwrite)
        wav = load_audio(audio, SAMPLE_RATE, warn=lambda m: log(f"warning: {m}")) \
            if isinstance(audio, (str, Path)) else np.asarray(audio, np.float32)
        check_speech(wav, allow_silent)
        F = frames_for_audio(len(wav), SAMPLE_RATE, FPS)
        if plan is None:
            plan = self.plan(F, au=au, emotion=emotion, timeline=au_timeline, au_from=au_from, pose=pose,
                             pose_from=pose_from, base=base, blinks=blinks, blink_seed=blink_seed)
        elif plan.num_frames != F:
            raise InputError(f"the control plan has {plan.num_frames} frames, the audio needs {F}")
        if allow_extrapolation:
            log(plan.summary())
        else:  # the table shows what the model receives: the plan clamped to the training range
            sent = self.clamp_to_training(plan.au, warn=lambda m: log(f"warning: {m}"))
            log(plan.summary(sent=sent))
        if speech_aus and self.speech is not None:
            log(f"  speech AUs ({', '.join(self.speech.info.get('driven', [])) or 'none'}) follow the audio where "
                "not set by the user (added to the values above, then clamped)")

        def progress(done: int, total: int) -> None:
            el = time.time() - t0
            log(f"[render] {done}/{total} frames ({done / max(el, 1e-9):.1f} fps)")

        gen = self.frames(wav, plan, batch=batch, progress=progress, clamp=not allow_extrapolation,
                          speech_aus=speech_aus)
        if out is None:
            return np.stack(list(gen))
        out = Path(out)
        if side_by_side:
            frames = np.stack(list(gen))
            from emogs.control.plot import side_by_side_frames

            gen = side_by_side_frames(frames, plan.au, plan.au_names, FPS)
        n = write_video(out, gen, FPS, audio=wav, sample_rate=SAMPLE_RATE)
        if n != F:
            raise RuntimeError(f"wrote {n} frames, expected {F}")
        dt = time.time() - t0
        log(f"[render] wrote {out}: {n} frames, {n / FPS:.2f} s, in {dt:.1f} s")
        return RenderResult(n, dt, out, plan.summary(), plan.au)
