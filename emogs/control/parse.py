"""Parsing of the user's text controls: `--au NAME=VALUE[@START-END]` and `--emotion NAME[:INTENSITY]`.

Every malformed spec is a one-line InputError that quotes the spec and shows the expected form.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from emogs.control.names import normalize_au
from emogs.errors import InputError

AU_SPEC_FORM = "NAME=VALUE or NAME=VALUE@START-END (e.g. AU12=0.8, AU01=1.0@2.0-4.0; seconds, END may be 'end')"


@dataclass(frozen=True)
class AUSpec:
    """One `--au` request. `start`/`end` in seconds; both None = the whole clip; end None = to the end."""
    au: str
    value: float
    start: float | None = None
    end: float | None = None
    text: str = ""

    @property
    def ranged(self) -> bool:
        return self.start is not None

    def describe(self) -> str:
        if not self.ranged:
            return f"{self.au}={self.value:g} (whole clip)"
        end = "end" if self.end is None else f"{self.end:g}"
        return f"{self.au}={self.value:g}@{self.start:g}-{end}"


def _number(text: str, what: str, spec: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"--au '{spec}': {what} '{text}' is not a number; expected {AU_SPEC_FORM}") from None
    if not math.isfinite(v):
        raise InputError(f"--au '{spec}': {what} must be a finite number")
    return v


def check_unit(v: float, what: str) -> None:
    """Intensities live in [0, 1]; values outside are an error (a typo like 8 for 0.8 must not pass)."""
    if not (0.0 <= v <= 1.0):
        hint = ""
        if 5.0 < v <= 10.0:
            hint = f" (did you mean {v / 10:g}?)"
        elif 1.5 <= v <= 5.0:
            hint = f" (did you mean {v / 10:g}, or {v / 5:g} from OpenFace's 0-5 scale?)"
        raise InputError(f"{what}: {v:g} is outside [0, 1]{hint}")


_TIME_RE = re.compile(r"^\s*([^-\s]+)\s*-\s*([^-\s]+)\s*$")


def parse_au_spec(spec: str) -> list[AUSpec]:
    """Parse one `--au` argument; commas separate several (`AU12=0.8,AU06=0.5@1-2`)."""
    out: list[AUSpec] = []
    parts = [p.strip() for p in spec.split(",")]
    if not any(parts):
        raise InputError(f"--au '{spec}': empty; expected {AU_SPEC_FORM}")
    for part in parts:
        if not part:
            raise InputError(f"--au '{spec}': empty item between commas; expected {AU_SPEC_FORM}")
        if part.count("=") != 1:
            raise InputError(f"--au '{part}': expected {AU_SPEC_FORM}")
        name, rest = part.split("=")
        au = normalize_au(name)
        if "@" in rest:
            if rest.count("@") != 1:
                raise InputError(f"--au '{part}': more than one '@'; expected {AU_SPEC_FORM}")
            val_text, rng = rest.split("@")
            m = _TIME_RE.match(rng)
            if not m:
                raise InputError(f"--au '{part}': time range '{rng}' is not START-END in seconds "
                                 f"(e.g. 2.0-4.0; times cannot be negative)")
            start = _number(m.group(1), "start time", part)
            end = None if m.group(2).lower() == "end" else _number(m.group(2), "end time", part)
            if end is not None and end < start:
                raise InputError(f"--au '{part}': time range is reversed ({start:g} s > {end:g} s); "
                                 f"write {end:g}-{start:g}")
            if end is not None and end == start:
                raise InputError(f"--au '{part}': time range {start:g}-{end:g} is empty")
        else:
            val_text, start, end = rest, None, None
        value = _number(val_text.strip(), "value", part)
        check_unit(value, f"--au '{part}'")
        out.append(AUSpec(au, value, start, end, part))
    return out


# --- emotions --------------------------------------------------------------------------------------
EMOTION_ALIASES = {"happiness": "happy", "joy": "happy", "smile": "happy", "sadness": "sad",
                   "anger": "angry", "mad": "angry", "surprise": "surprised", "fearful": "fear",
                   "afraid": "fear", "scared": "fear", "disgust": "disgusted", "contemptuous": "contempt",
                   "none": "neutral", "calm": "neutral"}


@dataclass(frozen=True)
class EmotionSpec:
    name: str
    intensity: float = 1.0


def parse_emotion(spec: str, known: tuple[str, ...]) -> EmotionSpec:
    """'happy', 'happy:0.6', 'Surprise:1' -> EmotionSpec; unknown names get a suggestion."""
    text = spec.strip()
    if text.count(":") > 1:
        raise InputError(f"--emotion '{spec}': expected NAME[:INTENSITY], e.g. happy:0.7")
    name, sep, inten = text.partition(":")
    key = name.strip().lower()
    key = EMOTION_ALIASES.get(key, key)
    if key not in known:
        close = difflib.get_close_matches(key, list(known) + list(EMOTION_ALIASES), n=1, cutoff=0.6)
        hint = f" (did you mean {EMOTION_ALIASES.get(close[0], close[0])}?)" if close else ""
        raise InputError(f"unknown emotion '{name.strip()}'{hint}; choose from {', '.join(known)}")
    if not sep:
        return EmotionSpec(key, 1.0)
    try:
        value = float(inten)
    except ValueError:
        raise InputError(f"--emotion '{spec}': intensity '{inten}' is not a number (expected e.g. {key}:0.7)") from None
    if not math.isfinite(value):
        raise InputError(f"--emotion '{spec}': intensity must be a finite number")
    check_unit(value, f"--emotion '{spec}' intensity")
    return EmotionSpec(key, value)
