"""`emogs eval-controls`: did my AU edit work, and what else moved?

Renders one speech clip plain and under each requested control (an AU edit `AU01=1@1-3`, an emotion preset
`happy:0.7`, or the standard set), measures every render as a user would get it (MediaPipe on the MP4:
`emogs.face.analyze`, one landmark-geometry baseline for all renders taken from the plain render's least
expressive frames; dlib for identity) and reports, per condition:
- AU edits: the measured AU where the edit is fully on vs where it is off, on the edited and on the plain
  render; effect = edit delta - plain delta; the AU the model received (after speech AUs and the clamp to
  the training range) next to what was asked; every other AU's effect (off-target motion);
- emotion presets: each defining AU's clip mean on the preset render minus the plain render's;
- AU-noise stress tests (`--au-noise SD`): the plain controls with frame-level Gaussian noise (sd SD,
  seeded) added to all 17 AU tracks; the AU-Jerk (emogs.eval.au_metrics) of the render's measured AUs
  against the plain render's, and of the noisy track the model received: how much of the input's jitter
  reaches the face (the paper's test of CIT-AE's temporal smoothing);
- for every condition: the lip and face landmark shift against the plain render (px at 512), the mouth
  track's correlation with the plain one, the share of the pixel change that falls outside the face oval,
  dlib identity cosine against the plain render, and whether the edit reached its goal (`--goal-au`,
  `--goal-emotion`).
Writes OUT/results.json, tables.md, one plot per condition, mouth_tracks.png, contact_sheet.png and
contact_diff.png; the renders stay in OUT/videos (reused when their settings match, so renders made on a
GPU machine with `--render-only` are measured elsewhere by the same command).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emogs.constants import FPS, SAMPLE_RATE
from emogs.errors import InputError

# the standard suite: each AU at 1.0 for a 4 s window, and the presets (docs/control_proof.md)
STANDARD_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU09", "AU12", "AU15", "AU26", "AU45")
STANDARD_EMOTIONS = ("surprised", "sad", "angry", "happy", "disgusted", "fear")
GOAL_AU = 0.3  # an AU edit at 1.0 "works" when it raises the measured AU by this much over the plain render
GOAL_EMOTION = 0.2  # a preset "works" for a defining AU that rises this much
MARGIN_S = 0.2  # frames this close to a ramp of the edit count neither as inside nor outside
MIN_ANALYSIS_SIZE = 256  # small renders are upscaled before MediaPipe (its detector misses tiny faces)
SHEET_TILE = 200
NOISE_SEED = 0  # the AU-noise conditions' noise is seeded: the same plan at render and at measuring time


@dataclass(frozen=True)
class Condition:
    """One render: plain, an AU edit, an emotion preset (optionally with AU overrides)."""
    name: str
    au: tuple[str, ...] = ()
    emotion: str | None = None
    noise: float = 0.0  # sd of the frame-level Gaussian noise added to the plain plan's AU tracks

    @property
    def kind(self) -> str:
        if self.noise > 0:
            return "noise"
        return "emotion" if self.emotion else ("au" if self.au else "plain")

    def flags(self) -> str:
        """The `emogs render` flags of this condition (a noise condition has none: its plan is built here)."""
        if self.noise > 0:
            return f"(AU tracks + N(0, {self.noise:g}) per frame, seed {NOISE_SEED})"
        out = [f"--emotion {self.emotion}"] if self.emotion else []
        out += [f"--au {a}" for a in self.au]
        return " ".join(out) or "(none)"

    def edited_au(self) -> str | None:
        """The AU an AU-edit condition sets (its first spec), else None."""
        if self.kind != "au":
            return None
        from emogs.control.parse import parse_au_spec

        return parse_au_spec(self.au[0])[0].au


PLAIN = Condition("plain")


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s).strip("_") or "c"


def standard_conditions(duration: float) -> list[Condition]:
    """The standard suite for audio of `duration` seconds: each STANDARD_AUS at 1.0 over a 4 s window in the
    middle of the clip (shorter clips: all but 0.5 s at each end, at least 60% of the clip) and each
    STANDARD_EMOTIONS preset."""
    w = min(4.0, max(duration - 1.0, 0.6 * duration))
    a = max(0.0, (duration - w) / 2)
    out = [Condition(au, (f"{au}=1.0@{a:.2f}-{a + w:.2f}",)) for au in STANDARD_AUS]
    return out + [Condition(e, (), e) for e in STANDARD_EMOTIONS]


def conditions_from_args(au: list[str] | None, emotion: list[str] | None, standard: bool,
                         duration: float, au_noise: list[float] | None = None) -> list[Condition]:
    """CLI lists -> conditions: each --au value one AU-edit condition, each --emotion one preset, --standard
    the suite, each --au-noise SD one noise condition; plain always first."""
    from emogs.control.emotions import EMOTION_NAMES
    from emogs.control.parse import parse_au_spec, parse_emotion

    au, emotion = list(au or []), list(emotion or [])
    for a in au:
        parse_au_spec(a)  # InputError for a bad spec, before any work
    for e in emotion:
        parse_emotion(e, EMOTION_NAMES)
    out: list[Condition] = [PLAIN]
    if standard:
        out += standard_conditions(duration)
    out += [Condition(_safe_name(a), (a,)) for a in au]
    out += [Condition(_safe_name(e), (), e) for e in emotion]
    for sd in au_noise or []:
        if not 0 < sd <= 1:
            raise InputError(f"--au-noise {sd}: the noise sd must be in (0, 1] (AU intensity units)")
        out.append(Condition(_safe_name(f"au_noise_{sd:g}"), noise=float(sd)))
    if len(out) == 1:
        raise InputError("nothing to measure: give --au AU=V[@S-E], --emotion NAME[:I], --au-noise SD or --standard")
    names = [c.name for c in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"conditions given twice: {', '.join(dup)}")
    return out


@dataclass
class ControlOptions:
    size: int | None = None  # render size (default: the run's resolution)
    device: str = "auto"
    batch: int = 8
    id_stride: int = 5  # dlib identity on every k-th frame
    allow_extrapolation: bool = False  # do not clamp requests to the training range
    speech_aus: bool = True  # speech AUs follow the audio where the condition does not set them
    blinks: bool = False  # generated blinks would confound AU45 and the plain comparison
    goal_au: float = GOAL_AU
    goal_emotion: float = GOAL_EMOTION
    rerender: bool = False  # render the videos again even where they match
    progress: bool = True
    au_drive: str = "auto"  # mesh runs: auto | table | person (emogs.Avatar.load)


# -- plans: what each render asked for and what the model received ------------------------------------------
def add_au_noise(plan, sd: float, seed: int = NOISE_SEED):
    """A copy of a ControlPlan with N(0, sd) added to every AU of every frame (clipped to [0, 1]); the mask
    is kept, so speech AUs still add their deviation where the user set nothing."""
    import dataclasses

    rng = np.random.default_rng(seed)
    au = np.clip(plan.au + rng.normal(0.0, sd, plan.au.shape), 0.0, 1.0).astype(np.float32)
    return dataclasses.replace(plan, au=au, layers=[*plan.layers, f"AU noise N(0, {sd:g}) per frame, seed {seed}"])


def plans_for(conditions: list[Condition], num_frames: int, default_au: np.ndarray, blinks: bool) -> dict:
    from emogs.control.plan import build_plan

    out = {}
    for c in conditions:
        p = build_plan(num_frames, FPS, au=list(c.au) or None, emotion=c.emotion, default_au=default_au, blinks=blinks)
        out[c.name] = add_au_noise(p, c.noise) if c.noise > 0 else p
    return out


def received_aus(plans: dict, wav: np.ndarray, run, opts: ControlOptions) -> dict[str, np.ndarray]:
    """The AU tracks the model was driven with per condition (speech AUs added), computed from the run folder
    without loading the model. Free heads: clamped to the training range unless extrapolation was allowed.
    Mesh-rigged heads: what the face mesh is driven with, the request as asked (their learned residual's input
    is clamped or faded beyond the training range, `emogs.avatar.residual_aus`; `residual_received_aus`)."""
    from emogs.audio import feature_rows
    from emogs.avatar import clamp_to_range, speech_driven_aus

    mc = run.model_config()
    info = run.dataset_info()
    speech = run.speech_aus() if opts.speech_aus else None
    rows, rpf = feature_rows(wav, mc.audio_feature) if speech is not None else (None, 0)
    lo, hi = np.asarray(info["au_min"], np.float32), np.asarray(info["au_max"], np.float32)
    mesh = mc.kind in ("mesh", "emotag")
    out = {}
    for n, p in plans.items():
        au = speech_driven_aus(p, rows, rpf, speech, mc.audio_window)
        out[n] = au if opts.allow_extrapolation or mesh else clamp_to_range(au, lo, hi)
    return out


def residual_received_aus(received: dict[str, np.ndarray], run, opts: ControlOptions) -> dict[str, np.ndarray]:
    """Mesh-rigged heads: what their learned residual received of `received_aus` (clamped or faded beyond the
    training range, ModelConfig.residual_beyond); the same tracks for free heads and with extrapolation allowed."""
    from emogs.avatar import residual_aus

    mc = run.model_config()
    if mc.kind not in ("mesh", "emotag") or opts.allow_extrapolation:
        return received
    info = run.dataset_info()
    lo, hi = np.asarray(info["au_min"], np.float32), np.asarray(info["au_max"], np.float32)
    d = np.asarray(info["au_mean"], np.float32)
    return {n: residual_aus(a, lo, hi, d, mc.residual_beyond, mc.residual_fade) for n, a in received.items()}


# -- rendering -------------------------------------------------------------------------------------------
def run_render_settings(run, opts: ControlOptions) -> dict[str, Any]:
    """The run's own settings that change a render besides its weights (mesh runs: how the learned residual takes
    requests beyond the training range, and person-calibrated AU drive gains when used); {} otherwise, so specs
    of earlier renders still match."""
    mc = run.model_config()
    out: dict[str, Any] = {}
    if mc.kind not in ("mesh", "emotag"):
        return out
    if mc.residual_beyond != "hold" and not opts.allow_extrapolation:
        out["residual"] = f"{mc.residual_beyond}:{mc.residual_fade:g}"
    if opts.au_drive not in ("auto", "table", "person"):
        raise InputError(f"unknown --au-drive '{opts.au_drive}'; choose from auto, table, person")
    drive = run.au_drive() if opts.au_drive != "table" else None
    if opts.au_drive == "person" and drive is None:
        raise InputError(f"{run.path}: no person-calibrated AU drive (au_drive.json); make it with "
                         "`emogs calibrate-drive RUN`, or use --au-drive table")
    if drive is not None:
        out["au_drive"] = {k: float(v) for k, v in sorted(drive["gains"].items())}
    return out


def render_spec(model_sha: str, audio_sha: str, c: Condition, opts: ControlOptions,
                run_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """What decides a condition's render: the run's weights, the audio, the controls and render settings."""
    return dict(model=model_sha, audio=audio_sha,
                flags=c.flags(), size=opts.size, extrapolation=opts.allow_extrapolation,
                speech_aus=opts.speech_aus, blinks=opts.blinks, **(run_settings or {}))


def check_renders(run, audio: Path, conditions: list[Condition], videos: Path, opts: ControlOptions) -> dict[str, Path]:
    """For measuring renders made elsewhere (e.g. `--render-only` on a GPU machine) without the run's weights:
    every condition's video must be there, made from this audio file with these controls and settings
    (videos/specs.json; the weights are not checked). -> {name: mp4}."""
    from emogs.io.atomic import read_json, sha256_file

    spec_file = videos / "specs.json"
    if not spec_file.is_file():
        raise InputError(f"{videos}: no renders to measure (specs.json missing); render them with --render-only")
    specs = read_json(spec_file)
    audio_sha = sha256_file(audio)
    extra = run_render_settings(run, opts)
    paths = {}
    for c in conditions:
        want = {k: v for k, v in render_spec("", audio_sha, c, opts, extra).items() if k != "model"}
        have = {k: v for k, v in (specs.get(c.name) or {}).items() if k != "model"}
        p = videos / f"{c.name}.mp4"
        if not p.is_file() or have != want:
            raise InputError(f"{p}: missing or made with other settings ({c.flags()}); render it again")
        paths[c.name] = p
    return paths


def render_conditions(run, audio: Path, wav: np.ndarray, conditions: list[Condition], videos: Path,
                      opts: ControlOptions, log: Callable[[str], None]) -> dict[str, Path]:
    """Render the conditions whose video is missing or was made with other settings; -> {name: mp4}."""
    from emogs.io.atomic import read_json, sha256_file, write_json

    videos.mkdir(parents=True, exist_ok=True)
    spec_file = videos / "specs.json"
    specs = read_json(spec_file) if spec_file.is_file() else {}
    audio_sha = sha256_file(audio)  # the file, not its samples: decoders differ in the last bit across machines
    model_sha = sha256_file(run.file("model.safetensors"))
    paths = {c.name: videos / f"{c.name}.mp4" for c in conditions}
    extra = run_render_settings(run, opts)
    todo = [c for c in conditions if opts.rerender or not paths[c.name].is_file()
            or specs.get(c.name) != render_spec(model_sha, audio_sha, c, opts, extra)]
    if not todo:
        log(f"[eval-controls] reusing {len(conditions)} renders in {videos}")
        return paths
    from emogs.avatar import Avatar

    from emogs.io.media import frames_for_audio

    av = Avatar.load(run.path, device=opts.device, size=opts.size, au_drive=opts.au_drive)
    for k, c in enumerate(todo):
        t0 = time.time()
        plan = add_au_noise(av.plan(frames_for_audio(len(wav), SAMPLE_RATE, FPS), blinks=opts.blinks), c.noise) \
            if c.noise > 0 else None
        av.render(wav, paths[c.name], au=list(c.au) or None, emotion=c.emotion, blinks=opts.blinks, quiet=True,
                  allow_extrapolation=opts.allow_extrapolation, speech_aus=opts.speech_aus, batch=opts.batch, plan=plan)
        specs[c.name] = render_spec(model_sha, audio_sha, c, opts, extra)
        write_json(spec_file, specs)
        log(f"[eval-controls] rendered {c.name} ({c.flags()}) [{k + 1}/{len(todo)}] in {time.time() - t0:.1f} s")
    return paths


# -- measuring ---------------------------------------------------------------------------------------------
def read_render(path: Path, left_half: bool = False) -> np.ndarray:
    """(F, H, W, 3) uint8 frames of an MP4; the left half of a side-by-side file."""
    from emogs.io.media import read_frames

    frames = np.stack(list(read_frames(path)))
    return np.ascontiguousarray(frames[:, :, : frames.shape[2] // 2]) if left_half else frames


def track(frames: np.ndarray, progress: bool = False) -> dict[str, np.ndarray]:
    """MediaPipe landmarks + blendshapes of every frame (`emogs.face.analyze`), small renders upscaled first;
    landmarks are returned in the frames' own pixels."""
    import cv2

    from emogs.face.analyze import analyze_frames

    h = frames.shape[1]
    k = int(np.ceil(MIN_ANALYSIS_SIZE / h)) if h < MIN_ANALYSIS_SIZE else 1
    up = (f if k == 1 else cv2.resize(f, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC) for f in frames)
    r = analyze_frames(up, FPS, total=len(frames), progress=progress)
    if k != 1:
        r["landmarks"] = r["landmarks"] / k
    return r


