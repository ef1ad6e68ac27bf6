"""`emogs render` control flags: `add_control_args(parser)` and `controls_from_args(args, num_frames)`.

Everything here is independent of the model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from typing import TYPE_CHECKING

from emogs.control.defaults import DEFAULT_EASE, EMOTION_NAMES
from emogs.errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from emogs.control.plan import ControlPlan



def _warn_stderr(msg: str) -> None:
    print(f"emogs render: warning: {msg}", file=sys.stderr)


def add_control_args(p: argparse.ArgumentParser) -> None:
    """Add the expression and pose control flags (an argument group) to a parser."""
    g = p.add_argument_group("expression and pose controls (docs/controls.md)")
    g.add_argument("--au", action="append", default=[], metavar="AU=V[@S-E]",
                   help="set an AU intensity in [0, 1] for the whole clip (AU12=0.8) or a time range in seconds "
                        "(AU01=1.0@2.0-4.0, END may be 'end'); repeatable, comma lists allowed; wins over all else")
    g.add_argument("--au-ease", type=float, default=DEFAULT_EASE, metavar="SECONDS",
                   help=f"ease-in/out ramp of time-ranged --au values (smoothstep; default {DEFAULT_EASE})")
    g.add_argument("--au-timeline", type=Path, metavar="FILE",
                   help="AU keyframes: CSV with time|frame + AU columns (the `emogs analyze` layout), or JSON/YAML "
                        "{\"keyframes\": [{\"time\": 1.0, \"AU12\": 0.5}, ...]}; linear, ends held")
    g.add_argument("--au-from", type=Path, metavar="VIDEO",
                   help="take the AU tracks of another video (or its `emogs analyze` CSV): expression transfer")
    g.add_argument("--emotion", metavar="NAME[:I]",
                   help=f"FACS/EMFACS emotion preset, intensity I in [0, 1] (default 1): {'|'.join(EMOTION_NAMES)}")
    g.add_argument("--base", choices=("default", "neutral"), default="default",
                   help="expression under the controls: the model's default (training-mean AUs) or neutral")
    g.add_argument("--no-blinks", action="store_true", help="do not add natural blinks when the AU tracks have none")
    g.add_argument("--blink-seed", type=int, default=0, metavar="N", help="random seed of the generated blinks (default 0)")
    g.add_argument("--pose", choices=("training", "static"), default=None,
                   help="head pose: replay the training poses, mirror-looped (default), or the static median pose")
    g.add_argument("--pose-from", type=Path, metavar="VIDEO",
                   help="head motion of another video (or its analysis CSV), relative to its median pose")
    g.add_argument("--from-end", choices=("loop", "hold"), default="loop",
                   help="when --au-from / --pose-from is shorter than the audio: mirror-loop it (default) or hold "
                        "its last frame")


def check_control_args(args: argparse.Namespace, num_frames: int, fps: float = 25.0) -> None:
    """Every control flag parsed and checked, fast (no analysis, no model): InputError on the first problem.
    `emogs render` calls it before it loads the model, so a typo fails in a second."""
    from emogs.control.plan import check_controls

    if args.pose is not None and args.pose_from is not None:
        raise InputError(f"--pose {args.pose} and --pose-from: choose one")
    check_controls(num_frames, fps, au=args.au, ease=args.au_ease, timeline=args.au_timeline, au_from=args.au_from,
                   from_end=args.from_end, emotion=args.emotion, base=args.base, pose=args.pose or "training",
                   pose_from=args.pose_from)


def controls_from_args(args: argparse.Namespace, num_frames: int, fps: float = 25.0,
                       default_au: np.ndarray | None = None,
                       warn: Callable[[str], None] | None = _warn_stderr) -> ControlPlan:
    """Parsed args -> ControlPlan (au (F, 17), mask (F, 17), pose request, summary()). Warnings go to `warn`
    (stderr by default) and stay in plan.warnings. `default_au`: the model's training-mean AUs (17,)."""
    from emogs.control.plan import build_plan

    if args.pose is not None and args.pose_from is not None:
        raise InputError(f"--pose {args.pose} and --pose-from: choose one")
    plan = build_plan(num_frames, fps, au=args.au, ease=args.au_ease, timeline=args.au_timeline,
                      au_from=args.au_from, from_end=args.from_end, emotion=args.emotion, base=args.base,
                      default_au=default_au, blinks=not args.no_blinks, blink_seed=args.blink_seed,
                      pose=args.pose or "training", pose_from=args.pose_from)
    if warn is not None:
        for w in plan.warnings:
            warn(w)
    return plan
