"""Combine every control into per-frame AU tracks: the ControlPlan the renderer consumes.

Layers, bottom to top; each one overrides the AUs it names, blended by its weight w in [0, 1]
(au = (1 - w) * below + w * value; a later layer wins per AU):
  1. base: the model's default expression (training-mean AUs, given by the caller) or neutral (zeros);
  2. --emotion preset (w = intensity on the preset's scope: all AUs but AU45 / AU25 / AU26 unless named);
  3. --au-from VIDEO (w = 1 on the AUs the analysis has);
  4. --au-timeline FILE (w = 1 on the AUs the file names);
  5. --au NAME=VALUE (whole clip, w = 1), then --au NAME=VALUE@START-END (w = the ease window);
  6. antagonists: an AU the user raises above the base relaxes the base's share of its FACS antagonists
     that the user did not set (`ANTAGONISTS`: raising the brows on a face whose default frowns lifts them
     instead of making a 1+4 brow; set the antagonist explicitly, e.g. --au AU04=0.5, to keep it);
  7. blinks: if the result has no blink, generated AU45 pulses are added where the user does not control AU45.
`mask` = the share of each value that came from the user: 1 - prod(1 - w) over layers 2-5.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from emogs.control.blinks import blink_track, has_blinks
from emogs.control.defaults import DEFAULT_EASE
from emogs.control.emotions import EMOTION_NAMES, EMOTIONS, PRESERVED_AUS, emotion_layer
from emogs.control.names import AU_INDEX, AU_NAMES, NUM_AUS
from emogs.control.parse import AUSpec, EmotionSpec, parse_au_spec, parse_emotion
from emogs.control.pose import PoseRequest, PoseTrack, resolve_pose
from emogs.control.timeline import Timeline, ease_window, frame_times, load_timeline
from emogs.errors import InputError

BASES = ("default", "neutral")


@dataclass
class ControlPlan:
    """Per-frame controls for one render. F frames at `fps`; AU columns in `au_names` order."""
    au: np.ndarray                  # (F, 17) float32 in [0, 1]
    mask: np.ndarray                # (F, 17) float32 in [0, 1]: user share of each value (0 = free / base)
    pose: PoseRequest
    fps: float = 25.0
    au_names: tuple[str, ...] = AU_NAMES
    layers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    blinks: list[tuple[float, float]] = field(default_factory=list)  # generated: (peak time s, duration s)
    emotion: EmotionSpec | None = None  # the --emotion preset asked for (heads with an emotion latent read it)

    @property
    def num_frames(self) -> int:
        return len(self.au)

    @property
    def controlled(self) -> np.ndarray:
        """(F, 17) bool: the user set (part of) this AU on this frame."""
        return self.mask > 0

    def resolve_pose(self, training_world_to_cam: np.ndarray) -> PoseTrack:
        """(N, 4, 4) training poses -> PoseTrack with world_to_cam (F, 4, 4)."""
        return resolve_pose(self.pose, training_world_to_cam, self.num_frames)

    def summary(self, sent: np.ndarray | None = None, sent_what: str | None = None) -> str:
        """The plan in words and an AU table. `sent` (F, 17): the AUs the model actually receives (the
        plan clamped to the training range); the table then shows those, with the requested range
        beside every AU the clamp changed. `sent_what` names what receives them (default: the model, clamped)."""
        F = self.num_frames
        lines = [f"controls: {F} frames ({F / self.fps:.2f} s at {self.fps:g} fps)"]
        lines += [f"  {s}" for s in self.layers]
        lines.append(f"  pose: {self.pose.describe()}")
        vals = self.au if sent is None else np.asarray(sent, np.float32)
        used = [i for i in range(NUM_AUS) if max(vals[:, i].max(), self.au[:, i].max()) > 0.005]
        if used:
            what = (sent_what or "AUs sent to the model (clamped to the training range)") if sent is not None \
                else "AUs requested"
            lines.append(f"  {what}:")
            lines.append("  AU     mean   min   max  user-set frames" + ("  requested" if sent is not None else ""))
            for i in used:
                a = vals[:, i]
                row = (f"  {self.au_names[i]}  {a.mean():5.2f} {a.min():5.2f} {a.max():5.2f}  "
                       f"{int((self.mask[:, i] > 0).sum()):5d}/{F}")
                if sent is not None and np.abs(a - self.au[:, i]).max() > 0.005:
                    row += f"  {self.au[:, i].min():.2f}-{self.au[:, i].max():.2f} (clamped)"
                lines.append(row)
        if len(used) < NUM_AUS:
            lines.append(f"  other AUs 0: {' '.join(n for i, n in enumerate(self.au_names) if i not in used)}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _blend(au: np.ndarray, mask: np.ndarray, value: np.ndarray, weight: np.ndarray) -> None:
    """In place: au = (1 - w) au + w value; mask = 1 - (1 - mask)(1 - w)."""
    au *= 1.0 - weight
    au += weight * value
    mask += weight * (1.0 - mask)


def _as_specs(au: Any) -> list[AUSpec]:
    """str | list[str] | {name: value | (value, start, end)} | list[AUSpec] -> specs."""
    if au is None:
        return []
    if isinstance(au, str):
        return parse_au_spec(au)
    if isinstance(au, Mapping):
        out = []
        for k, v in au.items():
            if isinstance(v, (tuple, list)):
                if len(v) != 3:
                    raise InputError(f"au={{{k!r}: {v!r}}}: expected value or (value, start, end)")
                out += parse_au_spec(f"{k}={v[0]}@{v[1]}-{'end' if v[2] is None else v[2]}")
            else:
                out += parse_au_spec(f"{k}={v}")
        return out
    out = []
    for x in au:
        out += [x] if isinstance(x, AUSpec) else parse_au_spec(x)
    return out


def _check_specs(specs: list[AUSpec], duration: float, warns: list[str]) -> list[AUSpec]:
    """Duplicates, overlaps and ranges against the clip: errors, or clipping with a warning."""
    fixed: list[AUSpec] = []
    for s in specs:
        if s.ranged and s.start >= duration:
            raise InputError(f"--au '{s.text}': starts at {s.start:g} s but the audio lasts only {duration:.2f} s")
        if s.ranged and s.end is not None and s.end > duration + 1e-9:
            warns.append(f"--au '{s.text}': ends at {s.end:g} s, after the audio ({duration:.2f} s): clipped")
            s = AUSpec(s.au, s.value, s.start, None, s.text)
        fixed.append(s)
    for au in AU_NAMES:
        whole = [s for s in fixed if s.au == au and not s.ranged]
        if len(whole) > 1:
            raise InputError(f"--au '{whole[0].text}' and '{whole[1].text}' both set {au} for the whole clip")
        ranged = sorted((s for s in fixed if s.au == au and s.ranged), key=lambda s: s.start)
        for a, b in zip(ranged, ranged[1:]):
            a_end = duration if a.end is None else a.end
            if b.start < a_end:
                raise InputError(f"--au '{a.text}' and '{b.text}' overlap in time for {au}")
    return fixed


def _base(base: str, default_au: np.ndarray | None, F: int, layers: list[str], warns: list[str]) -> np.ndarray:
    if base not in BASES:
        raise InputError(f"unknown base '{base}'; choose from {', '.join(BASES)}")
    if base == "neutral":
        layers.append("base: neutral (all AUs 0)")
        return np.zeros((F, NUM_AUS))
    if default_au is None:
        layers.append("base: neutral (all AUs 0; the model gave no default expression)")
        return np.zeros((F, NUM_AUS))
    d = np.asarray(default_au, np.float64)
    if d.shape != (NUM_AUS,) or not np.isfinite(d).all():
        raise ValueError(f"default_au must be a finite ({NUM_AUS},) vector, got shape {d.shape}")
    if d.min() < -1e-3 or d.max() > 1 + 1e-3:
        warns.append(f"default expression outside [0, 1] (min {d.min():.3f}, max {d.max():.3f}): clipped")
    layers.append("base: the model's default expression (training-mean AUs)")
    return np.broadcast_to(np.clip(d, 0, 1), (F, NUM_AUS)).copy()


def check_controls(num_frames: int, fps: float = 25.0, *, au: Any = None, ease: float = DEFAULT_EASE,
                   timeline: str | Path | Timeline | None = None, au_from: str | Path | None = None,
                   from_end: str = "loop", emotion: str | EmotionSpec | None = None, base: str = "default",
                   pose: str = "training", pose_from: str | Path | None = None
                   ) -> tuple[list[AUSpec], EmotionSpec | None, Timeline | None, list[str]]:
    """Parse and check every control without the slow parts (no video analysis, no model): one-line
    InputErrors for typos, ranges and missing files. -> (--au specs, emotion, timeline, warnings).
    `emogs render` calls it before loading the model; `build_plan` starts with it."""
    if num_frames < 1:
        raise InputError("nothing to render: the audio is shorter than one frame")
    if not (fps > 0):
        raise ValueError("fps must be positive")
    if not (ease >= 0) or ease > 5:
        raise InputError(f"--au-ease {ease:g}: must be between 0 and 5 seconds")
    if base not in BASES:
        raise InputError(f"unknown base '{base}'; choose from {', '.join(BASES)}")
    warns: list[str] = []
    specs = _check_specs(_as_specs(au), num_frames / fps, warns)
    emo = parse_emotion(emotion, EMOTION_NAMES) if isinstance(emotion, str) else emotion
    if pose not in ("training", "static"):
        raise InputError(f"unknown --pose '{pose}'; choose training or static (or --pose-from VIDEO)")
    if from_end not in ("loop", "hold"):
        raise InputError(f"unknown --from-end '{from_end}'; choose loop or hold")
    tl = load_timeline(timeline, fps) if isinstance(timeline, (str, Path)) else timeline
    for flag, path in (("--au-from", au_from), ("--pose-from", pose_from)):
        if path is not None:
            from emogs.io.paths import input_file

            try:
                input_file(path, "a video or an analysis CSV")
            except InputError as e:
                raise InputError(f"{flag} {e}") from None
    return specs, emo, tl, warns


# FACS antagonists (muscles that pull the opposite way): raising the key AU relaxes these
ANTAGONISTS: dict[str, tuple[str, ...]] = {
    "AU01": ("AU04",), "AU02": ("AU04",),  # frontalis vs corrugator / depressor supercilii / procerus
    "AU04": ("AU01", "AU02"),
    "AU05": ("AU07",),  # levator palpebrae vs orbicularis oculi (palpebral part)
    "AU12": ("AU15",), "AU15": ("AU12",),  # zygomaticus major vs depressor anguli oris
    "AU25": ("AU23",), "AU26": ("AU23", "AU17"),  # parting / jaw drop vs lip tightener, chin raiser
}


def relax_antagonists(au: np.ndarray, mask: np.ndarray, edit_mask: np.ndarray, base: np.ndarray) -> list[str]:
    """In place on (F, 17) `au`: where an edit (`edit_mask`: the AU tracks, timelines and --au values, not the
    presets, which name their own combinations) raised an AU above `base` (F, 17), scale down each of its
    antagonists' value by the raise's share of the way to 1, except where the user or a preset set the
    antagonist (its share in `mask`). Returns a description per relaxed AU."""
    r = np.zeros_like(au)
    for a, ants in ANTAGONISTS.items():
        i = AU_INDEX[a]
        raise_ = np.clip((au[:, i] - base[:, i]) / np.maximum(1 - base[:, i], 1e-6), 0, 1) * edit_mask[:, i]
        for b in ants:
            j = AU_INDEX[b]
            r[:, j] = np.maximum(r[:, j], raise_)
    out = []
    for j in np.flatnonzero(r.max(0) > 0.01):
        before = au[:, j].copy()
        au[:, j] *= 1 - r[:, j] * (1 - mask[:, j])
        if (before - au[:, j]).max() > 0.01:
            out.append(f"{AU_NAMES[j]} down to {au[:, j].min():.2f}")
    return out


def build_plan(num_frames: int, fps: float = 25.0, *, au: Any = None, ease: float = DEFAULT_EASE,
               timeline: str | Path | Timeline | None = None, au_from: str | Path | None = None,
               from_end: str = "loop", emotion: str | EmotionSpec | None = None, base: str = "default",
               default_au: np.ndarray | None = None, blinks: bool = True, blink_seed: int = 0,
               pose: str = "training", pose_from: str | Path | None = None,
               analysis_cache: dict | None = None) -> ControlPlan:
    """Every control -> ControlPlan for `num_frames` frames (use emogs.io.media.frames_for_audio).

    au: "AU12=0.8", ["AU01=1@2-4", ...], {"AU12": 0.8, "AU01": (1.0, 2.0, 4.0)} or AUSpec list.
    default_au: (17,) training-mean AUs (the model's default expression) for base="default".
    """
    # parse everything first, so a typo fails before any slow analysis
    specs, emo, tl, warns = check_controls(num_frames, fps, au=au, ease=ease, timeline=timeline, au_from=au_from,
                                           from_end=from_end, emotion=emotion, base=base, pose=pose,
                                           pose_from=pose_from)
    F, dur = num_frames, num_frames / fps
    layers: list[str] = []
    cache = {} if analysis_cache is None else analysis_cache

    au_t = _base(base, default_au, F, layers, warns)
    base_t = au_t.copy()
    mask = np.zeros((F, NUM_AUS))

    if emo is not None:
        _blend(au_t, mask, *emotion_layer(emo, F))
        e = EMOTIONS[emo.name]
        kept = [a for a in PRESERVED_AUS if a not in e.aus]
        layers.append(f"emotion: {emo.name} x{emo.intensity:g} (FACS {e.facs}: "
                      + (", ".join(f"{k} {v * emo.intensity:.2f}" for k, v in e.aus.items()) or "all 0")
                      + f"; {' '.join(kept)} left to the base, blinks and speech)")

    preset_mask = mask.copy()
    if au_from is not None:
        from emogs.control.transfer import analyze_source, au_layer_from_source, describe_fit

        src = analyze_source(au_from, cache, max_seconds=dur + 1.0)
        _blend(au_t, mask, *au_layer_from_source(src, F, fps, from_end))
        n_aus = int(src.au_present.sum())
        layers.append(f"au-from: {src.path} ({n_aus} AU{'s' if n_aus != 1 else ''}; "
                      f"{describe_fit(src, F, fps, from_end)}; smoothed 40 ms)")
        warns += [f"--au-from {src.path}: {n}" for n in src.notes]

    if tl is not None:
        value, weight, w = tl.to_frames(F, fps)
        _blend(au_t, mask, value, weight)
        layers.append(f"timeline: {tl.source} ({', '.join(tl.points)}; {tl.start_time:.2f}-{tl.end_time:.2f} s, "
                      f"linear, ends held)")
        warns += w + [f"--au-timeline {tl.source}: {n}" for n in tl.notes]

    t = frame_times(F, fps)
    for s in [s for s in specs if not s.ranged] + [s for s in specs if s.ranged]:
        value = np.zeros((F, NUM_AUS))
        weight = np.zeros((F, NUM_AUS))
        i = AU_INDEX[s.au]
        value[:, i] = s.value
        weight[:, i] = ease_window(t, s.start, s.end, ease, dur) if s.ranged else 1.0
        if weight[:, i].max() == 0:
            warns.append(f"--au '{s.text}': the range holds no frame (frames are {1 / fps:g} s apart): no effect")
        _blend(au_t, mask, value, weight)
        layers.append(f"--au {s.describe()}" + (f" (ease {ease:g} s)" if s.ranged else ""))

    # the edits' share after the preset (where a preset set an AU fully, its edits do not count here)
    edit_mask = np.where(preset_mask > 0.999, 0.0, 1 - (1 - mask) / np.maximum(1 - preset_mask, 1e-6))
    relaxed = relax_antagonists(au_t, mask, np.clip(edit_mask, 0, 1), base_t)
    if relaxed:
        layers.append("antagonists relaxed where not set: " + ", ".join(relaxed))

    events: list[tuple[float, float]] = []
    i45 = AU_INDEX["AU45"]
    if blinks and not has_blinks(au_t[:, i45]) and mask[:, i45].min() < 1:
        pulses, events = blink_track(F, fps, blink_seed)
        au_t[:, i45] = np.maximum(au_t[:, i45], pulses * (1.0 - mask[:, i45]))
        layers.append(f"blinks: {len(events)} generated (seed {blink_seed}; every ~4 s, 150-250 ms)")
    elif blinks:
        layers.append("blinks: kept from the tracks above" if has_blinks(au_t[:, i45])
                      else "blinks: none (AU45 is set by the user for the whole clip)")
    else:
        layers.append("blinks: off")

    if pose_from is not None:
        from emogs.control.transfer import analyze_source, describe_fit, motion_from_source

        src = analyze_source(pose_from, cache, max_seconds=dur + 1.0)
        req = PoseRequest("video", src.path, motion_from_source(src, F, fps, from_end))
        layers.append(f"pose-from: {src.path} ({describe_fit(src, F, fps, from_end)}; smoothed 40 ms)")
    else:
        req = PoseRequest(pose)

    return ControlPlan(np.clip(au_t, 0, 1).astype(np.float32), np.clip(mask, 0, 1).astype(np.float32), req, fps,
                       AU_NAMES, layers, warns, events, emo)
