"""The `emogs` command. Thin: parse arguments, call the room that does the work, print one-line errors.

Each subcommand is a pair `_args_<name>(parser)` / `_run_<name>(args)`; imports are lazy so
`emogs --help` is instant. The rules every command follows (one-line errors, exit 2, outputs checked
before work, --force to replace a finished output, threads): docs/errors.md.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from emogs import __version__
from emogs.errors import EmogsError


# --- analyze ---------------------------------------------------------------------------------------
def _args_analyze(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", type=Path, help="input video (any format FFmpeg reads)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output CSV (OpenFace-like layout)")
    p.add_argument("--landmarks", action="store_true", help="also write the 478 2D landmarks (x_i, y_i columns)")
    p.add_argument("--force", action="store_true", help="replace an existing output CSV")
    p.add_argument("--au-source", choices=("blendshapes", "mesh"), default="blendshapes",
                   help="AUs from MediaPipe's blendshapes (default) or read from an ICT-FaceKit fit of the clip")


def _run_analyze(a: argparse.Namespace) -> None:
    from emogs.face.analyze import analyze_video

    analyze_video(a.video, a.output, landmarks=a.landmarks, overwrite=a.force, au_source=a.au_source)


# --- prepare ---------------------------------------------------------------------------------------
def _args_prepare(p: argparse.ArgumentParser) -> None:
    from emogs.data.prepare import PrepareConfig

    d = PrepareConfig()
    p.add_argument("video", type=Path, help="video of one person talking, with audio")
    p.add_argument("-o", "--output", type=Path, required=True, help="dataset folder to create")
    p.add_argument("--size", type=int, default=d.size, help=f"square crop size in pixels (default {d.size})")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction,
                   help=f"last fraction of frames held out (default {d.test_fraction}, at least {d.min_test_seconds:g} s)")
    p.add_argument("--no-whisper", action="store_true", help="skip Whisper features (log-mel only)")
    p.add_argument("--max-seconds", type=float, default=None, help="use only the first N seconds")
    p.add_argument("--mesh", choices=("auto", "on", "off"), default="auto",
                   help="fit the ICT-FaceKit face mesh (mesh.npz); auto = when the model is found (default)")
    p.add_argument("--force", action="store_true", help="redo finished stages")


def _run_prepare(a: argparse.Namespace) -> None:
    from emogs.data.prepare import PrepareConfig, prepare

    cfg = PrepareConfig(size=a.size, test_fraction=a.test_fraction, whisper=not a.no_whisper,
                        max_seconds=a.max_seconds, mesh=a.mesh)
    prepare(a.video, a.output, cfg, force=a.force)


# --- fer-features ----------------------------------------------------------------------------------
def _args_fer(p: argparse.ArgumentParser) -> None:
    p.add_argument("datasets", type=Path, nargs="+", help="prepared dataset folders")
    p.add_argument("--force", action="store_true", help="recompute when DATASET/fer.npz exists")


def _run_fer(a: argparse.Namespace) -> None:
    from emogs.data.dataset import load_manifest
    from emogs.data.fer_features import FER_FILE, compute_fer_features, ensure_fer_features, write_fer_features

    for d in a.datasets:
        load_manifest(d)
        if a.force:
            write_fer_features(d, compute_fer_features(d, log=print))
        else:
            ensure_fer_features(d)
        print(f"{d / FER_FILE}")


# --- synth -----------------------------------------------------------------------------------------
def _args_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output video (.mp4); VIDEO.gt.csv and VIDEO.events.json are written beside it")
    p.add_argument("--text", default=None, help="sentence to speak (espeak-ng; default: a built-in sentence)")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice (default en-us)")
    p.add_argument("--events", default="default",
                   help="scripted expressions 'kind:start-end[:amplitude],...' with kinds brow_raise, frown, "
                        "smile; 'none' for none (default: brow_raise:1.0-2.2:0.9,frown:3.2-4.4:0.9,smile:5.4-6.8:0.9)")
    p.add_argument("--size", type=int, default=512, help="frame size in pixels (square, default 512)")
    p.add_argument("--seed", type=int, default=0, help="random seed (blinks, head motion, texture)")
    p.add_argument("--head-motion", type=float, default=1.0, help="scale of the head pose noise (0 = still)")
    p.add_argument("--face-model", choices=("auto", "mediapipe"), default="auto",
                   help="head model: the MediaPipe canonical face mesh (auto = mediapipe)")
    p.add_argument("--force", action="store_true", help="replace existing output files")


def _run_synth(a: argparse.Namespace) -> None:
    from emogs.synth.generate import DEFAULT_TEXT, SynthConfig, synth

    synth(a.output, SynthConfig(text=a.text or DEFAULT_TEXT, voice=a.voice, events=a.events, size=a.size, seed=a.seed,
                                head_motion=a.head_motion, face_model=a.face_model), overwrite=a.force)


# --- render ----------------------------------------------------------------------------------------
def _args_render(p: argparse.ArgumentParser) -> None:
    from emogs.control.cli_args import add_control_args

    p.add_argument("run", type=Path, help="trained run folder (from `emogs train`)")
    p.add_argument("--audio", type=Path, required=True,
                   help="speech: wav/mp3/m4a/flac or a video's audio track; any rate, mono or stereo, any length")
    p.add_argument("-o", "--output", type=Path, required=True, help="output MP4 (H.264 + AAC, 25 fps)")
    p.add_argument("--side-by-side", action="store_true", help="render beside a plot of requested vs measured AUs")
    p.add_argument("--allow-silent", action="store_true", help="render silent audio (an idle head) instead of failing")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--batch", type=int, default=8, help="frames rendered per batch")
    p.add_argument("--size", type=int, default=None, help="output size in pixels (default: the run's resolution)")
    p.add_argument("--allow-extrapolation", action="store_true",
                   help="do not clamp AUs to the range the training clip shows (the face may break)")
    p.add_argument("--no-speech-aus", action="store_true",
                   help="hold the speech AUs (AU17/20/23/25/26) at the plan's values instead of following the audio")
    p.add_argument("--inference", default="auto", choices=["auto", "eager", "graph", "graph-bf16"],
                   help="deformation on CUDA: CUDA-graph replay (auto = graph on CUDA, eager on CPU)")
    p.add_argument("--force", action="store_true", help="replace an existing output video")
    p.add_argument("--upper-drive", default="both", choices=["both", "table", "branch"],
                   help="EmoTaG (emotag) runs: how --emotion and upper-face AU edits reach the face mesh: the AU table "
                        "and the motion network's residual branch (both, default), the table only, or the branch only "
                        "(the table then moves only the lower face)")
    p.add_argument("--au-drive", default="auto", choices=["auto", "table", "person"],
                   help="mesh heads: how far AU edits move the face mesh: the run's person-calibrated gains "
                        "(au_drive.json, `emogs calibrate-drive`) or the AU table's (auto: the run's when it has them)")
    add_control_args(p)


def _run_render(a: argparse.Namespace) -> None:
    from emogs.avatar import Avatar, check_render_output, check_speech
    from emogs.constants import FPS, SAMPLE_RATE
    from emogs.control.cli_args import check_control_args, controls_from_args
    from emogs.errors import InputError
    from emogs.io.media import frames_for_audio, load_audio
    from emogs.io.paths import input_dir

    # every argument is checked before the model loads (seconds), the output last of all
    if a.batch < 1:
        raise InputError(f"--batch must be at least 1, got {a.batch}")
    if a.size is not None and not 16 <= a.size <= 4096:
        raise InputError(f"--size {a.size} out of range (16-4096)")
    input_dir(a.run, "the run (made by `emogs train`)")
    wav = load_audio(a.audio, SAMPLE_RATE, warn=lambda m: print(f"emogs render: warning: {m}", file=sys.stderr))
    check_speech(wav, a.allow_silent)
    check_control_args(a, frames_for_audio(len(wav)), fps=FPS)
    check_render_output(a.output, a.run, [a.audio, a.au_timeline, a.au_from, a.pose_from], overwrite=a.force)
    av = Avatar.load(a.run, device=a.device, size=a.size, inference=a.inference, au_drive=a.au_drive,
                     upper_drive=a.upper_drive)
    plan = controls_from_args(a, frames_for_audio(len(wav)), fps=FPS, default_au=av.default_au)
    av.render(wav, a.output, plan=plan, allow_silent=a.allow_silent, side_by_side=a.side_by_side, batch=a.batch,
              allow_extrapolation=a.allow_extrapolation, speech_aus=not a.no_speech_aus, overwrite=a.force)


# --- train -----------------------------------------------------------------------------------------
def _args_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", type=Path, help="dataset folder made by `emogs prepare`")
    p.add_argument("-o", "--output", type=Path, required=True, help="run folder (resumed if it has a checkpoint)")
    p.add_argument("--iters", type=int, default=None, help="training iterations (rescales the stage schedule)")
    from emogs.model.config import MODEL_KINDS, VARIANTS

    p.add_argument("--model", choices=list(MODEL_KINDS), default=None, dest="model_kind",
                   help="free: Gaussians deformed by the network alone; mesh: Gaussians bound to the person's fitted "
                        "ICT-FaceKit face mesh, so AU edits work beyond the training clip (needs a dataset prepared "
                        "with the mesh fit); emotag: the few-shot head (docs/fewshot.md) on one person from scratch. "
                        "Default: the preset's (docs/training.md)")
    p.add_argument("--variant", choices=list(VARIANTS), default=None,
                   help="ablation: audio only, +AU, +AU+SZ-PAB, +AU+CIT-AE, full (default)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: CUDA (gsplat, 512 px preset) when available, else CPU (small preset)")
    p.add_argument("--config-json", default=None,
                   help="config overrides: a JSON file or JSON text, nested or dotted keys (e.g. '{\"resolution\": 256}')")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run folder")


def _run_train(a: argparse.Namespace) -> None:
    from emogs.errors import InputError
    from emogs.train.config import build_config
    from emogs.train.loop import train

    overrides = _json_overrides(a.config_json)
    if a.model_kind is not None:
        overrides = {**(overrides or {}), "model.kind": a.model_kind}
    from emogs.io.paths import output_dir

    output_dir(a.output, inputs=[a.dataset], what="run folder")  # a file, read-only, or the dataset itself
    try:
        cfg = build_config(a.device, a.iters, a.variant, overrides)
    except (ValueError, TypeError) as e:
        raise InputError(f"config: {e}") from None
    train(a.dataset, a.output, cfg, resume=not a.no_resume)


# --- eval ------------------------------------------------------------------------------------------
def _eval_common(p: argparse.ArgumentParser) -> None:
    from emogs.control.cli_args import EMOTION_NAMES

    p.add_argument("--emotion", default=None,
                   help="requested/ground-truth emotion for e_score, named as in `emogs render --emotion`: "
                        f"{'|'.join(EMOTION_NAMES)} (contempt has no FER2013 class: e_score n/a)")
    p.add_argument("--force", action="store_true", help="replace an earlier report in the output folder")
    p.add_argument("--lpips-net", choices=["alex", "vgg"], default="alex", help="LPIPS backbone (default alex)")
    p.add_argument("--image-stride", type=int, default=1, help="PSNR/SSIM/LPIPS on every k-th frame (default 1)")
    p.add_argument("--identity-stride", type=int, default=5, help="dlib identity on every k-th frame (default 5)")


def _eval_options(a: argparse.Namespace):
    from emogs.eval.suite import EvalOptions

    return EvalOptions(emotion=a.emotion, lpips_net=a.lpips_net, image_stride=a.image_stride,
                       identity_stride=a.identity_stride, progress=True)


def _args_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="training run folder (reads RUN/<split>_render.mp4: render | ground truth)")
    p.add_argument("--split", default="test", help="split whose side-by-side render to evaluate (default test)")
    p.add_argument("-o", "--output", type=Path, default=None, help="report folder (default RUN/eval_<split>)")
    p.add_argument("--dataset", type=Path, default=None,
                   help="the dataset the run was trained on, for per-region errors (default: the folder named "
                        "in RUN/dataset.json, when it is there)")
    _eval_common(p)


def _run_eval(a: argparse.Namespace) -> None:
    from emogs.eval.run import eval_run

    print(eval_run(a.run, a.split, a.output, a.emotion, _eval_options(a), overwrite=a.force, dataset=a.dataset))


def _args_eval_videos(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred", type=Path, help="predicted (rendered) video; its audio is used for the sync score")
    p.add_argument("gt", type=Path, help="ground-truth video, frame-aligned with the prediction")
    p.add_argument("-o", "--output", type=Path, default=Path("eval_report"), help="report folder (default eval_report)")
    _eval_common(p)


def _run_eval_videos(a: argparse.Namespace) -> None:
    from emogs.eval.run import eval_videos

    print(eval_videos(a.pred, a.gt, a.output, a.emotion, _eval_options(a), overwrite=a.force))


def _args_eval_table(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", type=Path, nargs="+", help="finished run folders (seeds of one configuration are grouped)")
    p.add_argument("-o", "--output", type=Path, default=Path("ablation_table.md"),
                   help="markdown table (default ablation_table.md; the numbers go to the same name with .json)")
    p.add_argument("--eval-dir", default="eval_test", help="`emogs eval` report folder inside each run (default eval_test)")
    p.add_argument("--controls-dir", default="eval_controls",
                   help="`emogs eval-controls` report folder inside each run (default eval_controls)")


def _run_eval_table(a: argparse.Namespace) -> None:
    from emogs.errors import InputError
    from emogs.eval.table import eval_table

    if a.output.suffix.lower() == ".json":
        raise InputError(f"{a.output}: give the markdown name (e.g. table.md); the .json is written beside it")
    out = eval_table(a.runs, a.output, a.eval_dir, a.controls_dir)
    print(out.read_text(encoding="utf-8"))
    print(f"wrote {out} and {out.with_suffix('.json')}")


def _args_eval_controls(p: argparse.ArgumentParser) -> None:
    from emogs.eval.controls import GOAL_AU, GOAL_EMOTION

    p.add_argument("run", type=Path, help="trained run folder (from `emogs train`)")
    p.add_argument("--audio", type=Path, required=True, help="speech to render every condition with (>= 1 s)")
    p.add_argument("--au", action="append", default=[], metavar="AU=V[@S-E]",
                   help="an AU edit to measure (repeatable: one condition each)")
    p.add_argument("--emotion", action="append", default=[], metavar="NAME[:I]",
                   help="an emotion preset to measure (repeatable: one condition each)")
    p.add_argument("--standard", action="store_true",
                   help="the standard suite: AU01 AU02 AU04 AU05 AU06 AU09 AU12 AU15 AU26 AU45 at 1.0 for 4 s, and "
                        "the surprised sad angry happy disgusted fear presets")
    p.add_argument("--au-noise", action="append", type=float, default=[], metavar="SD",
                   help="stress test: the plain controls with frame-level Gaussian noise of this sd on every AU track "
                        "(seeded); reports the AU-Jerk of the render against the plain render's (repeatable)")
    p.add_argument("-o", "--output", type=Path, default=None, help="report folder (default RUN/eval_controls)")
    p.add_argument("--size", type=int, default=None, help="render size in pixels (default: the run's resolution)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--allow-extrapolation", action="store_true", help="do not clamp AUs to the training range")
    p.add_argument("--no-speech-aus", action="store_true", help="hold the speech AUs at the plan's values")
    p.add_argument("--goal-au", type=float, default=GOAL_AU,
                   help=f"rise of the edited AU that counts as working (default {GOAL_AU})")
    p.add_argument("--goal-emotion", type=float, default=GOAL_EMOTION,
                   help=f"rise of each defining AU that counts as a working preset (default {GOAL_EMOTION})")
    p.add_argument("--id-stride", type=int, default=5, help="dlib identity on every k-th frame (default 5)")
    p.add_argument("--render-only", action="store_true",
                   help="only render the conditions into OUT/videos (e.g. on a GPU machine); measure later")
    p.add_argument("--measure-only", action="store_true",
                   help="measure the renders in OUT/videos made elsewhere (--render-only); the run needs no weights")
    p.add_argument("--force", action="store_true", help="replace an earlier report in the folder")
    p.add_argument("--rerender", action="store_true", help="render again even the videos whose settings match")
    p.add_argument("--au-drive", default="auto", choices=["auto", "table", "person"],
                   help="mesh heads: the AU drive gains to render with (see `emogs render --au-drive`)")


def _run_eval_controls(a: argparse.Namespace) -> None:
    from emogs.errors import InputError
    from emogs.eval.controls import ControlOptions, conditions_from_args, eval_controls
    from emogs.io.media import load_audio

    if a.size is not None and not 16 <= a.size <= 4096:
        raise InputError(f"--size {a.size} out of range (16-4096)")
    duration = len(load_audio(a.audio, 16000)) / 16000
    conds = conditions_from_args(a.au, a.emotion, a.standard, duration, a.au_noise)
    opts = ControlOptions(size=a.size, device=a.device, allow_extrapolation=a.allow_extrapolation,
                          speech_aus=not a.no_speech_aus, goal_au=a.goal_au, goal_emotion=a.goal_emotion,
                          id_stride=a.id_stride, rerender=a.rerender, au_drive=a.au_drive)
    if a.render_only and a.measure_only:
        raise InputError("--render-only and --measure-only: choose one")
    print(eval_controls(a.run, a.audio, a.output or a.run / "eval_controls", conds, opts, render_only=a.render_only,
                        overwrite=a.force, measure_only=a.measure_only))


def _args_eval_speech(p: argparse.ArgumentParser) -> None:
    from emogs.eval.speech import GOAL_SPREAD, GOAL_SYNC

    p.add_argument("run", type=Path, help="trained run folder (from `emogs train`)")
    p.add_argument("--audio", type=Path, nargs="+", action="extend", required=True, metavar="SPEECH",
                   help="driving speech of other people (one or more files, >= 1 s each)")
    p.add_argument("-o", "--output", type=Path, default=None, help="report folder (default RUN/eval_speech)")
    p.add_argument("--dataset", type=Path, default=None,
                   help="the run's DATASET, for the real video's test split (default: where the run was trained from)")
    p.add_argument("--size", type=int, default=None, help="render size in pixels (default: the run's resolution)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--no-own-audio", action="store_true", help="skip the render on the run's own test-split audio")
    p.add_argument("--goal-spread", type=float, default=GOAL_SPREAD,
                   help=f"largest |mouth spread / real - 1| that meets the goal (default {GOAL_SPREAD})")
    p.add_argument("--goal-sync", type=float, default=GOAL_SYNC,
                   help=f"smallest lipsync_conf / real that meets the goal (default {GOAL_SYNC})")
    p.add_argument("--force", action="store_true", help="replace an earlier report in the folder")
    p.add_argument("--rerender", action="store_true", help="render again even the videos whose settings match")
    p.add_argument("--render-only", action="store_true",
                   help="render the videos and stop (a machine without MediaPipe); the same command without it "
                        "reuses them and measures")
    p.add_argument("--measure-only", action="store_true",
                   help="measure RUN/eval_speech/videos rendered elsewhere with --render-only, without the weights")


def _run_eval_speech(a: argparse.Namespace) -> None:
    from emogs.eval.speech import SpeechEvalOptions, eval_speech

    opts = SpeechEvalOptions(size=a.size, device=a.device, rerender=a.rerender, own_audio=not a.no_own_audio,
                             goal_spread=a.goal_spread, goal_sync=a.goal_sync, render_only=a.render_only,
                             measure_only=a.measure_only)
    print(eval_speech(a.run, a.audio, a.output or a.run / "eval_speech", a.dataset, opts, overwrite=a.force))


# --- export ----------------------------------------------------------------------------------------
def _args_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="trained run folder (from `emogs train`)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .ply (standard 3DGS layout)")
    p.add_argument("--au", action="append", default=[], metavar="AU=V", help="AU intensity of the exported face")
    p.add_argument("--emotion", default=None, metavar="NAME[:I]", help="emotion preset of the exported face")
    p.add_argument("--audio", type=Path, default=None, help="take the mouth from this speech at --time")
    p.add_argument("--time", type=float, default=0.0, help="seconds into --audio (default 0)")
    p.add_argument("--canonical", action="store_true", help="the canonical Gaussians, before any deformation")


def _run_export(a: argparse.Namespace) -> None:
    from emogs.avatar import Avatar

    av = Avatar.load(a.run, device="cpu")
    print(av.export_ply(a.output, au=a.au or None, emotion=a.emotion, audio=a.audio, time=a.time,
                        canonical=a.canonical))


# --- demo ------------------------------------------------------------------------------------------
def _args_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    p.add_argument("--video", type=Path, default=None,
                   help="your own talking-head video (one person, with audio) instead of the synthetic subject")
    p.add_argument("--quick", action="store_true", help="CI-sized configuration (a few minutes on 2 CPU cores)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA (gpu_config, 512 px) when available, else CPU (small config)")


def _run_demo(a: argparse.Namespace) -> None:
    from emogs.demo import run_demo

    run_demo(a.output, video=a.video, quick=a.quick, device=a.device)


# --- studio ----------------------------------------------------------------------------------------
def _args_studio(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="trained run folder (from `emogs train`)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other is reachable from elsewhere: a warning)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--size", type=int, default=None,
                   help="render size in pixels (default: the run's resolution on a GPU, at most 256 on a CPU)")
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="largest speech upload (default 50 MB)")
    p.add_argument("--max-audio-seconds", type=float, default=600.0, help="longest speech (default 600 s)")
    p.add_argument("--jpeg-quality", type=int, default=85, help="JPEG quality of the streamed frames (default 85)")
    p.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads (default: PyTorch's choice)")


def _run_studio(a: argparse.Namespace) -> None:
    from emogs.studio.server import StudioConfig, serve

    if a.threads is not None:
        import torch

        torch.set_num_threads(max(1, a.threads))
    serve(a.run, StudioConfig(host=a.host, port=a.port, device=a.device, size=a.size, max_upload_mb=a.max_upload_mb,
                              max_audio_seconds=a.max_audio_seconds, jpeg_quality=a.jpeg_quality))


# --- pretrain / adapt (EmoTaG few-shot, docs/fewshot.md) -------------------------------------------------
def _json_overrides(text: str | None) -> dict | None:
    import json

    from emogs.errors import InputError

    if not text:
        return None
    try:
        if Path(text).is_dir():
            raise InputError(f"--config-json {text}: is a folder; give a JSON file or JSON text")
        is_file = len(text) < 4096 and Path(text).is_file()
    except OSError:  # JSON text too long for a file name
        is_file = False
    try:
        d = json.loads(Path(text).read_text() if is_file else text)
    except json.JSONDecodeError as e:
        raise InputError(f"--config-json: not JSON ({e})") from None
    if not isinstance(d, dict):
        raise InputError("--config-json: must be a JSON object of settings")
    return d


def _args_pretrain(p: argparse.ArgumentParser) -> None:
    p.add_argument("datasets", type=Path, nargs="+", help="mesh datasets (`emogs prepare` with the ICT-FaceKit fit), "
                                                          "one per identity")
    p.add_argument("-o", "--output", type=Path, required=True, help="BASE folder (resumed from its last checkpoint)")
    p.add_argument("--steps", type=int, default=None, help="total pretraining steps (rescales the stage schedule)")
    p.add_argument("--budget-s", type=float, default=0.0, help="stop (checkpoint) after this many wall seconds; "
                                                                "run again to resume")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--config-json", default=None, help="config overrides (JSON file or text), as `emogs train`")


def _run_pretrain(a: argparse.Namespace) -> None:
    from emogs.errors import InputError
    from emogs.io.paths import output_dir
    from emogs.train.config import build_config
    from emogs.train.fewshot import pretrain

    if a.steps is not None and a.steps < 1:
        raise InputError(f"--steps must be at least 1, got {a.steps}")
    output_dir(a.output, inputs=a.datasets, what="base folder")
    over = {**(_json_overrides(a.config_json) or {}), "model.kind": "emotag"}
    try:
        cfg = build_config(a.device, a.steps, None, over)
    except (ValueError, TypeError) as e:
        raise InputError(f"config: {e}") from None
    pretrain(a.datasets, a.output, cfg, budget_s=a.budget_s)


def _args_adapt(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", type=Path, help="BASE folder made by `emogs pretrain`")
    p.add_argument("dataset", type=Path, help="the new person's mesh dataset")
    p.add_argument("-o", "--output", type=Path, required=True, help="run folder (an ordinary run: render, eval, export)")
    p.add_argument("--seconds", type=float, default=5.0, help="use only the first N seconds of the train split "
                                                                "(default 5)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, default=None, help="adaptation iterations")
    g.add_argument("--budget-s", type=float, default=0.0, help="wall seconds of adaptation (iterations fitted to it)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--config-json", default=None, help="overrides of the non-model settings (JSON file or text)")
    p.add_argument("--net-lr-scale", type=float, default=0.1,
                   help="the shared networks' learning rate relative to per-person training (default 0.1)")
    p.add_argument("--reset-opacity", action="store_true",
                   help="start the base's Gaussians at a new head's opacity instead of the base's")
    p.add_argument("--base-shell", action="store_true",
                   help="keep the base's hair/neck shell (default: make the person's own from their frames)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run folder")


def _run_adapt(a: argparse.Namespace) -> None:
    from emogs.errors import InputError
    from emogs.io.paths import output_dir
    from emogs.train.fewshot import adapt

    if a.steps is not None and a.steps < 1:
        raise InputError(f"--steps must be at least 1, got {a.steps}")
    if not a.seconds > 0:
        raise InputError(f"--seconds must be positive, got {a.seconds}")
    if not a.net_lr_scale >= 0:
        raise InputError(f"--net-lr-scale must be at least 0, got {a.net_lr_scale}")
    output_dir(a.output, inputs=[a.dataset, a.base], what="run folder")
    try:
        adapt(a.base, a.dataset, a.output, seconds=a.seconds, iters=a.steps, budget_s=a.budget_s or 0.0,
              device=a.device, overrides=_json_overrides(a.config_json), resume=not a.no_resume,
              person_shell=not a.base_shell, net_lr_scale=a.net_lr_scale, reset_opacity=a.reset_opacity)
    except (ValueError, TypeError) as e:
        raise InputError(f"config: {e}") from None


def _args_calibrate_drive(p: argparse.ArgumentParser) -> None:
    from emogs.mesh.drive_calibration import DriveCalibrationConfig as C

    p.add_argument("run", type=Path, help="trained mesh run folder")
    p.add_argument("--dataset", type=Path, default=None,
                   help="the run's prepared dataset (tracks.npz + mesh.npz; default: the path the run records)")
    p.add_argument("--target", type=float, default=C.target,
                   help=f"share of the way from the plain reading to 1 an AU at 1.0 must read (default {C.target})")
    p.add_argument("--max-gain", type=float, default=C.max_gain, help=f"largest gain (default {C.max_gain})")
    p.add_argument("--aus", default=",".join(C.aus),
                   help="the AUs to calibrate, comma-separated (the others keep the AU table's gains; default: "
                        + ",".join(C.aus) + ")")
    p.add_argument("--print-only", action="store_true", help="print the gains, do not write RUN/au_drive.json")


def _run_calibrate_drive(a: argparse.Namespace) -> None:
    import json as _json

    import numpy as np

    from emogs.errors import InputError
    from emogs.mesh.drive_calibration import DriveCalibrationConfig, calibrate_dataset
    from emogs.run import open_run

    if not 0 < a.target <= 1:
        raise InputError(f"--target must be in (0, 1], got {a.target}")
    if not 1 <= a.max_gain <= 5:
        raise InputError(f"--max-gain must be in [1, 5], got {a.max_gain}")
    from emogs.mesh.drive_calibration import CALIBRATED_AUS

    aus = tuple(x.strip().upper() for x in a.aus.split(",") if x.strip())
    bad = [x for x in aus if x not in CALIBRATED_AUS]
    if not aus or bad:
        raise InputError(f"--aus {a.aus}: choose from {', '.join(CALIBRATED_AUS)}")
    run = open_run(a.run)
    if run.model_config().kind not in ("mesh", "emotag"):
        raise InputError(f"{run.path}: not a mesh-rigged run; only their AU edits drive a face mesh")
    ds = a.dataset or run.info().get("dataset", {}).get("root")
    if not ds or not Path(ds).is_dir():
        raise InputError(f"{run.path}: its dataset {ds or '(not recorded)'} is not here; give --dataset")
    man = Path(ds) / "manifest.json"
    if not man.is_file():
        raise InputError(f"{ds}: no manifest.json; give the run's prepared dataset")
    run.check_dataset(_json.loads(man.read_text()), ds, fix="give the run's own dataset with --dataset")
    info = run.dataset_info()
    res = calibrate_dataset(ds, np.asarray(info["au_mean"], np.float32),
                            DriveCalibrationConfig(target=a.target, max_gain=a.max_gain, aus=aus))
    res["dataset"] = str(ds)
    for au, r in res["aus"].items():
        print(f"{au}: gain {r['gain']:g}{'' if r['reached'] else ' (target not reached)'}  plain {r['plain']:.2f}  "
              f"rise at the table's gain {r['curve'][0][1]:+.2f}, at the chosen {r['curve'][-1][1]:+.2f}")
    if not a.print_only:
        run.write_au_drive(res)
        print(f"wrote {run.file('au_drive.json')}")
    else:
        print(_json.dumps(res["gains"]))


COMMANDS = {
    "analyze": (_args_analyze, _run_analyze, "per-frame AUs, blendshapes, head pose (OpenFace-like CSV)"),
    "prepare": (_args_prepare, _run_prepare, "turn a talking-head video into a training dataset"),
    "train": (_args_train, _run_train, "train an AU-controllable 3DGS talking head on a prepared dataset"),
    "pretrain": (_args_pretrain, _run_pretrain, "EmoTaG: pretrain a few-shot BASE on the mesh datasets of many people"),
    "adapt": (_args_adapt, _run_adapt, "EmoTaG: a new person's run from a BASE and a few seconds of their video"),
    "render": (_args_render, _run_render, "drive a trained head with new speech and AU / emotion / pose controls"),
    "studio": (_args_studio, _run_studio, "drive a trained head live in the browser: AU sliders, presets, any speech"),
    "fer-features": (_args_fer, _run_fer, "per-frame FER2013 scores (fer tflite) of a dataset, cached as "
                                          "DATASET/fer.npz (the EmoTaG emotion guidance reads them)"),
    "synth": (_args_synth, _run_synth, "synthetic talking head with exact AU / blendshape ground truth"),
    "eval": (_args_eval, _run_eval, "metrics report of a training run (PSNR/SSIM/LPIPS, LMD, CSIM, AUE, sync, ...)"),
    "eval-videos": (_args_eval_videos, _run_eval_videos, "metrics report of a predicted video against ground truth"),
    "eval-controls": (_args_eval_controls, _run_eval_controls,
                      "did my AU / emotion edit work? render plain and edited, measure what moved"),
    "eval-table": (_args_eval_table, _run_eval_table,
                   "the ablation table from saved runs: mean and spread over seeds per speaker and configuration"),
    "eval-speech": (_args_eval_speech, _run_eval_speech,
                    "does the mouth follow other people's speech? mouth spread and lip sync vs the real video"),
    "calibrate-drive": (_args_calibrate_drive, _run_calibrate_drive,
                        "mesh heads: AU drive gains at which this person's AU edits read as asked (au_drive.json)"),
    "export": (_args_export, _run_export, "export the head's Gaussians at an expression as a 3DGS .ply"),
    "demo": (_args_demo, _run_demo, "the whole pipeline on a synthetic subject (or --video): synth, prepare, train, "
                                    "render, eval -> index.html"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emogs", description="Audio-driven 3DGS talking heads with AU control.")
    parser.add_argument("--version", action="version", version=f"emogs {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, _run, help_text) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that `finally` blocks run (temporary files removed, train's
    checkpoint written)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _os_error_line(e: OSError) -> str:
    """A file-system error as one line: what failed, on which path, and what to do."""
    import errno

    where = f"{e.filename}" + (f" -> {e.filename2}" if getattr(e, "filename2", None) else "")
    why = e.strerror or type(e).__name__
    hint = {errno.ENOSPC: "free some disk space or write elsewhere", errno.EROFS: "write to a writable place",
            errno.EACCES: "check the permissions or write elsewhere", errno.EDQUOT: "free some disk quota"
            }.get(e.errno, "check the path")
    return f"{where}: {why.lower()}; {hint}"


def main(argv: list[str] | None = None) -> int:
    from emogs.runtime import configure_threads

    parser = build_parser()
    args = parser.parse_args(argv)
    old_term = None
    try:
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        pass
    try:
        configure_threads()  # threads that do not oversubscribe a busy machine (emogs.runtime)
        COMMANDS[args.command][1](args)
    except EmogsError as e:
        if args.debug:
            raise
        print(f"emogs {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file-system fault the checks could not foresee (disk full, ...)
        if args.debug or e.filename is None:
            raise
        print(f"emogs {args.command}: error: {_os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        term = isinstance(e, Terminated)
        print("terminated" if term else "interrupted", file=sys.stderr)
        return 143 if term else 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        from emogs.runtime import forget_env

        forget_env()
    return 0


if __name__ == "__main__":
    sys.exit(main())
