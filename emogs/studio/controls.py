"""The studio's control state: what the page's sliders, presets and switches say at one moment.

The page sends the whole state on every change; `Controls.from_message` checks every field (types, names,
ranges) and raises InputError with a one-line reason, so nothing unchecked reaches the renderer.
`ControlArrays` is that state laid over a whole speech clip through the same ControlPlan layers as
`emogs render` (base, emotion preset, AUs set by sliders, generated blinks), so a studio take and a render
with the exported timeline drive the model the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emogs.control.emotions import EMOTION_NAMES
from emogs.control.names import AU_NAMES
from emogs.control.parse import EmotionSpec
from emogs.control.plan import BASES
from emogs.errors import InputError

POSES = ("training", "static")
BLINK_SEED = 0  # the seed `emogs render` uses by default: the same blinks when a timeline leaves AU45 out
FIELDS = ("au", "emotion", "intensity", "blinks", "pose", "base", "clamp", "speech_aus")


def _unit(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise InputError(f"{what}: expected a number, got {type(x).__name__}")
    x = float(x)
    if not math.isfinite(x) or not 0.0 <= x <= 1.0:
        raise InputError(f"{what}: {x:g} is outside 0-1")
    return x


def _flag(x: Any, what: str) -> bool:
    if not isinstance(x, bool):
        raise InputError(f"{what}: expected true or false, got {type(x).__name__}")
    return x


def _choice(x: Any, options: tuple[str, ...], what: str) -> str:
    if not isinstance(x, str) or x not in options:
        raise InputError(f"{what}: {str(x)[:40]!r} is not one of {', '.join(options)}")
    return x


@dataclass(frozen=True)
class Controls:
    """au: the AUs the user set (pinned sliders), name -> value in [0, 1]; the others follow the base, the
    preset, blinks and speech. emotion: a preset name or None."""
    au: dict[str, float] = field(default_factory=dict)
    emotion: str | None = None
    intensity: float = 0.7
    blinks: bool = True
    pose: str = "training"
    base: str = "default"
    clamp: bool = True
    speech_aus: bool = True

    @classmethod
    def from_message(cls, msg: Any) -> "Controls":
        """A JSON object from the page -> Controls. Missing fields keep their defaults; unknown ones fail."""
        if not isinstance(msg, dict):
            raise InputError("controls: expected an object")
        extra = set(msg) - set(FIELDS)
        if extra:
            raise InputError(f"controls: unknown field(s) {', '.join(sorted(str(k)[:20] for k in extra)[:5])}")
        d = cls()
        au_in = msg.get("au", {})
        if not isinstance(au_in, dict) or len(au_in) > len(AU_NAMES):
            raise InputError("controls.au: expected an object of at most 17 AU values")
        au = {}
        for k, v in au_in.items():
            if k not in AU_NAMES:
                raise InputError(f"controls.au: unknown AU {str(k)[:20]!r} (valid: {' '.join(AU_NAMES)})")
            au[k] = _unit(v, f"controls.au.{k}")
        emotion = msg.get("emotion", d.emotion)
        if emotion in (None, ""):
            emotion = None
        else:
            emotion = _choice(emotion, EMOTION_NAMES, "controls.emotion")
        return cls(au={k: au[k] for k in AU_NAMES if k in au}, emotion=emotion,
                   intensity=_unit(msg.get("intensity", d.intensity), "controls.intensity"),
                   blinks=_flag(msg.get("blinks", d.blinks), "controls.blinks"),
                   pose=_choice(msg.get("pose", d.pose), POSES, "controls.pose"),
                   base=_choice(msg.get("base", d.base), BASES, "controls.base"),
                   clamp=_flag(msg.get("clamp", d.clamp), "controls.clamp"),
                   speech_aus=_flag(msg.get("speech_aus", d.speech_aus), "controls.speech_aus"))

    def to_message(self) -> dict:
        return {"au": dict(self.au), "emotion": self.emotion or "", "intensity": self.intensity,
                "blinks": self.blinks, "pose": self.pose, "base": self.base, "clamp": self.clamp,
                "speech_aus": self.speech_aus}

    def emotion_spec(self) -> EmotionSpec | None:
        return None if self.emotion is None else EmotionSpec(self.emotion, self.intensity)


@dataclass
class ControlArrays:
    """Controls laid over F frames: requested AUs (F, 17) and the user's share of them (F, 17) from the
    ControlPlan, plus the per-clip switches."""
    controls: Controls
    au: np.ndarray
    mask: np.ndarray

    @property
    def static(self) -> bool:
        return self.controls.pose == "static"


def control_arrays(avatar: Any, num_frames: int, controls: Controls) -> ControlArrays:
    """Controls -> ControlArrays through `Avatar.plan` (the layers of `emogs render`)."""
    c = controls
    plan = avatar.plan(num_frames, au=dict(c.au) or None, emotion=c.emotion_spec(), blinks=c.blinks,
                       blink_seed=BLINK_SEED, pose=c.pose, base=c.base)
    return ControlArrays(c, plan.au, plan.mask)
