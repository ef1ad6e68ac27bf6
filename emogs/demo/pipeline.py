"""`emogs demo`: the whole pipeline on one machine, nothing to download, no GPU needed.

Stages (each prints a header, then its own progress; finished stages are skipped on a re-run):
  synth    a synthetic talking person with exact AU ground truth (or the user's --video)
  speech   a NEW sentence from espeak-ng, never seen in training
  prepare  video -> dataset (reduced size on CPU)
  train    a small head (cpu_config, scaled) or gpu_config on CUDA
  render   new speech: plain, with an AU edit (side-by-side AU plot), with an emotion preset
  au_check measured AUs on the renders (emogs.face.analyze): AU edit window vs outside, emotion vs plain
  eval     `emogs eval` on the test split (PSNR/SSIM/LPIPS, landmarks, AUs, sync, ...)
  report   index.html with the videos, plots, metrics and timings

Layout of the output folder: docs/demo.md.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emogs.errors import InputError
from emogs.io.atomic import read_json, write_json

SUBJECT_TEXT_QUICK = "Hello, I am a small test person. I can talk to you."
SPEECH_TEXT = ("This is brand new speech that I never heard while training. "
               "Watch my brows go up, and now a happy face.")
SPEECH_TEXT_QUICK = "This sentence is new to me, and my brows go up."
VIDEOS = {  # name -> (file under videos/, caption)
    "plain": ("speech.mp4", "New speech, no controls (the model's default expression)"),
    "au_edit": ("au_edit.mp4", "New speech + AU edit {au} (left: render; right: requested vs measured AUs)"),
    "emotion": ("emotion.mp4", "New speech + emotion preset {emotion}"),
}


@dataclass
class DemoSettings:
    """Everything that decides the demo's outputs (saved as demo.json; a re-run must match)."""
    quick: bool
    device: str                     # resolved: cpu | cuda
    video: str | None               # the user's own video, or None (synthetic subject)
    synth_size: int
    synth_text: str | None          # None: emogs.synth's built-in sentence
    synth_events: str
    prepare_size: int
    test_fraction: float
    min_test_seconds: float
    max_seconds: float | None
    train_preset: str               # cpu | gpu
    train_iters: int
    train_resolution: int
    model_overrides: dict[str, int]
    max_gaussians: int | None
    speech_text: str
    au_edit: str = "AU01=1.0@1.0-2.5"
    emotion: str = "happy:0.8"
    render_batch: int = 8


def make_settings(quick: bool, device: str, video: str | Path | None) -> DemoSettings:
    """The demo's configuration for this machine: quick (CI), CPU, or GPU."""
    vid = str(Path(video).resolve()) if video else None
    if quick:
        return DemoSettings(
            quick=True, device=device, video=vid, synth_size=384, synth_text=SUBJECT_TEXT_QUICK,
            synth_events="brow_raise:0.8-1.8:0.9,smile:2.6-3.6:0.9", prepare_size=128, test_fraction=0.25,
            min_test_seconds=1.0, max_seconds=8.0 if vid else None, train_preset="cpu", train_iters=120,
            train_resolution=128, model_overrides=dict(num_face=1500, num_shell=1000, num_mouth=200),
            max_gaussians=3000, speech_text=SPEECH_TEXT_QUICK)
    if device == "cuda":
        return DemoSettings(
            quick=False, device=device, video=vid, synth_size=512, synth_text=None, synth_events="default",
            prepare_size=512, test_fraction=0.15, min_test_seconds=2.6, max_seconds=120.0 if vid else None,
            train_preset="gpu", train_iters=10_000, train_resolution=512, model_overrides={},
            max_gaussians=None, speech_text=SPEECH_TEXT)
    return DemoSettings(
        quick=False, device=device, video=vid, synth_size=512, synth_text=None, synth_events="default",
        prepare_size=256, test_fraction=0.2, min_test_seconds=2.6, max_seconds=20.0 if vid else None,
        train_preset="cpu", train_iters=1000, train_resolution=128, model_overrides={}, max_gaussians=None,
        speech_text=SPEECH_TEXT)


