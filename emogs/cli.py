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


def _run_analyze(a: argparse.Namespace) -> None:
    from emogs.face.analyze import analyze_video

    analyze_video(a.video, a.output, landmarks=a.landmarks)


# --- prepare ---------------------------------------------------------------------------------------
def _args_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", type=Path, help="video of one person talking, with audio")
    p.add_argument("-o", "--output", type=Path, required=True, help="dataset folder to create")
    p.add_argument("--size", type=int, default=512, help="square crop size in pixels (default 512)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="last fraction of frames held out (min 2 s)")
    p.add_argument("--no-whisper", action="store_true", help="skip Whisper features (log-mel only)")
    p.add_argument("--max-seconds", type=float, default=None, help="use only the first N seconds")
    p.add_argument("--force", action="store_true", help="redo finished stages")


def _run_prepare(a: argparse.Namespace) -> None:
    from emogs.data.prepare import PrepareConfig, prepare

    cfg = PrepareConfig(size=a.size, test_fraction=a.test_fraction, whisper=not a.no_whisper,
                        max_seconds=a.max_seconds)
    prepare(a.video, a.output, cfg, force=a.force)


COMMANDS = {
    "analyze": (_args_analyze, _run_analyze, "per-frame AUs, blendshapes, head pose (OpenFace-like CSV)"),
    "prepare": (_args_prepare, _run_prepare, "turn a talking-head video into a training dataset"),
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
