"""Per-frame rendering for live use, the record of what was played, and its export.

`LiveStream` holds one speech clip and the current controls. `render(i)` makes frame i from the audio
feature window at i and an AU window centred on i, as `Avatar.frames` does for a whole clip: the frames
before i that were just played take the AUs they were played with (the take), the frame itself and the
look-ahead take the current controls (the future of a live slider is unknown; holding its present value
is what a render with that value from i on would see). Everything is arrays in, arrays out; no files.

The take (`Take`) is what the page played: for every frame of the clip the page reached during playback,
the requested AUs, the user's share of them and the controls in force when the audio passed that frame.
`export_frames` renders the whole clip from it (frames never played hold the nearest played state) and
`timeline_csv` / `timeline_json` write the AUs it drove the model with in the format
`emogs render --au-timeline` reads.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from emogs.control.names import AU_INDEX, AU_NAMES, NUM_AUS
from emogs.studio.controls import ControlArrays, Controls, control_arrays

FPS = 25.0
SAMPLE_RATE = 16000
HISTORY_S = 1.0  # played frames older than this (wall time) no longer count as the AU window's history
SEEK_GAP_S = 5.0  # a jump this far ahead within one playback segment is a seek, not playback


@dataclass
class Speech:
    """One speech clip, analysed for the run: feature rows, speech-AU deviation, both pose tracks."""
    wav: np.ndarray  # (L,) float32 16 kHz mono
    name: str  # for display only
    rows: np.ndarray  # (R, D) audio feature rows of the run's kind
    rows_per_frame: int
    deviation: np.ndarray | None  # (F, k) speech-AU deviation from the training mean, None without speech AUs
    w2c_training: np.ndarray  # (F, 4, 4) the training poses, mirror-looped
    w2c_static: np.ndarray  # (F, 4, 4) the median training pose
    speech_base: np.ndarray | None = None  # (F, E) mesh runs with a speech-motion model: the mouth from the audio

    @property
    def num_frames(self) -> int:
        return len(self.w2c_training)

    @property
    def duration(self) -> float:
        return len(self.wav) / SAMPLE_RATE


def analyse_speech(avatar: Any, wav: np.ndarray, name: str) -> Speech:
    """16 kHz mono samples -> Speech for `avatar` (audio features, speech AUs, pose tracks)."""
    from emogs.audio import feature_rows
    from emogs.control.pose import PoseRequest, resolve_pose
    from emogs.data.windows import feature_windows
    from emogs.io.media import frames_for_audio

    wav = np.ascontiguousarray(wav, np.float32)
    F = frames_for_audio(len(wav), SAMPLE_RATE, FPS)
    rows, rpf = feature_rows(wav, avatar.model.cfg.audio_feature)
    dev = None
    if avatar.speech is not None:
        half = avatar.model.cfg.audio_window
        dev = avatar.speech.deviation(lambda ids: feature_windows(rows, rpf, ids, half), F)
    tr = resolve_pose(PoseRequest("training"), avatar.train_w2c, F).world_to_cam
    st = resolve_pose(PoseRequest("static"), avatar.train_w2c, F).world_to_cam
    base = avatar.speech_expression(wav, F, rows) if hasattr(avatar, "speech_expression") else None
    return Speech(wav, name, rows, rpf, dev, tr, st, base)


def _key(c: Controls) -> str:
    return json.dumps(c.to_message(), sort_keys=True)


class Take:
    """What was played, per frame: requested AUs (F, 17), user share (F, 17), the controls in force
    (an index into `controls`, -1 = not played) and the wall time it was played at."""

    def __init__(self, num_frames: int) -> None:
        self.au = np.zeros((num_frames, NUM_AUS), np.float32)
        self.mask = np.zeros((num_frames, NUM_AUS), np.float32)
        self.state = np.full(num_frames, -1, np.int32)
        self.stamp = np.zeros(num_frames, np.float64)
        self.controls: list[Controls] = []
        self._ids: dict[str, int] = {}

    @property
    def num_frames(self) -> int:
        return len(self.state)

    @property
    def played_frames(self) -> int:
        return int((self.state >= 0).sum())

    def state_id(self, c: Controls) -> int:
        k = _key(c)
        if k not in self._ids:
            self._ids[k] = len(self.controls)
            self.controls.append(c)
        return self._ids[k]

    def record(self, a: int, b: int, arrays: ControlArrays, now: float) -> None:
        """Frames [a, b) were played under `arrays`."""
        self.au[a:b] = arrays.au[a:b]
        self.mask[a:b] = arrays.mask[a:b]
        self.state[a:b] = self.state_id(arrays.controls)
        self.stamp[a:b] = now

    def filled(self, current: ControlArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> au (F, 17), mask (F, 17), state (F,) for every frame: a frame never played holds the nearest
        played frame before it (before the first played frame: the first one); nothing played: `current`."""
        played = self.state >= 0
        if not played.any():
            return current.au.copy(), current.mask.copy(), np.full(self.num_frames, self.state_id(current.controls),
                                                                     np.int32)
        idx = np.arange(self.num_frames)
        src = np.maximum.accumulate(np.where(played, idx, -1))
        src[src < 0] = int(np.flatnonzero(played)[0])
        return self.au[src], self.mask[src], self.state[src]

    def flags(self, state: np.ndarray, name: str) -> np.ndarray:
        """(n,) state ids -> (n,) the controls' field `name` (a bool field, or pose == static)."""
        per = np.array([c.pose == "static" if name == "static" else bool(getattr(c, name)) for c in self.controls]
                       or [False])
        return per[np.maximum(state, 0)]


