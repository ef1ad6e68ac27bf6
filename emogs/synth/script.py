"""The performance script: per-frame blendshape weights and head pose from phonemes, blinks and
scripted expression events. Everything here is ground truth by construction.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from emogs.errors import InputError
from emogs.synth.rig import BLENDSHAPE_NAMES, BS_INDEX
from emogs.synth.speech import Phoneme

# viseme -> blendshape weights (ARKit names). Lip corners are left to the smile event on purpose.
VISEMES: dict[str, dict[str, float]] = {
    "PP": {"mouthPressLeft": 0.35, "mouthPressRight": 0.35},
    "FF": {"jawOpen": 0.08, "mouthUpperUpLeft": 0.15, "mouthUpperUpRight": 0.15},
    "TH": {"jawOpen": 0.15},
    "DD": {"jawOpen": 0.2},
    "kk": {"jawOpen": 0.24},
    "nn": {"jawOpen": 0.14},
    "CH": {"jawOpen": 0.12, "mouthFunnel": 0.45},
    "SS": {"jawOpen": 0.08, "mouthStretchLeft": 0.2, "mouthStretchRight": 0.2},
    "RR": {"jawOpen": 0.14, "mouthFunnel": 0.3},
    "aa": {"jawOpen": 0.55, "mouthLowerDownLeft": 0.2, "mouthLowerDownRight": 0.2},
    "E": {"jawOpen": 0.35, "mouthStretchLeft": 0.2, "mouthStretchRight": 0.2},
    "@": {"jawOpen": 0.28},
    "I": {"jawOpen": 0.2, "mouthStretchLeft": 0.3, "mouthStretchRight": 0.3},
    "O": {"jawOpen": 0.42, "mouthFunnel": 0.5},
    "U": {"jawOpen": 0.15, "mouthPucker": 0.7},
}
# eSpeak NG English phoneme mnemonics -> viseme (stress marks stripped)
_PHONEME_VISEME = {
    **dict.fromkeys(["p", "b", "m"], "PP"), **dict.fromkeys(["f", "v"], "FF"), **dict.fromkeys(["T", "D"], "TH"),
    **dict.fromkeys(["t", "d", "t#", "d#"], "DD"), **dict.fromkeys(["k", "g", "N", "x", "h"], "kk"),
    **dict.fromkeys(["n", "l", "n-", "l/", "L"], "nn"), **dict.fromkeys(["tS", "dZ", "S", "Z"], "CH"),
    **dict.fromkeys(["s", "z"], "SS"), **dict.fromkeys(["r", "r-", "R"], "RR"), **dict.fromkeys(["w", "W"], "U"),
    "j": "I",
    **dict.fromkeys(["a", "A:", "A@", "aI", "aU", "V", "A", "aa", "a2"], "aa"),
    **dict.fromkeys(["E", "e@", "eI", "e", "3:", "E2", "E@"], "E"),
    **dict.fromkeys(["@", "@2", "@5", "@L", "3", "a#", "I2"], "@"),
    **dict.fromkeys(["i", "i:", "I", "I#", "i@", "i@3"], "I"),
    **dict.fromkeys(["0", "O:", "O@", "oU", "OI", "o", "O", "0@"], "O"),
    **dict.fromkeys(["u:", "U", "U@", "u"], "U"),
}
VISEME_SHAPES = sorted({k for v in VISEMES.values() for k in v})


def viseme_of(symbol: str) -> str | None:
    """eSpeak mnemonic -> viseme name; None for pauses."""
    s = symbol.strip("'," )
    if not s or s.startswith("_"):
        return None
    if s in _PHONEME_VISEME:
        return _PHONEME_VISEME[s]
    if s[0] in "aeiouAEIOUV@03":
        return "@"
    return "nn"


# scripted expression events: name -> (blendshapes, the AUs they drive)
EVENT_SHAPES: dict[str, dict[str, float]] = {
    "brow_raise": {"browInnerUp": 1.0, "browOuterUpLeft": 1.0, "browOuterUpRight": 1.0},
    "frown": {"browDownLeft": 1.0, "browDownRight": 1.0},
    "smile": {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "cheekSquintLeft": 0.5, "cheekSquintRight": 0.5},
}
EVENT_AUS: dict[str, list[str]] = {"brow_raise": ["AU01", "AU02"], "frown": ["AU04"], "smile": ["AU12"]}
DEFAULT_EVENTS = "brow_raise:1.0-2.2:0.9,frown:3.2-4.4:0.9,smile:5.4-6.8:0.9"
RAMP_S = 0.25  # attack / release of an event (inside its window)


@dataclass
class Event:
    kind: str
    start: float  # s
    end: float    # s
    amplitude: float = 0.9


def parse_events(spec: str) -> list[Event]:
    """"kind:start-end[:amplitude],..." (kinds: brow_raise, frown, smile); "" or "none" -> no events."""
    out: list[Event] = []
    if spec.strip().lower() in ("", "none"):
        return out
    for item in spec.split(","):
        parts = item.strip().split(":")
        try:
            kind = parts[0].strip()
            a, b = parts[1].split("-")
            amp = float(parts[2]) if len(parts) > 2 else 0.9
            ev = Event(kind, float(a), float(b), amp)
        except (IndexError, ValueError):
            raise InputError(f"bad event {item!r}: expected kind:start-end[:amplitude], e.g. smile:5-6.5:0.9") from None
        if kind not in EVENT_SHAPES:
            raise InputError(f"unknown event kind {kind!r} (known: {', '.join(EVENT_SHAPES)})")
        if not (0 <= ev.start < ev.end) or not (0 < ev.amplitude <= 1):
            raise InputError(f"bad event {item!r}: need 0 <= start < end and 0 < amplitude <= 1")
        out.append(ev)
    return out


def envelope(t: np.ndarray, start: float, end: float, ramp: float = RAMP_S) -> np.ndarray:
    """Raised-cosine on/off ramps inside [start, end]; 1 on the plateau, 0 outside."""
    r = min(ramp, (end - start) / 2)
    up = np.clip((t - start) / r, 0, 1)
    down = np.clip((end - t) / r, 0, 1)
    return (0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))).astype(np.float32)


@dataclass
class Blink:
    start: float
    duration: float


def make_blinks(duration: float, rng: np.random.Generator) -> list[Blink]:
    """Blinks at natural intervals (2-6 s, a gamma distribution), 0.2-0.3 s each."""
    out, t = [], rng.uniform(0.6, 1.8)
    while t < duration - 0.4:
        out.append(Blink(t, rng.uniform(0.2, 0.3)))
        t += 1.6 + rng.gamma(2.0, 0.9)
    return out


def blink_curve(t: np.ndarray, blinks: list[Blink]) -> np.ndarray:
    """Lid closure in [0, 1]: fast close (35 %), short hold, slower open."""
    out = np.zeros_like(t, dtype=np.float32)
    for b in blinks:
        u = (t - b.start) / b.duration
        c = np.where(u < 0.35, u / 0.35, np.where(u < 0.45, 1.0, 1.0 - (u - 0.45) / 0.55))
        c = np.where((u >= 0) & (u <= 1), np.clip(c, 0, 1), 0)
        out = np.maximum(out, (0.5 - 0.5 * np.cos(np.pi * c)).astype(np.float32))
    return out


def viseme_track(phonemes: list[Phoneme], t: np.ndarray, rng: np.random.Generator,
                 smooth_s: float = 0.035) -> np.ndarray:
    """(N, 52) mouth blendshapes at times t: per-phoneme viseme targets (with +-15 % random strength),
    coarticulated by Gaussian smoothing (sigma `smooth_s`) on a 1 ms grid."""
    from scipy.ndimage import gaussian_filter1d

    end = max([p.end for p in phonemes] + [float(t.max()) + 0.1])
    grid = np.zeros((int(math.ceil(end * 1000)) + 1, len(BLENDSHAPE_NAMES)), np.float32)
    for p in phonemes:
        vis = viseme_of(p.symbol)
        if vis is None:
            continue
        gain = float(rng.uniform(0.85, 1.15))
        a, b = int(round(p.start * 1000)), int(round(p.end * 1000))
        for name, w in VISEMES[vis].items():
            grid[a:b, BS_INDEX[name]] = w * gain
    grid = gaussian_filter1d(grid, smooth_s * 1000, axis=0, mode="constant")
    idx = np.clip(np.round(t * 1000).astype(int), 0, len(grid) - 1)
    return grid[idx]


def head_motion(t: np.ndarray, rng: np.random.Generator, amount: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Slow smooth pose noise: (N, 3) Euler angles (pitch, yaw, roll) in degrees, (N, 3) translation cm.
    Sums of a few sinusoids with random phases (0.1-0.5 Hz)."""
    def smooth(amp: float) -> np.ndarray:
        f = rng.uniform(0.1, 0.5, 3)
        ph = rng.uniform(0, 2 * np.pi, 3)
        w = rng.uniform(0.5, 1.0, 3)
        s = (w[:, None] * np.sin(2 * np.pi * f[:, None] * t[None] + ph[:, None])).sum(0) / w.sum()
        return amp * amount * s
    ang = np.stack([smooth(3.0), smooth(4.0), smooth(2.0)], 1)
    tr = np.stack([smooth(0.4), smooth(0.3), smooth(0.5)], 1)
    return ang.astype(np.float32), tr.astype(np.float32)


