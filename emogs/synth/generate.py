"""`emogs synth`: speech + script + renderer -> VIDEO.mp4, VIDEO.gt.csv, VIDEO.events.json.

The ground-truth CSV has the `emogs analyze` layout (`emogs.face.analyze.write_csv`): pose from the
exact camera, the driven blendshapes, and AUs computed from them with
`emogs.face.aus.aus_from_blendshapes` (with the exact projected landmarks), so it compares 1:1 with an
analysis of the video.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from emogs.errors import InputError

DEFAULT_TEXT = ("Hello, I am a synthetic person made for testing. "
                "I can raise my brows, frown a little, and smile at you while I talk.")
FACE_MODELS = ("auto", "mediapipe", "ict")


@dataclass
class SynthConfig:
    text: str = DEFAULT_TEXT
    voice: str = "en-us"
    rate_wpm: int = 150
    events: str = "default"  # parse_events spec, "default" or "none"
    seed: int = 0
    size: int = 512
    fps: float = 25.0
    sample_rate: int = 16000
    lead_in: float = 0.4     # s of silence before the speech
    tail: float = 0.5        # s after the last speech / event
    head_motion: float = 1.0  # scale of the head pose noise (0 = still)
    face_model: str = "auto"


def gt_paths(video: str | Path) -> tuple[Path, Path]:
    """VIDEO.mp4 -> (VIDEO.gt.csv, VIDEO.events.json)."""
    v = Path(video)
    return v.with_suffix(".gt.csv"), v.with_suffix(".events.json")


def euler_deg_to_matrix(ang: np.ndarray) -> np.ndarray:
    """(pitch, yaw, roll) degrees about the canonical x, y, z axes -> (3, 3) rotation Rz @ Ry @ Rx."""
    x, y, z = np.radians(ang)
    Rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    Ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    Rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def _resolve_face_model(name: str) -> str:
    if name not in FACE_MODELS:
        raise InputError(f"--face-model must be one of {', '.join(FACE_MODELS)}")
    if name == "ict":
        raise InputError("--face-model ict is not implemented yet; use mediapipe (the default)")
    return "mediapipe"


def landmarks_px(face: np.ndarray, geo, w2c: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Exact landmarks (478, 3) like `FaceResult.landmarks`: x, y pixels, z relative depth in pixel scale
    (camera depth minus the head origin's, times f / origin depth). 468 mesh vertices + 2 x 5 iris points
    (centre, then four on the iris rim), right eye (468-472) then left (473-477)."""
    iris = []
    for c in geo.eye_centers:
        front = c + np.array([0, 0, geo.eye_radius * 0.92])
        r = geo.eye_radius * 0.42
        iris += [front, front + [r, 0, 0], front + [0, r, 0], front + [-r, 0, 0], front + [0, -r, 0]]
    pts = np.concatenate([face, np.asarray(iris, np.float32)])
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z0 = w2c[2, 3]
    uv = cam @ K.T
    xy = uv[:, :2] / uv[:, 2:3]
    z = (cam[:, 2] - z0) * K[0, 0] / z0
    return np.concatenate([xy, z[:, None]], 1).astype(np.float32)


MAX_HEAD_MOTION = 5.0


def check_config(cfg: SynthConfig) -> None:
    """One-line InputErrors for settings that cannot make a clip (before any work)."""
    if cfg.size < 128 or cfg.size % 2:
        raise InputError("--size must be an even number >= 128")
    if not math.isfinite(cfg.head_motion) or not 0 <= cfg.head_motion <= MAX_HEAD_MOTION:
        raise InputError(f"--head-motion must be a number from 0 (still) to {MAX_HEAD_MOTION:g}, "
                         f"got {cfg.head_motion:g}")
    if not cfg.text.strip():
        raise InputError("--text is empty; give a sentence to speak")
    if not cfg.voice.strip():
        raise InputError("--voice is empty; use an espeak-ng voice such as en-us")