def train_config(s: DemoSettings):
    """TrainConfig for the settings: cpu_config / gpu_config, smaller head and schedule on CPU."""
    from emogs.config import override
    from emogs.train.config import cpu_config, gpu_config

    cfg = gpu_config() if s.train_preset == "gpu" else cpu_config()
    changes: dict[str, Any] = {"model": dict(s.model_overrides), "resolution": s.train_resolution, "device": s.device}
    if s.max_gaussians is not None:
        changes["densify.max_gaussians"] = s.max_gaussians
    cfg = override(cfg, changes)
    if cfg.iters != s.train_iters:
        cfg = cfg.scaled(s.train_iters)
    return override(cfg, log_every=max(1, min(cfg.log_every, s.train_iters // 12)))


# --- stage bookkeeping --------------------------------------------------------------------------------
class StageRunner:
    """Prints stage headers, times each stage and keeps DEMO/timings.json up to date."""

    def __init__(self, out: Path, names: list[str], adapt: bool = False) -> None:
        self.out, self.names, self.adapt = out, names, adapt
        self.path = out / "timings.json"
        old = read_json(self.path) if self.path.is_file() else {}
        self.earlier: dict[str, Any] = old.get("stages", {}) if isinstance(old, dict) else {}
        self.stages: dict[str, dict[str, Any]] = {}
        self.t0 = time.monotonic()

    def run(self, name: str, what: str, fn: Callable[[], bool | None]) -> None:
        """Run stage `name`; `fn` returns False when it found its outputs and did nothing."""
        k = self.names.index(name) + 1
        _say(f"\n=== emogs demo [{k}/{len(self.names)}] {name}: {what}")
        t = time.monotonic()
        if self.adapt:
            adapt_threads()
        ran = fn() is not False
        dt = time.monotonic() - t
        rec: dict[str, Any] = {"seconds": round(dt, 2), "status": "ran" if ran else "reused"}
        prev = self.earlier.get(name, {})
        if not ran and prev.get("status") == "ran":
            rec["earlier_seconds"] = prev.get("seconds")
        elif not ran and "earlier_seconds" in prev:
            rec["earlier_seconds"] = prev["earlier_seconds"]
        self.stages[name] = rec
        _say(f"=== {name}: {'done' if ran else 'already done, reused'} in {dt:.1f} s")
        self.save()

    def save(self) -> None:
        write_json(self.path, {"stages": self.stages, "total_seconds": round(time.monotonic() - self.t0, 2),
                               "note": "seconds: this run; 'reused' stages were finished by an earlier run "
                                       "(earlier_seconds: what they took then)"})


def adapt_threads(probe_s: float = 0.5) -> int:
    """Set the CPU threads to the cores other processes leave free (emogs.runtime, measured afresh before
    each stage: the load changes over a demo); prints the count when it differs from the one printed
    last (at first: from the machine's core count)."""
    from emogs.runtime import configure_threads, usable_cores

    k = configure_threads(fresh=True, probe_s=probe_s)
    n = usable_cores()
    if k != _announced.get("threads", n):
        _say(f"(using {k} of {n} CPU threads" + (": other processes keep the other cores busy)" if k < n else ")"))
    _announced["threads"] = k
    return k


_announced: dict[str, int] = {}  # the thread count last printed


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_settings(out: Path, s: DemoSettings) -> None:
    """A demo folder holds one configuration: refuse to mix a --quick run into a full one (and so on)."""
    p = out / "demo.json"
    if p.is_file():
        old = read_json(p).get("settings", {})
        mine = asdict(s)
        diff = sorted(k for k in mine if old.get(k) != mine[k])
        if diff:
            raise InputError(f"{out} holds a demo made with other settings ({', '.join(diff)}); "
                             "choose another -o folder or delete this one")
    write_json(p, {"settings": asdict(s)})


# --- stages -----------------------------------------------------------------------------------------
def stage_synth(out: Path, s: DemoSettings) -> bool:
    """Synthetic subject -> DEMO/subject.mp4 (+ .gt.csv, .events.json); reused when all three exist."""
    from emogs.synth.generate import DEFAULT_TEXT, SynthConfig, gt_paths, synth

    video = out / "subject.mp4"
    if video.is_file() and all(p.is_file() for p in gt_paths(video)):
        return False
    synth(video, SynthConfig(text=s.synth_text or DEFAULT_TEXT, events=s.synth_events, size=s.synth_size))
    return True


def stage_speech(out: Path, s: DemoSettings) -> bool:
    """A new sentence, never seen in training -> DEMO/speech.wav + speech.txt."""
    from emogs.io.media import write_wav
    from emogs.synth.speech import synthesize

    wav_path = out / "speech.wav"
    if wav_path.is_file():
        return False
    sp = synthesize(s.speech_text)
    pad = np.zeros(int(0.3 * sp.sample_rate), np.float32)
    wav = np.concatenate([pad, sp.audio, pad])
    (out / "speech.txt").write_text(s.speech_text + "\n")
    write_wav(wav_path, wav, sp.sample_rate)
    _say(f"speech: {len(wav) / sp.sample_rate:.2f} s: \"{s.speech_text}\"")
    return True


def stage_prepare(out: Path, s: DemoSettings, source: Path) -> bool:
    """emogs prepare (resumes by itself; reused when the manifest exists and the stage state matches)."""
    from emogs.data.prepare import PrepareConfig, prepare

    cfg = PrepareConfig(size=s.prepare_size, test_fraction=s.test_fraction, min_test_seconds=s.min_test_seconds,
                        whisper=False, max_seconds=s.max_seconds)
    done = (out / "dataset" / "manifest.json").is_file()
    prepare(source, out / "dataset", cfg)
    return not done


def stage_train(out: Path, s: DemoSettings) -> bool:
    """emogs train (resumes from its checkpoint); reused when metrics.json and the model exist."""
    from emogs.train.loop import train

    run = out / "run"
    if (run / "model.safetensors").is_file() and (run / "metrics.json").is_file() and (run / "test_render.mp4").is_file():
        return False
    train(out / "dataset", run, train_config(s), log=lambda m: print(m, file=sys.stderr, flush=True))
    return True


def stage_render(out: Path, s: DemoSettings) -> bool:
    """Three renders of the new speech: plain, AU edit (side by side with the AU plot), emotion preset."""
    from emogs.avatar import Avatar

    vids = out / "videos"
    vids.mkdir(exist_ok=True)
    todo = {k: v for k, v in VIDEOS.items() if not (vids / v[0]).is_file()}
    if not todo:
        return False
    av = Avatar.load(out / "run", device=s.device)
    wav = out / "speech.wav"
    kw = dict(batch=s.render_batch)
    for name, (fname, _) in todo.items():
        _say(f"render: {fname}")
        if name == "plain":
            av.render(wav, vids / fname, **kw)
        elif name == "au_edit":
            av.render(wav, vids / fname, au=[s.au_edit], side_by_side=True, **kw)
        else:
            av.render(wav, vids / fname, emotion=s.emotion, **kw)
    return True


def stage_au_check(out: Path, s: DemoSettings) -> bool:
    """Measure AUs on the rendered files (as a user would) and compare against the requests."""
    from emogs.demo.au_check import au_check

    if (out / "au_check.json").is_file() and (out / "au_check.png").is_file():
        return False
    res = au_check(out, s.au_edit, s.emotion)
    write_json(out / "au_check.json", res)
    e = res["au_edit"]
    f = lambda v: "n/a" if v is None else f"{v:.3f}"
    _say(f"au_check: {e['au']} measured in window {f(e['edit_in'])} vs outside {f(e['edit_out'])} "
         f"(plain render: {f(e['plain_in'])} vs {f(e['plain_out'])}); effect {f(e['effect'])}")
    return True


def stage_eval(out: Path, s: DemoSettings) -> bool:
    """`emogs eval` on the run's test split -> DEMO/eval/ (metrics.json, report.md, plots)."""
    from emogs.eval.run import eval_run
    from emogs.eval.suite import EvalOptions

    if (out / "eval" / "metrics.json").is_file():
        return False
    eval_run(out / "run", "test", out_dir=out / "eval", options=EvalOptions(progress=True))
    return True


def stage_report(out: Path, s: DemoSettings, runner: StageRunner) -> bool:
    from emogs.demo.report_html import write_index

    runner.stages["report"] = {"seconds": 0.0, "status": "ran"}
    runner.save()
    write_index(out, asdict(s))
    return True


# --- entry point ------------------------------------------------------------------------------------
def _device(name: str) -> str:
    from emogs.runtime import resolve_device

    if name not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda, got {name!r}")
    return resolve_device(name).type


def run_demo(out: str | Path = "demo_out", video: str | Path | None = None, quick: bool = False,
             device: str = "auto") -> Path:
    """Run every stage into `out`; returns the path of index.html."""
    from emogs.io.paths import input_file, output_dir

    out = Path(out)
    if video is not None:
        try:
            input_file(video, "--video")
        except InputError as e:
            raise InputError(f"--video {e}") from None
    output_dir(out, inputs=[video], what="demo folder")  # a file, read-only, or holding the --video
    s = make_settings(quick, _device(device), video)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, s)
    source = Path(s.video) if s.video else out / "subject.mp4"
    names = (["synth"] if not s.video else []) + ["speech", "prepare", "train", "render", "au_check", "eval",
                                                   "report"]
    r = StageRunner(out, names, adapt=s.device == "cpu")
    t0 = time.monotonic()
    _say(_intro(s, out))
    if not s.video:
        r.run("synth", f"a synthetic talking person ({s.synth_size} px) -> subject.mp4", lambda: stage_synth(out, s))
    r.run("speech", "a new sentence (espeak-ng) -> speech.wav", lambda: stage_speech(out, s))
    r.run("prepare", f"{source.name} -> dataset/ ({s.prepare_size} px crop)", lambda: stage_prepare(out, s, source))
    r.run("train", f"{s.train_iters} iterations at {s.train_resolution} px on {s.device} -> run/",
          lambda: stage_train(out, s))
    r.run("render", "new speech: plain, AU edit, emotion -> videos/", lambda: stage_render(out, s))
    r.run("au_check", "measure the AUs of the renders", lambda: stage_au_check(out, s))
    r.run("eval", "emogs eval on the test split -> eval/", lambda: stage_eval(out, s))
    r.run("report", "index.html", lambda: stage_report(out, s, r))
    index = out / "index.html"
    _say(f"\nemogs demo: finished in {time.monotonic() - t0:.0f} s. Open {index}")
    return index


def _intro(s: DemoSettings, out: Path) -> str:
    kind = "quick (CI-sized)" if s.quick else ("GPU" if s.device == "cuda" else "CPU")
    subj = f"your video {s.video}" if s.video else "a synthetic talking person"
    return (f"emogs demo: {kind} configuration on {s.device}, subject: {subj}\n"
            f"  dataset {s.prepare_size} px, training {s.train_iters} iterations at {s.train_resolution} px "
            f"({s.train_preset}_config{', smaller head' if s.model_overrides else ''}) -> {out}/"
            + ("\n  note: a CPU configuration is a demo of the pipeline, not of the method's quality"
               if s.device == "cpu" else ""))
