"""Speech with phoneme timings from eSpeak NG, fully offline.

The `espeak-ng` command cannot print phoneme durations without an MBROLA voice (`--pho` needs one;
`-x`/`-X` print phonemes without times). The library it is built on, `libespeak-ng.so.1` (Debian
package `libespeak-ng1`, installed with `espeak-ng`), does: initialised with
`espeakINITIALIZE_PHONEME_EVENTS` it reports an `espeakEVENT_PHONEME` event with the phoneme mnemonic
and its start in the audio (ms) while it synthesises. We call it through ctypes in synchronous mode and
collect the audio and the events together, so the timings are those of the very samples we mux.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from dataclasses import dataclass

import numpy as np

from emogs.errors import MissingAssetError

_EV_PHONEME, _EV_END = 7, 0
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_LOCK = threading.Lock()


class _ID(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT from speak_lib.h
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _ID)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Phoneme:
    symbol: str   # eSpeak mnemonic, e.g. "h", "@", "oU", "_:" (pause)
    start: float  # seconds in the returned audio
    end: float

    @property
    def is_pause(self) -> bool:
        return self.symbol.startswith("_") or self.symbol == ""


@dataclass
class Speech:
    audio: np.ndarray  # (S,) float32 mono in [-1, 1]
    sample_rate: int
    phonemes: list[Phoneme]


@functools.lru_cache(maxsize=1)
def _lib() -> tuple[ctypes.CDLL, int]:
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise MissingAssetError("libespeak-ng not found: install the Debian package 'espeak-ng' "
                                "(sudo apt-get install espeak-ng)") from None
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INIT_PHONEME_EVENTS)
    if sr <= 0:
        raise MissingAssetError("espeak-ng failed to initialise (is espeak-ng-data installed?)")
    return lib, sr


def _resample(wav: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Mono float32 resampling with FFmpeg's swresample (PyAV); keeps the timeline (same duration)."""
    import av

    if rate_in == rate_out or len(wav) == 0:
        return wav.astype(np.float32)
    rs = av.AudioResampler(format="flt", layout="mono", rate=rate_out)
    fr = av.AudioFrame.from_ndarray(wav.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    fr.sample_rate = rate_in
    fr.pts = 0
    out = [o.to_ndarray().reshape(-1) for o in rs.resample(fr)] + [o.to_ndarray().reshape(-1) for o in rs.resample(None)]
    a = np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
    n = int(round(len(wav) * rate_out / rate_in))
    return np.pad(a, (0, max(0, n - len(a))))[:n]


def synthesize(text: str, voice: str = "en-us", rate_wpm: int = 150, sample_rate: int = 16000) -> Speech:
    """Speak `text`; return the audio resampled to `sample_rate` and the phoneme segments (seconds)."""
    if not text.strip():
        raise ValueError("empty text")
    lib, sr = _lib()
    chunks: list[np.ndarray] = []
    events: list[tuple[str, int]] = []

    def cb(wav, n, ev) -> int:
        if n > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while ev[i].type != _EV_END:
            if ev[i].type == _EV_PHONEME:
                events.append((ev[i].id.string.decode("ascii", "replace"), ev[i].audio_position))
            i += 1
        return 0

    c_cb = _CALLBACK(cb)
    data = text.encode("utf-8")
    with _LOCK:  # the library keeps global state
        lib.espeak_SetSynthCallback(c_cb)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        lib.espeak_SetParameter(1, int(rate_wpm), 0)  # espeakRATE
        lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, 0, None, None)
        lib.espeak_Synchronize()
    wav = np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else np.zeros(0, np.float32)
    dur = len(wav) / sr
    phon = []
    for k, (sym, ms) in enumerate(events):
        end = events[k + 1][1] / 1000 if k + 1 < len(events) else dur
        start = ms / 1000
        if end > start:
            phon.append(Phoneme(sym, start, min(end, dur)))
    audio = _resample(wav, sr, sample_rate)
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak > 0:
        audio *= 0.8 / peak
    return Speech(audio, sample_rate, phon)