@dataclass
class Performance:
    times: np.ndarray        # (N,) frame centre times, s
    blendshapes: np.ndarray  # (N, 52) driven weights in [0, 1] (MediaPipe order)
    angles: np.ndarray       # (N, 3) head pitch, yaw, roll, degrees
    translation: np.ndarray  # (N, 3) cm
    events: list[Event]
    blinks: list[Blink]
    speech_mask: np.ndarray  # (N,) bool: a voiced (non-pause) phoneme is being spoken at the frame time

    def to_json(self) -> dict:
        return {"events": [asdict(e) | {"aus": EVENT_AUS[e.kind], "blendshapes": EVENT_SHAPES[e.kind]}
                           for e in self.events],
                "blinks": [asdict(b) for b in self.blinks], "ramp_s": RAMP_S}


def perform(phonemes: list[Phoneme], num_frames: int, fps: float, events: list[Event], seed: int = 0,
            head_amount: float = 1.0) -> Performance:
    """Build the whole performance on the frame grid (frame i shown at time (i + 0.5) / fps)."""
    rng = np.random.default_rng(seed)
    t = (np.arange(num_frames) + 0.5) / fps
    bs = viseme_track(phonemes, t, rng)
    for e in events:
        env = envelope(t, e.start, e.end) * e.amplitude
        for name, w in EVENT_SHAPES[e.kind].items():
            bs[:, BS_INDEX[name]] += w * env
    blinks = make_blinks(num_frames / fps, rng)
    b = blink_curve(t, blinks)
    bs[:, BS_INDEX["eyeBlinkLeft"]] += b
    bs[:, BS_INDEX["eyeBlinkRight"]] += b
    bs = np.clip(bs, 0, 1)
    ang, tr = head_motion(t, rng, head_amount)
    voiced = np.zeros(num_frames, bool)
    for p in phonemes:
        if viseme_of(p.symbol) is not None:
            voiced |= (t >= p.start) & (t < p.end)
    return Performance(t.astype(np.float32), bs.astype(np.float32), ang, tr, events, blinks, voiced)