def shared_baseline(ref: dict[str, np.ndarray]) -> np.ndarray:
    """Geometry reference: median features of the reference clip's least expressive tracked frames."""
    from emogs.face.aus import geometry_features, rest_frames

    ok = ref["success"]
    if ok.sum() < 3:
        raise InputError("the plain render has fewer than 3 frames with a detected face: nothing to compare")
    return np.median(geometry_features(ref["landmarks"][ok][rest_frames(ref["blendshapes"][ok])]), axis=0)


def measured_aus(res: dict[str, np.ndarray], base: np.ndarray) -> np.ndarray:
    """(F, 17) AUs with the shared baseline; NaN where no face was found."""
    from emogs.face.aus import AU_NAMES, aus_from_blendshapes

    ok = res["success"]
    out = np.full((len(ok), len(AU_NAMES)), np.nan, np.float32)
    if ok.any():
        out[ok] = aus_from_blendshapes(res["blendshapes"][ok], res["landmarks"][ok], baseline=base)
    return out


def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over the frames where both are finite (NaN if < 10 frames or constant)."""
    n = min(len(a), len(b))
    a, b = np.asarray(a[:n], np.float64), np.asarray(b[:n], np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def edit_windows(mask: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """(F,) user share of one AU -> (inside, outside) frame masks: inside = the edit fully on (the eased
    part); outside = the edit off and more than `margin` frames from any frame where it is not (the model
    sees a centred window of AU frames, so frames next to a ramp are excluded)."""
    on, off = mask >= 0.999, mask <= 1e-6

    def erode(m: np.ndarray) -> np.ndarray:
        out = m.copy()
        for s in range(1, margin + 2):
            out[s:] &= m[:-s]
            out[:-s] &= m[s:]
        return out

    return on, erode(off)


def edit_stats(edit: np.ndarray, plain: np.ndarray, received: np.ndarray, inside: np.ndarray,
               outside: np.ndarray, j: int) -> dict[str, Any]:
    """AU j on the edited and plain renders (F, 17) and the received track (F, 17): in/out means, deltas,
    effect = edit delta - plain delta, and the effect on every AU (off-target motion)."""
    n = min(len(edit), len(plain), len(received), len(inside))
    inside, outside = inside[:n], outside[:n]
    r = dict(frames_in=int(inside.sum()), frames_out=int(outside.sum()),
             received_in=_mean(received[:n, j][inside]), received_out=_mean(received[:n, j][outside]),
             edit_in=_mean(edit[:n, j][inside]), edit_out=_mean(edit[:n, j][outside]),
             plain_in=_mean(plain[:n, j][inside]), plain_out=_mean(plain[:n, j][outside]))
    r["edit_delta"] = r["edit_in"] - r["edit_out"]
    r["plain_delta"] = r["plain_in"] - r["plain_out"]
    r["effect"] = r["edit_delta"] - r["plain_delta"]
    r["effect_all_aus"] = np.array([_mean(edit[:n, k][inside]) - _mean(edit[:n, k][outside])
                                    - _mean(plain[:n, k][inside]) + _mean(plain[:n, k][outside])
                                    for k in range(edit.shape[1])])
    return r


def emotion_stats(emo: np.ndarray, plain: np.ndarray, received: np.ndarray, received_plain: np.ndarray,
                  aus: list[int]) -> dict[str, Any]:
    """Clip means of the given AUs: measured on the preset and the plain render, received on both."""
    n = min(len(emo), len(plain))
    rows = {}
    for j in aus:
        rows[j] = dict(received=_mean(received[:n, j]), received_plain=_mean(received_plain[:n, j]),
                       emotion=_mean(emo[:n, j]), plain=_mean(plain[:n, j]))
        rows[j]["delta"] = rows[j]["emotion"] - rows[j]["plain"]
    delta_all = np.array([_mean(emo[:n, k]) - _mean(plain[:n, k]) for k in range(emo.shape[1])])
    return dict(aus=rows, delta_all_aus=delta_all)


def face_masks(lms: np.ndarray, success: np.ndarray, H: int, W: int) -> np.ndarray:
    """(F, 478, 2+) landmarks -> (F, H, W) bool: inside the face oval dilated by 3% of the frame."""
    import cv2

    from emogs.face.zones import FACE_OVAL

    k = max(3, int(0.03 * W)) | 1
    out = np.zeros((len(lms), H, W), bool)
    for i in range(len(lms)):
        if not success[i]:
            continue
        m = np.zeros((H, W), np.uint8)
        cv2.fillPoly(m, [np.round(lms[i][FACE_OVAL, :2]).astype(np.int32)], 1)
        out[i] = cv2.dilate(m, np.ones((k, k), np.uint8)) > 0
    return out


def locality(plain: np.ndarray, edit: np.ndarray, inside_face: np.ndarray, frames: np.ndarray) -> dict[str, float]:
    """|edit - plain| (mean over RGB, 0-255) on the selected frames, and the share of it outside the face."""
    n = min(len(plain), len(edit), len(frames))
    sel = np.flatnonzero(frames[:n] & inside_face[:n].any(axis=(1, 2)))
    if not len(sel):
        return dict(mean_abs_change=float("nan"), outside_share=float("nan"), inside_mean=float("nan"),
                    outside_mean=float("nan"))
    tot = ins = 0.0
    n_in = n_out = 0
    out_sum = 0.0
    for i in sel:  # frame by frame: bounded memory for long clips
        d = np.abs(edit[i].astype(np.float32) - plain[i].astype(np.float32)).mean(-1)
        m = inside_face[i]
        tot += float(d.sum())
        ins += float(d[m].sum())
        out_sum += float(d[~m].sum())
        n_in += int(m.sum())
        n_out += int((~m).sum())
    return dict(mean_abs_change=tot / max(n_in + n_out, 1), outside_share=out_sum / max(tot, 1e-9),
                inside_mean=ins / max(n_in, 1), outside_mean=out_sum / max(n_out, 1))


def identity_vs_plain(frames: dict[str, np.ndarray], names: list[str], stride: int) -> dict[str, dict[str, Any]]:
    """dlib embedding cosine of each render vs the plain render on every `stride`-th frame (plain's face box)."""
    from emogs.eval.identity import DlibFaceEmbedder, cosine

    emb = DlibFaceEmbedder()
    F = min(len(v) for v in frames.values())
    idx = np.arange(0, F, max(1, stride))
    rects = {i: emb.detect(frames["plain"][i]) for i in idx}
    ref = {i: emb.embed(frames["plain"][i], r) for i, r in rects.items() if r is not None}
    out = {}
    for n in names:
        cs = [cosine(e, ref[i]) for i in ref if ref[i] is not None
              for e in [emb.embed(frames[n][i], rects[i])] if e is not None]
        out[n] = dict(id_frames=len(cs), id_cos_vs_plain=_mean(np.array(cs)),
                      id_cos_vs_plain_min=float(np.min(cs)) if cs else float("nan"))
    return out


def mouth_motion(lms: np.ndarray, success: np.ndarray, wav: np.ndarray | None) -> dict[str, float]:
    """Mouth opening (inner-lip gap / eye-corner distance) spread, and its correlation with the 1-3 kHz
    speech energy (`emogs.eval.sync`; at lag 0 and at the best lag within +-15 frames)."""
    from emogs.eval import landmarks as lmk
    from emogs.eval.sync import sync_scores

    m = lmk.mouth_opening(np.where(success[:, None, None], lms, np.nan))
    out = dict(mouth_open_mean=_mean(m), mouth_open_sd=float(np.nanstd(m)) if np.isfinite(m).any() else float("nan"))
    if np.isfinite(m).sum() >= 10:
        q5, q95 = np.nanpercentile(m, [5, 95])
        out["mouth_open_range_5_95"] = float(q95 - q5)
    if wav is not None:
        s, _ = sync_scores(m, wav, SAMPLE_RATE, FPS)
        out.update(sync_mouth_audio_corr=s["sync_mouth_audio_corr"], sync_best_corr=s["sync_best_corr"],
                   sync_offset_frames=s["sync_offset_frames"])
    return out


def measure(frames: dict[str, np.ndarray], conditions: list[Condition], plans: dict, received: dict[str, np.ndarray],
            wav: np.ndarray | None, opts: ControlOptions, log: Callable[[str], None] = lambda s: None
            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Measure every condition's frames against the plain render -> (results per condition, arrays for
    the figures). `frames`, `plans` and `received` are keyed by condition name and include "plain"."""
    from emogs.control.emotions import EMOTION_NAMES, EMOTIONS
    from emogs.control.names import AU_INDEX, AU_NAMES
    from emogs.control.parse import parse_emotion
    from emogs.eval import landmarks as lmk
    from emogs.eval.au_metrics import au_jerk, au_jerk_per_au

    names = [c.name for c in conditions]
    if names[0] != "plain":
        raise ValueError("the first condition must be plain")
    F = min(len(frames[n]) for n in names)
    H, W = frames["plain"].shape[1:3]
    t0 = time.time()
    raw = {}
    for n in names:
        raw[n] = track(frames[n][:F])
        log(f"[eval-controls] tracked {n}: {raw[n]['success'].mean():.0%} of frames with a face "
            f"({time.time() - t0:.0f} s)")
    base = shared_baseline(raw["plain"])
    meas = {n: measured_aus(raw[n], base) for n in names}
    lms = {n: np.where(raw[n]["success"][:, None, None], raw[n]["landmarks"], np.nan) for n in names}
    ok = {n: raw[n]["success"] for n in names}
    inside_face = face_masks(raw["plain"]["landmarks"], raw["plain"]["success"], H, W)
    ident = identity_vs_plain({n: frames[n][:F] for n in names}, names, opts.id_stride)
    margin = int(round(MARGIN_S * FPS))
    mouth_plain = lmk.mouth_opening(lms["plain"])
    res: dict[str, Any] = {}
    for c in conditions:
        n = c.name
        mouth = lmk.mouth_opening(lms[n])
        r: dict[str, Any] = dict(kind=c.kind, flags=c.flags(), tracked=float(ok[n].mean()),
                                 lip_shift_px512=_mean(lmk.lmd(lms[n], lms["plain"], lmk.LIPS, W)),
                                 face_shift_px512=_mean(lmk.lmd(lms[n], lms["plain"], lmk.FACE, W)),
                                 mouth_corr_vs_plain=pearson(mouth, mouth_plain), **ident[n],
                                 **mouth_motion(raw[n]["landmarks"], ok[n], wav), au_jerk=au_jerk(meas[n][:F]))
        if c.kind == "au":
            au = c.edited_au()
            j = AU_INDEX[au]
            inside, outside = edit_windows(plans[n].mask[:F, j], margin)
            s = edit_stats(meas[n], meas["plain"], received[n], inside, outside, j)
            s["asked_in"] = _mean(plans[n].au[:F, j][inside])
            s["effect_all_aus"] = dict(zip(AU_NAMES, s["effect_all_aus"]))
            s["lip_shift_in_window_px512"] = _mean(lmk.lmd(lms[n], lms["plain"], lmk.LIPS, W)[inside])
            s["mouth_corr_vs_plain_in_window"] = pearson(mouth[inside], mouth_plain[inside])
            s.update({f"locality_{k}": v for k, v in locality(frames["plain"], frames[n], inside_face, inside).items()})
            s["worked"] = bool(np.isfinite(s["effect"]) and s["effect"] >= opts.goal_au)
            r.update(au=au, **s)
        elif c.kind == "emotion":
            emo = parse_emotion(c.emotion, EMOTION_NAMES).name
            idx = [AU_INDEX[a] for a in EMOTIONS[emo].aus]
            s = emotion_stats(meas[n], meas["plain"], received[n], received["plain"], idx)
            for j in idx:
                s["aus"][j]["asked"] = _mean(plans[n].au[:F, j])
                s["aus"][j]["worked"] = bool(np.isfinite(s["aus"][j]["delta"]) and s["aus"][j]["delta"] >= opts.goal_emotion)
            everything = np.ones(F, bool)
            r.update(emotion=emo, aus={AU_NAMES[j]: v for j, v in s["aus"].items()},
                     delta_all_aus=dict(zip(AU_NAMES, s["delta_all_aus"])),
                     worked=bool(idx) and all(s["aus"][j]["worked"] for j in idx),
                     **{f"locality_{k}": v for k, v in locality(frames["plain"], frames[n], inside_face,
                                                                 everything).items()})
        elif c.kind == "noise":
            r.update(noise_sd=c.noise, au_jerk_plain=au_jerk(meas["plain"][:F]),
                     au_jerk_received=au_jerk(received[n][:F]), au_jerk_received_plain=au_jerk(received["plain"][:F]),
                     au_jerk_all_aus=dict(zip(AU_NAMES, au_jerk_per_au(meas[n][:F]))),
                     au_jerk_plain_all_aus=dict(zip(AU_NAMES, au_jerk_per_au(meas["plain"][:F]))))
        else:
            r.update(measured_mean=dict(zip(AU_NAMES, np.nanmean(meas[n], axis=0))))
        res[n] = r
    arrays = dict(frames=frames, meas=meas, received=received, plans=plans, lms=lms, F=F, wav=wav,
                  conditions={c.name: c for c in conditions})
    return res, arrays


# -- figures and tables ------------------------------------------------------------------------------------
def plot_condition(path: Path, c: Condition, arrays: dict[str, Any], aus: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emogs.control.names import AU_INDEX
    from emogs.io.atomic import atomic_path

    F = arrays["F"]
    t = np.arange(F) / FPS
    m, p = arrays["meas"][c.name], arrays["meas"]["plain"]
    rec, ask = arrays["received"][c.name], arrays["plans"][c.name].au
    fig, ax = plt.subplots(figsize=(7.2, 2.8), dpi=90)
    for k, a in enumerate(aus):
        j, col = AU_INDEX[a], f"C{k}"
        if np.abs(ask[:F, j] - rec[:F, j]).max() > 1e-3:
            ax.plot(t, ask[:F, j], color=col, lw=1.0, ls=":", label=f"{a} asked")
        ax.plot(t, rec[:F, j], color=col, lw=2.2, alpha=0.5, label=f"{a} received by the model")
        ax.plot(t, m[:F, j], color=col, lw=1.2, label=f"{a} measured")
        ax.plot(t, p[:F, j], color=col, lw=0.9, ls="--", label=f"{a} plain render")
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlim(0, max(float(t[-1]), 1e-3))
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("AU intensity", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(f"{c.name} ({c.flags()}): asked, received, measured", fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_mouth(path: Path, arrays: dict[str, Any], names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emogs.eval import landmarks as lmk
    from emogs.eval.sync import band_energy
    from emogs.io.atomic import atomic_path

    F = arrays["F"]
    t = np.arange(F) / FPS
    fig, axes = plt.subplots(2 if arrays["wav"] is not None else 1, 1, figsize=(7.2, 3.8), dpi=90, sharex=True,
                             squeeze=False)
    a1 = axes[0, 0]
    for k, n in enumerate(names):
        a1.plot(t, lmk.mouth_opening(arrays["lms"][n])[:F], lw=1.6 if n == "plain" else 0.8,
                color="k" if n == "plain" else f"C{k % 10}", label=n)
    a1.set_ylabel("mouth opening", fontsize=8)
    a1.legend(fontsize=6, ncol=6, loc="upper right", frameon=False)
    a1.set_title("mouth opening of every render" + (" vs the speech band energy" if arrays["wav"] is not None
                                                    else ""), fontsize=9)
    if arrays["wav"] is not None:
        a2 = axes[1, 0]
        a2.plot(t, band_energy(arrays["wav"], F), "k-", lw=0.8)
        a2.set_ylabel("1-3 kHz dB", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)", fontsize=8)
    for a in axes[:, 0]:
        a.tick_params(labelsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def sheet_frame(c: Condition, plan, F: int) -> int:
    """The frame a contact sheet shows for a condition: the middle of its edit window (AU edits), else the
    clip's middle."""
    if c.kind == "au":
        from emogs.control.names import AU_INDEX

        on = np.flatnonzero(plan.mask[:F, AU_INDEX[c.edited_au()]] >= 0.999)
        if len(on):
            return int(on[len(on) // 2])
    return F // 2


def contact_sheets(out: Path, arrays: dict[str, Any], names: list[str]) -> None:
    """contact_sheet.png: the face (one box for all, from the plain render) of every condition at its sheet
    frame (`sheet_frame`; the plain render at the clip's middle); contact_diff.png: |condition - plain| x 4,
    each at its condition's sheet frame."""
    import cv2
    from PIL import Image

    from emogs.eval.landmarks import face_box
    from emogs.io.atomic import atomic_path

    F = arrays["F"]
    plain_f = arrays["frames"]["plain"]
    H, W = plain_f.shape[1:3]
    lm = arrays["lms"]["plain"][F // 2]
    x0, y0, x1, y1 = face_box(lm, W, H, margin=0.12) if np.isfinite(lm).all() else (0, 0, W, H)
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    x0, y0 = max(0, min(W - side, cx - side // 2)), max(0, min(H - side, cy - side // 2))

    def crop(img):
        return cv2.resize(img[y0:y0 + side, x0:x0 + side], (SHEET_TILE, SHEET_TILE), interpolation=cv2.INTER_CUBIC)

    def label(img, text):
        img = img.copy()
        cv2.rectangle(img, (0, 0), (SHEET_TILE, 20), (0, 0, 0), -1)
        cv2.putText(img, text[:34], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        return img

    tiles, diffs = [], []
    for n in names:
        c = arrays["conditions"][n]
        i = sheet_frame(c, arrays["plans"][n], F)
        f, p = arrays["frames"][n][i], plain_f[i]
        tiles.append(label(crop(f), f"{n} (t={i / FPS:.1f}s)"))
        d = np.clip(np.abs(f.astype(np.int16) - p.astype(np.int16)).max(axis=2) * 4, 0, 255).astype(np.uint8)
        diffs.append(label(cv2.applyColorMap(crop(d), cv2.COLORMAP_INFERNO)[..., ::-1], f"|{n} - plain| x4"))
    cols = min(4, len(tiles))
    for imgs, fname in ((tiles, "contact_sheet.png"), (diffs, "contact_diff.png")):
        while len(imgs) % cols:
            imgs.append(np.zeros_like(imgs[0]))
        sheet = np.concatenate([np.concatenate(imgs[r:r + cols], axis=1) for r in range(0, len(imgs), cols)], axis=0)
        img = Image.fromarray(sheet)
        if fname == "contact_diff.png":  # a colour-mapped heat image: a 256-colour palette loses ~nothing
            img = img.quantize(256, dither=Image.Dither.NONE)
        with atomic_path(out / fname) as tmp:
            img.save(tmp, format="PNG", optimize=True)


def f2(x: Any, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def f4(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.4f}"


def tables(res: dict[str, Any], goal_au: float = GOAL_AU, goal_emotion: float = GOAL_EMOTION) -> str:
    """Markdown tables of `measure`'s results (strict-JSON form: NaN as None)."""
    L = ["### AU edits: the edited AU measured on the render, where the edit is fully on vs off (more than 0.2 s "
         "from its ramps)", "",
         f"| condition | received in / out | edit in / out | plain in / out | **effect** | works (>= {goal_au:.2f}) | "
         "other AUs moved (>= 0.10) | lip shift (px) | change outside face | id cos min |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for n, r in res.items():
        if r.get("kind") != "au":
            continue
        ask = "" if r["asked_in"] is None or r["received_in"] is None or abs(r["asked_in"] - r["received_in"]) < 1e-3 \
            else f" (asked {f2(r['asked_in'])})"
        if r.get("residual_in") is not None and abs(r["residual_in"] - r["received_in"]) >= 1e-3:
            ask += f" (residual {f2(r['residual_in'])})"
        other = ", ".join(f"{a} {v:+.2f}" for a, v in r["effect_all_aus"].items()
                          if a != r["au"] and v is not None and abs(v) >= 0.1) or "none"
        share = r.get("locality_outside_share")
        L.append(f"| `{r['flags']}` | {f2(r['received_in'])}{ask} / {f2(r['received_out'])} | {f2(r['edit_in'])} / "
                 f"{f2(r['edit_out'])} | {f2(r['plain_in'])} / {f2(r['plain_out'])} | **{f2(r['effect'], True)}** | "
                 f"{'yes' if r['worked'] else 'no'} | {other} | {f2(r['lip_shift_in_window_px512'])} | "
                 f"{'n/a' if share is None else f'{100 * share:.0f}%'} | {f2(r['id_cos_vs_plain_min'])} |")
    L += ["", "### Emotion presets: clip means of the preset's defining AUs, preset render minus plain render", "",
          f"| condition | AU: received (plain) -> measured delta | works (every AU >= {goal_emotion:.2f}) | "
          "lip shift (px) | change outside face | id cos min |", "|---|---|---|---|---|---|"]
    for n, r in res.items():
        if r.get("kind") != "emotion":
            continue
        cells = "; ".join(f"{a}: {f2(v['received'])} ({f2(v['received_plain'])}) -> {f2(v['delta'], True)}"
                          for a, v in r["aus"].items())
        share = r.get("locality_outside_share")
        L.append(f"| `{r['flags']}` | {cells} | {'yes' if r['worked'] else 'no'} | {f2(r['lip_shift_px512'])} | "
                 f"{'n/a' if share is None else f'{100 * share:.0f}%'} | {f2(r['id_cos_vs_plain_min'])} |")
    noisy = {n: r for n, r in res.items() if r.get("kind") == "noise"}
    if noisy:
        L += ["", "### AU-noise stress test: AU-Jerk (mean |second difference| per frame^2) of the measured AUs", "",
              "| condition | render | plain render | AU track received (noisy) | received (plain) |", "|---|---|---|---|---|"]
        for n, r in noisy.items():
            L.append(f"| {n} | {f4(r['au_jerk'])} | {f4(r['au_jerk_plain'])} | {f4(r['au_jerk_received'])} | "
                     f"{f4(r['au_jerk_received_plain'])} |")
    p = res.get("plain", {})
    L += ["", "### Every render: mouth motion with the speech", "",
          "| condition | tracked | mouth opening sd | mouth-audio r(0) | best r (lag) | mouth r vs plain |",
          "|---|---|---|---|---|---|"]
    for n, r in res.items():
        lag = r.get("sync_offset_frames")
        L.append(f"| {n} | {100 * r['tracked']:.0f}% | {f2(r.get('mouth_open_sd'))} | "
                 f"{f2(r.get('sync_mouth_audio_corr'), True)} | {f2(r.get('sync_best_corr'), True)}"
                 f"{'' if lag is None else f' ({lag:+.0f})'} | {f2(r.get('mouth_corr_vs_plain'))} |")
    if p:
        L += ["", f"Plain render: {100 * p['tracked']:.0f}% of frames tracked."]
    return "\n".join(L) + "\n"


def json_safe(v: Any) -> Any:
    """NaN -> None, numpy -> Python, recursively (strict JSON)."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, np.ndarray):
        return json_safe(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (float, np.floating)):
        return round(float(v), 4) if np.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def write_outputs(out: Path, res: dict[str, Any], arrays: dict[str, Any], meta: dict[str, Any],
                  opts: ControlOptions) -> Path:
    """results.json, tables.md, a plot per condition, mouth_tracks.png and the contact sheets."""
    from emogs.control.emotions import EMOTIONS
    from emogs.io.atomic import write_json, write_text

    out.mkdir(parents=True, exist_ok=True)
    names = list(res)
    for n, r in res.items():
        c = arrays["conditions"][n]
        if r["kind"] == "au":
            plot_condition(out / f"{n}.png", c, arrays, [r["au"]])
        elif r["kind"] == "emotion":
            plot_condition(out / f"{n}.png", c, arrays, list(EMOTIONS[r["emotion"]].aus))
    plot_mouth(out / "mouth_tracks.png", arrays, names)
    contact_sheets(out, arrays, names)
    safe = json_safe(res)
    write_text(out / "tables.md", tables(safe, opts.goal_au, opts.goal_emotion))
    write_json(out / "results.json", json_safe(dict(meta=meta, conditions=res)))
    return out / "results.json"


# -- the command ---------------------------------------------------------------------------------------------
REPORT_FILES = ("results.json", "tables.md", "contact_sheet.png", "contact_diff.png", "mouth_tracks.png")


def check_output_folder(out: Path, inputs: list, overwrite: bool) -> None:
    """Fail before any work when the report folder cannot be written, would overwrite an input, or holds an
    earlier report (replaced only with `overwrite`, the CLI's --force; its renders are reused either way)."""
    from emogs.io.paths import output_dir

    output_dir(out, inputs=inputs, writes=REPORT_FILES, what="report folder")
    if (out / "results.json").exists() and not overwrite:
        raise InputError(f"{out}: holds an earlier report (results.json); pass --force to replace it (its renders "
                         "are reused when their settings match), or choose another -o folder")


def eval_controls(run_dir: str | Path, audio: str | Path, out_dir: str | Path, conditions: list[Condition],
                  opts: ControlOptions | None = None, render_only: bool = False,
                  log: Callable[[str], None] | None = None, overwrite: bool = True, measure_only: bool = False) -> Path:
    """Render (or reuse) every condition and measure it; returns OUT/results.json (OUT/videos with
    `render_only`). `measure_only`: measure OUT/videos made elsewhere (`check_renders`; the run folder then
    needs no weights). An earlier report in OUT is replaced only with `overwrite`."""
    from emogs.io.media import load_audio
    from emogs.run import open_run

    opts = opts or ControlOptions()
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    run = open_run(run_dir)
    if not run.has_model() and not measure_only:
        raise InputError(f"{run.path}: no model.safetensors (training not finished?)")
    out, audio = Path(out_dir), Path(audio)
    check_output_folder(out, [audio, *(run.path / f for f in ("model.safetensors", "config.json", "run.json"))],
                        overwrite or render_only)
    if not conditions or conditions[0] != PLAIN:
        raise InputError("the conditions must start with the plain render")
    wav = load_audio(audio, SAMPLE_RATE)
    F = int(np.ceil(len(wav) * FPS / SAMPLE_RATE - 1e-9))
    if F < 2 * int(round(MARGIN_S * FPS)) + 10:
        raise InputError(f"{audio}: {len(wav) / SAMPLE_RATE:.2f} s of audio is too short to measure edits "
                         "(needs at least 1 s)")
    t0 = time.time()
    paths = (check_renders(run, audio, conditions, out / "videos", opts) if measure_only
             else render_conditions(run, audio, wav, conditions, out / "videos", opts, log))
    if render_only:
        return out / "videos"
    info = run.dataset_info()
    frames = {c.name: read_render(paths[c.name]) for c in conditions}
    F = min(len(v) for v in frames.values())
    plans = plans_for(conditions, F, np.asarray(info["au_mean"], np.float32), opts.blinks)
    received = received_aus(plans, wav[: int(F * SAMPLE_RATE / FPS)], run, opts)
    res, arrays = measure(frames, conditions, plans, received, wav, opts, log)
    residual = residual_received_aus(received, run, opts)
    if residual is not received:  # mesh heads: what the learned residual got of each edited AU, fully on
        from emogs.control.names import AU_INDEX

        for c in conditions:
            r = res.get(c.name)
            if isinstance(r, dict) and r.get("kind") == "au" and r.get("au") in AU_INDEX:
                j = AU_INDEX[r["au"]]
                on = plans[c.name].mask[:F, j] >= 0.999
                r["residual_in"] = _mean(residual[c.name][:F, j][on]) if on.any() else None
    meta = dict(command="emogs eval-controls " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["eval-controls"] else None,
                run=str(run.path), audio=str(audio), frames=F, size=int(frames["plain"].shape[1]),
                options=asdict(opts), conditions=[asdict(c) for c in conditions],
                judge="MediaPipe FaceLandmarker blendshapes + landmarks (emogs.face.aus, the `emogs analyze` estimator), "
                      "one geometry baseline from the plain render; identity: dlib face embedding cosine",
                seconds=round(time.time() - t0, 1))
    path = write_outputs(out, res, arrays, meta, opts)
    log(tables(json_safe(res), opts.goal_au, opts.goal_emotion))
    log(f"[eval-controls] wrote {out}/results.json, tables.md, plots and contact sheets in {time.time() - t0:.0f} s")
    return path