class LiveStream:
    """One speech clip under live controls: renders single frames, records the take, exports it."""

    def __init__(self, avatar: Any, speech: Speech, controls: Controls | None = None) -> None:
        self.av, self.speech = avatar, speech
        self.take = Take(speech.num_frames)
        self.version = 0
        self._pos: tuple[int, int] | None = None  # (playback segment, next frame to record)
        self.set_controls(controls or Controls())

    @property
    def num_frames(self) -> int:
        return self.speech.num_frames

    def frame_at(self, t: float) -> int:
        """Audio time (s) -> the frame shown then (frame i covers [i / 25, (i + 1) / 25))."""
        if not math.isfinite(t):
            t = 0.0
        return int(min(self.num_frames - 1, max(0, math.floor(t * FPS + 1e-6))))

    # -- controls and the take ---------------------------------------------------------------------------
    def set_controls(self, controls: Controls, t: float | None = None, playing: bool = False, segment: int = 0,
                     now: float | None = None) -> int:
        """New controls from audio time `t` on (the frames played up to `t` keep the old ones). -> version."""
        if t is not None:
            self.advance(t, playing, segment, now)
        self.arrays = control_arrays(self.av, self.num_frames, controls)
        ids = np.arange(self.num_frames)
        self.effective = self.effective_rows(self.arrays.au, self.arrays.mask, ids,
                                             np.full(len(ids), controls.speech_aus), np.full(len(ids), controls.clamp))
        # mesh-rigged heads: the mesh follows the request, unclamped (Avatar.expressions)
        self.requested = self.effective_rows(self.arrays.au, self.arrays.mask, ids,
                                             np.full(len(ids), controls.speech_aus), np.zeros(len(ids), bool))
        self.version += 1
        return self.version

    def advance(self, t: float, playing: bool, segment: int, now: float | None = None) -> None:
        """The page reports its audio position: while playing, the frames it passed since the last report
        (in the same playback segment) were played under the current controls."""
        now = time.monotonic() if now is None else now
        if not playing:
            self._pos = None
            return
        i = self.frame_at(t)
        start = i
        if self._pos is not None and self._pos[0] == segment and self._pos[1] <= i + 1 \
                and i - self._pos[1] < SEEK_GAP_S * FPS:
            start = self._pos[1]
        self.take.record(start, i + 1, self.arrays, now)
        self._pos = (segment, i + 1)

    def effective_rows(self, au: np.ndarray, mask: np.ndarray, ids: np.ndarray, speech_on: np.ndarray,
                       clamp_on: np.ndarray) -> np.ndarray:
        """Requested AUs of frames `ids` -> the AUs the model is driven with: plus the speech AUs' deviation
        where the user did not set them (rows with speech_on), clamped to the training range (clamp_on)."""
        out = np.asarray(au, np.float32).copy()
        sp, dev = self.av.speech, self.speech.deviation
        if sp is not None and dev is not None and speech_on.any():
            out[speech_on] = sp.add_deviation(out[speech_on], mask[speech_on], dev[ids[speech_on]])
        if clamp_on.any():
            out[clamp_on] = self.av.clamp_to_training(out[clamp_on])
        return out

    def _take_effective(self, ids: np.ndarray, au: np.ndarray, mask: np.ndarray, state: np.ndarray) -> np.ndarray:
        t = self.take
        return self.effective_rows(au, mask, ids, t.flags(state, "speech_aus"), t.flags(state, "clamp"))

    def au_window(self, i: int, now: float | None = None) -> np.ndarray:
        """(T, 17) AU window centred on frame i: recently played frames before i from the take, the rest from
        the current controls (edge-padded like `emogs.avatar.au_windows`)."""
        now = time.monotonic() if now is None else now
        T = self.av.model.cfg.au_window
        idx = np.clip(i - T // 2 + np.arange(T), 0, self.num_frames - 1)
        win = self.effective[idx].copy()
        t = self.take
        hist = (idx < i) & (t.state[idx] >= 0) & (now - t.stamp[idx] < HISTORY_S)
        if hist.any():
            h = idx[hist]
            win[hist] = self._take_effective(h, t.au[h], t.mask[h], t.state[h])
        return win

    # -- rendering ---------------------------------------------------------------------------------------
    def _emotion_rows(self, state: np.ndarray) -> np.ndarray | None:
        """(n,) take state ids -> (n, 8) an EmoTaG head's emotion conditioning under each frame's controls (the
        current controls for a state not in the take); None for other heads."""
        f = getattr(self.av, "emotion_rows", None)
        if f is None or f(None, 1) is None:
            return None
        per = {int(k): f(self.take.controls[k].emotion_spec() if 0 <= k < len(self.take.controls)
                          else self.arrays.controls.emotion_spec(), 1)[0] for k in np.unique(state)}
        return np.stack([per[int(k)] for k in state])

    def _render(self, ids: np.ndarray, au_windows: np.ndarray, static: np.ndarray, batch: int,
                requested: np.ndarray | None = None, plan_au: np.ndarray | None = None,
                state: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Frames `ids` with (n, T, 17) AU windows and (n,) static-pose flags -> uint8 (H, W, 3) frames;
        a mesh-rigged head's mesh follows `requested` (n, 17, unclamped), or with a speech-motion model the
        audio's mouth under `plan_au` (n, 17: the controls without the speech AUs; None: speech AUs off).
        An EmoTaG head's residual branch adds its change under the AU windows and the emotion of each frame's
        controls (`state`: take state ids; None = the current controls)."""
        from emogs.data.windows import feature_windows as audio_windows

        av, sp = self.av, self.speech
        dev, S = av.device, av.size
        aud = audio_windows(sp.rows, sp.rows_per_frame, ids, av.model.cfg.audio_window)
        aud_t = torch.as_tensor(aud, dtype=torch.float32, device=dev)
        auw_t = torch.as_tensor(au_windows, dtype=torch.float32, device=dev)
        expr = None
        if requested is not None and getattr(av, "is_mesh", False):
            res = None
            if hasattr(av, "branch_residual"):
                emo = self._emotion_rows(np.full(len(ids), -1) if state is None else state)
                res = av.branch_residual(aud_t, auw_t, emo)
            sb = sp.speech_base  # the mouth from the audio (speech-motion model) under the plan's AUs
            expr = (av.expressions(plan_au, sb[ids], res) if sb is not None and plan_au is not None
                    else av.expressions(requested, None, res))
        w2c = np.where(static[:, None, None], sp.w2c_static[ids], sp.w2c_training[ids])
        w2c_t = torch.as_tensor(w2c, dtype=torch.float32, device=dev)
        ex_t = None if expr is None else torch.as_tensor(expr, device=dev)
        K = torch.as_tensor(av.K, device=dev)
        bg = torch.as_tensor(av.background, device=dev)
        backend = getattr(av.cfg, "backend", "auto")
        calls = ((w2c_t[j], K.expand(len(w2c_t[j]), 3, 3), aud_t[j], auw_t[j], bg.expand(len(w2c_t[j]), -1, -1, -1),
                  *(() if ex_t is None else (ex_t[j],)))
                 for j in (slice(k, min(len(ids), k + batch)) for k in range(0, len(ids), batch)))
        for out in av.renderer.run(calls, S, S, backend):
            yield from out.cpu().numpy()

    def render(self, i: int, now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frame i under the current controls -> (uint8 (H, W, 3), the (17,) AUs it was driven with)."""
        win = self.au_window(i, now)
        speech_on = bool(self.arrays.controls.speech_aus)
        plan_au = self.arrays.au[[i]] if speech_on else None
        frame = next(self._render(np.array([i]), win[None], np.array([self.arrays.static]), 1, self.requested[[i]],
                                  plan_au))
        return frame, win[len(win) // 2]

    # -- export ------------------------------------------------------------------------------------------
    def take_tracks(self, clamped: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> effective AUs (F, 17), static-pose flags (F,), state ids (F,) of the whole clip from the take.
        `clamped=False`: before the clamp to the training range (what a timeline carries: `emogs render`
        clamps it again, and a mesh-rigged head's mesh takes it as it is)."""
        au, mask, state = self.take.filled(self.arrays)
        ids = np.arange(self.num_frames)
        t = self.take
        clamp = t.flags(state, "clamp") if clamped else np.zeros(len(ids), bool)
        return self.effective_rows(au, mask, ids, t.flags(state, "speech_aus"), clamp), t.flags(state, "static"), state

    def export_frames(self, batch: int = 8, chunk: int = 64,
                      progress: Callable[[int, int], None] | None = None) -> Iterator[np.ndarray]:
        """Every frame of the clip as played (see `take_tracks`), chunk by chunk."""
        from emogs.data.windows import frame_windows as au_windows

        eff, static, state = self.take_tracks()
        au, mask, _ = self.take.filled(self.arrays)
        F, T = self.num_frames, self.av.model.cfg.au_window
        speech_on = self.take.flags(state, "speech_aus")
        req = self.effective_rows(au, mask, np.arange(F), speech_on, np.zeros(F, bool))
        for s in range(0, F, chunk):
            ids = np.arange(s, min(F, s + chunk))
            plan_au = au[ids] if speech_on[ids].all() else None
            yield from self._render(ids, au_windows(eff, ids, T), static[ids], batch, req[ids], plan_au, state[ids])
            if progress:
                progress(int(ids[-1]) + 1, F)

    def timeline_columns(self, all_aus: bool = False) -> list[int]:
        """The AUs a timeline must carry to reproduce the take: the ones the user set on some frame (sliders,
        presets), AU45 where blinks were off; every AU where the base was neutral, when no AU was set at all
        (a timeline needs one) or with `all_aus` (but for a mesh head with a speech-motion model, not the
        speech AUs the user never set: they follow the audio on replay as they did in the take)."""
        _, mask, state = self.take.filled(self.arrays)
        neutral = np.array([c.base == "neutral" for c in self.take.controls])[state]
        cols = set(np.flatnonzero(mask.max(0) > 0).tolist())
        if not self.take.flags(state, "blinks").all():
            cols.add(AU_INDEX["AU45"])
        if all_aus or neutral.any() or not cols:
            out = list(range(NUM_AUS))
            if self.speech.speech_base is not None and self.av.speech is not None and not neutral.any():
                # a mesh head with a speech-motion model: the speech AUs the user never set stay audio-driven
                # on replay (their take values include the audio-driven deviation, which the mesh would take
                # on top of the prior's mouth: the jaw would move twice)
                never = set(np.asarray(self.av.speech.au_index).tolist()) - set(np.flatnonzero(mask.max(0) > 0).tolist())
                out = [c for c in out if c not in never]
            return out
        return sorted(cols)

    def timeline_csv(self, all_aus: bool = False) -> str:
        """The take as an `emogs render --au-timeline` CSV: `time` (s, every frame) and one column per AU."""
        eff, _, _ = self.take_tracks(clamped=False)
        cols = self.timeline_columns(all_aus)
        lines = [",".join(["time"] + [AU_NAMES[c] for c in cols])]
        for i in range(self.num_frames):
            lines.append(",".join([f"{i / FPS:.2f}"] + [f"{eff[i, c]:.4f}" for c in cols]))
        return "\n".join(lines) + "\n"

    def timeline_json(self, all_aus: bool = False) -> str:
        """The take as `{"fps": 25, "keyframes": [...]}`: a keyframe where the values start or stop changing
        (linear interpolation between them gives back every frame)."""
        eff, _, _ = self.take_tracks(clamped=False)
        cols = self.timeline_columns(all_aus)
        v = np.round(eff[:, cols].astype(np.float64), 4)
        F = self.num_frames
        change = np.any(v[1:] != v[:-1], axis=1)  # (F-1,) frame k+1 differs from frame k
        keep = np.zeros(F, bool)
        keep[[0, F - 1]] = True
        keep[1:] |= change
        keep[:-1] |= change
        kfs = [json.dumps({"time": round(i / FPS, 2), **{AU_NAMES[c]: float(v[i, k]) for k, c in enumerate(cols)}})
               for i in np.flatnonzero(keep)]
        return '{"fps": %g, "keyframes": [\n' % FPS + ",\n".join(kfs) + "\n]}\n"
