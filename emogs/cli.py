"""The `emogs` command. Thin: parse arguments, call the room that does the work, print one-line errors.

Each subcommand is a pair `_args_<name>(parser)` / `_run_<name>(args)`; imports are lazy so
`emogs --help` is instant.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emogs import __version__
from emogs.errors import EmogsError


# --- analyze ---------------------------------------------------------------------------------------
def _args_analyze(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", type=Path, help="input video (any format FFmpeg reads)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output CSV (OpenFace-like layout)")
    p.add_argument("--landmarks", action="store_true", help="also write the 478 2D landmarks (x_i, y_i columns)")
    p.add_argument("--au-source", choices=("blendshapes", "mesh"), default="blendshapes",
                   help="AUs from MediaPipe's blendshapes (default) or read from an ICT-FaceKit fit of the clip")


def _run_analyze(a: argparse.Namespace) -> None:
    from emogs.face.analyze import analyze_video

    analyze_video(a.video, a.output, landmarks=a.landmarks, au_source=a.au_source)


# --- prepare ---------------------------------------------------------------------------------------
def _args_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", type=Path, help="video of one person talking, with audio")
    p.add_argument("-o", "--output", type=Path, required=True, help="dataset folder to create")
    p.add_argument("--size", type=int, default=512, help="square crop size in pixels (default 512)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="last fraction of frames held out (min 2 s)")
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
    p.add_argument("--face-model", choices=("auto", "mediapipe", "ict"), default="auto",
                   help="head model: mediapipe canonical mesh (auto = mediapipe; ict is not implemented yet)")


def _run_synth(a: argparse.Namespace) -> None:
    from emogs.synth.generate import DEFAULT_TEXT, SynthConfig, synth

    synth(a.output, SynthConfig(text=a.text or DEFAULT_TEXT, voice=a.voice, events=a.events, size=a.size, seed=a.seed,
                                head_motion=a.head_motion, face_model=a.face_model))


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
    add_control_args(p)


def _run_render(a: argparse.Namespace) -> None:
    from emogs.avatar import Avatar
    from emogs.control.cli_args import controls_from_args
    from emogs.io.media import frames_for_audio, load_audio

    av = Avatar.load(a.run, device=a.device, size=a.size, inference=a.inference)
    wav = load_audio(a.audio, 16000)
    plan = controls_from_args(a, frames_for_audio(len(wav)), fps=25, default_au=av.default_au)
    av.render(wav, a.output, plan=plan, allow_silent=a.allow_silent, side_by_side=a.side_by_side, batch=a.batch,
              allow_extrapolation=a.allow_extrapolation, speech_aus=not a.no_speech_aus)


# --- train -----------------------------------------------------------------------------------------
def _args_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", type=Path, help="dataset folder made by `emogs prepare`")
    p.add_argument("-o", "--output", type=Path, required=True, help="run folder (resumed if it has a checkpoint)")
    p.add_argument("--iters", type=int, default=None, help="training iterations (rescales the stage schedule)")
    p.add_argument("--variant", choices=["audio", "au", "au_szpab", "au_citae", "full"], default=None,
                   help="ablation: audio only, +AU, +AU+SZ-PAB, +AU+CIT-AE, full (default)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: CUDA (gsplat, 512 px preset) when available, else CPU (small preset)")
    p.add_argument("--config-json", default=None,
                   help="config overrides: a JSON file or JSON text, nested or dotted keys (e.g. '{\"resolution\": 256}')")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run folder")


def _run_train(a: argparse.Namespace) -> None:
    import json

    from emogs.errors import InputError
    from emogs.train.config import build_config
    from emogs.train.loop import train

    overrides = None
    if a.config_json:
        src = Path(a.config_json)
        text = src.read_text() if src.is_file() else a.config_json
        try:
            overrides = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"--config-json: not JSON ({e})") from None
    if a.no_resume and (a.output / "checkpoints").exists():
        raise InputError(f"{a.output}: already holds a run (drop --no-resume to continue it)")
    try:
        cfg = build_config(a.device, a.iters, a.variant, overrides)
    except (ValueError, TypeError) as e:
        raise InputError(f"config: {e}") from None
    train(a.dataset, a.output, cfg, resume=not a.no_resume)


# --- eval ------------------------------------------------------------------------------------------
def _eval_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--emotion", default=None,
                   help="requested/ground-truth emotion for e_score (angry disgust fear happy sad surprise neutral)")
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
    _eval_common(p)


def _run_eval(a: argparse.Namespace) -> None:
    from emogs.eval.run import eval_run

    print(eval_run(a.run, a.split, a.output, a.emotion, _eval_options(a)))


def _args_eval_videos(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred", type=Path, help="predicted (rendered) video; its audio is used for the sync score")
    p.add_argument("gt", type=Path, help="ground-truth video, frame-aligned with the prediction")
    p.add_argument("-o", "--output", type=Path, default=Path("eval_report"), help="report folder (default eval_report)")
    _eval_common(p)


def _run_eval_videos(a: argparse.Namespace) -> None:
    from emogs.eval.run import eval_videos

    print(eval_videos(a.pred, a.gt, a.output, a.emotion, _eval_options(a)))


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


COMMANDS = {
    "analyze": (_args_analyze, _run_analyze, "per-frame AUs, blendshapes, head pose (OpenFace-like CSV)"),
    "prepare": (_args_prepare, _run_prepare, "turn a talking-head video into a training dataset"),
    "train": (_args_train, _run_train, "train an AU-controllable 3DGS talking head on a prepared dataset"),
    "render": (_args_render, _run_render, "drive a trained head with new speech and AU / emotion / pose controls"),
    "synth": (_args_synth, _run_synth, "synthetic talking head with exact AU / blendshape ground truth"),
    "eval": (_args_eval, _run_eval, "metrics report of a training run (PSNR/SSIM/LPIPS, LMD, CSIM, AUE, sync, ...)"),
    "eval-videos": (_args_eval_videos, _run_eval_videos, "metrics report of a predicted video against ground truth"),
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command][1](args)
    except EmogsError as e:
        if args.debug:
            raise
        print(f"emogs {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