def synth(video: str | Path, cfg: SynthConfig | None = None, progress: bool = True,
          overwrite: bool = True) -> dict:
    """Write the video (H.264 + AAC 16 kHz mono), its ground truth CSV and the events JSON.
    Returns a summary dict (paths, frames, seconds, timings). The three outputs are checked first
    (writable, not folders; existing files only with `overwrite`)."""
    from emogs.face.analyze import write_csv
    from emogs.face.aus import aus_from_blendshapes
    from emogs.face.camera import GL_TO_CV, head_pose
    from emogs.io.atomic import atomic_path
    from emogs.io.media import write_video
    from emogs.synth.render import HeadRenderer, head_transform
    from emogs.synth.rig import deform_face
    from emogs.synth.script import DEFAULT_EVENTS, parse_events, perform
    from emogs.synth.speech import Phoneme, synthesize

    cfg = cfg or SynthConfig()
    video = Path(video)
    if video.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        raise InputError(f"{video}: output must be .mp4")
    check_config(cfg)
    model = _resolve_face_model(cfg.face_model)
    events = parse_events(DEFAULT_EVENTS if cfg.events == "default" else cfg.events)
    from emogs.io.paths import output_file

    for p in (video, *gt_paths(video)):
        output_file(p, force=overwrite, what="output file")
    t0 = time.monotonic()
    try:
        sp = synthesize(cfg.text, cfg.voice, cfg.rate_wpm, cfg.sample_rate)
    except ValueError as e:  # unknown voice
        if "voice" not in str(e):
            raise
        raise InputError(f"--voice {cfg.voice!r}: espeak-ng has no such voice; `espeak-ng --voices` lists "
                         "them (e.g. en-us, en-gb, de, fr)") from None
    phon = [Phoneme(p.symbol, p.start + cfg.lead_in, p.end + cfg.lead_in) for p in sp.phonemes]
    speech_end = cfg.lead_in + len(sp.audio) / cfg.sample_rate
    dur = max(speech_end, max((e.end for e in events), default=0.0)) + cfg.tail
    spf = cfg.sample_rate / cfg.fps
    n = int(math.ceil(dur * cfg.fps))
    audio = np.zeros(int(round(n * spf)), np.float32)
    a0 = int(round(cfg.lead_in * cfg.sample_rate))
    audio[a0:a0 + len(sp.audio)] = sp.audio[: len(audio) - a0]
    perf = perform(phon, n, cfg.fps, events, cfg.seed, cfg.head_motion)
    t_speech = time.monotonic() - t0

    r = HeadRenderer(cfg.size, cfg.size, cfg.seed)
    heads = [head_transform(euler_deg_to_matrix(perf.angles[i]), perf.translation[i]) for i in range(n)]
    lms = np.zeros((n, 478, 3), np.float32)
    tfs = np.zeros((n, 4, 4))
    t1 = time.monotonic()

    def frames():
        for i in range(n):
            w2c = r.W0 @ heads[i]
            lms[i] = landmarks_px(deform_face(perf.blendshapes[i], cfg.seed), r.geo, w2c, r.K)
            tfs[i] = GL_TO_CV @ w2c
            yield r.render(perf.blendshapes[i], heads[i])
            if progress and ((i + 1) % 25 == 0 or i + 1 == n):
                el = time.monotonic() - t1
                print(f"\rsynth: {i + 1}/{n} frames, {(i + 1) / el:.1f} frames/s", end="\n" if i + 1 == n else "",
                      file=sys.stderr, flush=True)

    write_video(video, frames(), fps=cfg.fps, audio=audio, sample_rate=cfg.sample_rate)
    t_render = time.monotonic() - t1

    pose_R, pose_T = head_pose(tfs)
    res = {"timestamp": np.arange(n) / cfg.fps, "success": np.ones(n, bool), "confidence": np.ones(n, np.float32),
           "pose_R": pose_R.astype(np.float32), "pose_T": pose_T.astype(np.float32),
           "aus": aus_from_blendshapes(perf.blendshapes, lms), "blendshapes": perf.blendshapes, "landmarks": lms}
    gt_csv, ev_json = gt_paths(video)
    write_csv(gt_csv, res)
    meta = {"video": video.name, "fps": cfg.fps, "num_frames": n, "duration": n / cfg.fps,
            "sample_rate": cfg.sample_rate, "num_samples": len(audio), "face_model": model,
            "config": asdict(cfg), "frame_time": "frame i shows time (i + 0.5) / fps",
            **perf.to_json(),
            "phonemes": [{"symbol": p.symbol, "start": round(p.start, 4), "end": round(p.end, 4)} for p in phon]}
    with atomic_path(ev_json) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    summary = {"video": str(video), "gt_csv": str(gt_csv), "events_json": str(ev_json), "num_frames": n,
               "duration": n / cfg.fps, "seconds_speech": round(t_speech, 2), "seconds_render": round(t_render, 2),
               "seconds_total": round(time.monotonic() - t0, 2)}
    if progress:
        print(f"synth: {n} frames ({n / cfg.fps:.2f} s) in {summary['seconds_total']:.1f} s -> {video}, "
              f"{gt_csv.name}, {ev_json.name}", file=sys.stderr)
    return summary
