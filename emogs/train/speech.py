"""The speech stage of a mesh run: the shipped speech -> mesh-motion prior (emogs.model.speech_motion)
fine-tuned on the run's training split, written to RUN/speech_motion.safetensors.

Input: the Whisper-base rows of the clip (the prior's feature, whatever the head's own `model.audio_feature`:
DATASET/audio_whisper.npy, else computed from DATASET/audio.wav) and the mesh fit's expression coefficients of
the training frames (the `cfg.coeffs` of the prior as targets). The person's mean and scale come from the
whole training split; the last `speech.tail` of it is held out, and the fine-tuned weights are kept only when
they beat the pretrained ones there (`fine_tune`); then each coefficient's output is rescaled so its spread on
the tail matches the person's (`match_spread`, `speech.match_spread`). The report (both tail errors, the
choice, the spread gains, the time) goes into the weights' metadata and the training summary.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from emogs.errors import InputError


def prior_rows(ds, log: Callable[[str], None] = lambda s: None) -> np.ndarray | None:
    """(R, 512) Whisper-base rows of a dataset's whole clip (50 Hz): its own audio rows when the head reads
    Whisper, else DATASET/audio_whisper.npy, else computed from DATASET/audio.wav; None without any of them."""
    from emogs.model.speech_motion import PRIOR_FEATURE

    if getattr(ds, "audio_feature", None) == PRIOR_FEATURE and getattr(ds, "audio", None) is not None:
        return np.asarray(ds.audio, np.float32)
    root = getattr(ds, "root", None)
    if root is None:
        return None
    root = Path(root)
    if (root / f"audio_{PRIOR_FEATURE}.npy").is_file():
        return np.asarray(np.load(root / f"audio_{PRIOR_FEATURE}.npy", mmap_mode="r"), np.float32)
    if not (root / "audio.wav").is_file():
        return None
    from emogs.audio import feature_rows
    from emogs.io.media import load_audio

    t0 = time.time()
    try:
        rows, _ = feature_rows(load_audio(root / "audio.wav"), PRIOR_FEATURE)
    except (ImportError, InputError) as e:  # no faster-whisper or its model here (the GPU image), no packed rows
        log(f"[train] speech motion: skipped ({PRIOR_FEATURE} features are not in the dataset and cannot be "
            f"computed here: {e}); prepare the dataset with Whisper features")
        return None
    log(f"[train] speech motion: {PRIOR_FEATURE} features computed from audio.wav ({time.time() - t0:.1f} s; "
        "the dataset was prepared without them)")
    return rows


def fine_tune_steps(frames: int, cfg) -> int:
    """Steps for `frames` training frames: `cfg.fine_tune_steps`, capped at `cfg.max_epochs` passes over the
    frames outside the tail (batch x seq frames a step), at least 1."""
    n_fit = frames - int(round(frames * cfg.tail))
    if cfg.max_epochs <= 0:
        return cfg.fine_tune_steps
    return max(1, min(cfg.fine_tune_steps, math.ceil(cfg.max_epochs * n_fit / (cfg.batch * cfg.seq))))


SPREAD_GAIN = (0.5, 2.0)  # bounds of the per-coefficient spread correction


@torch.no_grad()
def match_spread(module, windows: np.ndarray, targets: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                 n_fit: int) -> dict[str, Any] | None:
    """Rescale `module`'s output gain per coefficient (in place) so the spread (sd over frames) of its
    smoothed prediction on the held-out tail `windows[n_fit:]` matches the spread of the fit there, within
    SPREAD_GAIN: MSE training shrinks predictions toward the mean, and a mouth that moves half as much as
    the person's reads as mumbling. -> the gains (jawOpen's, median, range) and the tail MSE before/after,
    None when the tail is too short (under 10 frames)."""
    from emogs.model.speech_motion import smooth_time

    if len(windows) - n_fit < 10:
        return None
    module.eval()
    p = smooth_time(module.deviation(torch.as_tensor(np.asarray(windows[n_fit:]), dtype=torch.float32),
                                     torch.as_tensor(scale)).numpy(), module.cfg.smooth_sigma)
    t = np.asarray(targets[n_fit:], np.float32) - mean
    g = np.clip(t.std(0) / np.maximum(p.std(0), 1e-6), *SPREAD_GAIN).astype(np.float32)
    module.gain.mul_(torch.as_tensor(g))
    coeffs = list(module.cfg.coeffs)
    j = coeffs.index("jawOpen") if "jawOpen" in coeffs else 0
    return dict(gain_jaw=float(g[j]), gain_median=float(np.median(g)), gain_min=float(g.min()), gain_max=float(g.max()),
                tail_jaw_sd_ratio_before=float(p[:, j].std() / max(t[:, j].std(), 1e-9)),
                tail_jaw_sd_ratio_after=float(p[:, j].std() * g[j] / max(t[:, j].std(), 1e-9)),
                tail_mse_before=float(((p - t) ** 2).mean()), tail_mse_after=float(((p * g - t) ** 2).mean()))


def fine_tune_prior(rows: np.ndarray, expression: np.ndarray, names, frames: np.ndarray, cfg, seed: int = 0,
                    prior=None) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any]]:
    """The prior fine-tuned on one person: `rows` (R, D) the clip's Whisper rows, `expression` (F, E) the fit's
    coefficients of every frame (names `names`), `frames` (N,) the training frames in time order, `cfg` an
    emogs.train.config.SpeechConfig. -> (module, mean (K,), scale (K,), report). Runs on the CPU; the global
    torch RNG is left as it was."""
    from emogs.model.speech_motion import coeff_index, fine_tune, load_speech_motion, person_stats

    t0 = time.time()
    with torch.random.fork_rng(devices=[]):  # building the module draws initial weights
        prior = prior if prior is not None else load_speech_motion()
    c = prior.cfg
    frames = np.asarray(frames)
    targets = np.asarray(expression, np.float32)[frames][:, coeff_index(names, c.coeffs)]
    from emogs.data.windows import feature_windows

    windows = feature_windows(np.asarray(rows, np.float32), c.rows_per_frame, frames, c.half)
    mean, scale = person_stats(targets)
    steps = fine_tune_steps(len(frames), cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ft = fine_tune(prior, windows, targets, mean=mean, steps=steps, lr=cfg.lr, batch=cfg.batch,
                       seq=cfg.seq, tail=cfg.tail, anchor=cfg.anchor, eval_every=cfg.eval_every, seed=seed)
    rep = dict(ft.fine_tune_report)
    sc = np.asarray(rep.pop("scale"), np.float32)
    rep.pop("mean")
    spread = match_spread(ft, windows, targets, mean, sc, rep["frames_fit"]) if cfg.match_spread else None
    report = dict(feature=c.feature, frames=int(len(frames)), choice=rep.pop("choice"),
                  tail_mse_pretrained=rep.pop("tail_mse_before"), tail_mse_fine_tuned=rep.pop("tail_mse_fine_tuned"),
                  tail_jaw_r_pretrained=rep.pop("tail_jaw_r_before"),
                  tail_jaw_r_fine_tuned=rep.pop("tail_jaw_r_fine_tuned"), **rep,
                  person_scale_jaw=float(scale[list(c.coeffs).index("jawOpen")]) if "jawOpen" in c.coeffs else None,
                  spread=spread,
                  seconds=round(time.time() - t0, 1))
    return ft, mean, sc, report


def speech_motion_stage(run, ds, cfg, log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """A finished mesh run's speech stage: fine-tune the prior on the training split `ds` and write
    RUN/speech_motion.safetensors. -> the report, or None when skipped (free head, `speech.enabled` off, a
    dataset without a mesh fit or Whisper rows; the reason is logged)."""
    if cfg.model.kind != "mesh":
        return None
    if not cfg.speech.enabled:
        log("[train] speech motion: off (speech.enabled = false); the mouth follows the speech AUs")
        return None
    mesh = getattr(ds, "mesh", None)
    if mesh is None or not hasattr(ds, "indices"):
        log("[train] speech motion: skipped (the training data has no mesh fit on disk)")
        return None
    rows = prior_rows(ds, log)
    if rows is None:
        log("[train] speech motion: skipped (no usable audio features in the dataset)")
        return None
    module, mean, scale, report = fine_tune_prior(rows, mesh["expression"], [str(n) for n in mesh["expression_names"]],
                                                  np.asarray(ds.indices), cfg.speech, seed=cfg.seed)
    run.write_speech_motion(module, mean, scale, report)

    def f(x):
        return "n/a" if x is None else f"{x:.5f}"

    log(f"[train] speech motion: {report['choice']} prior kept (tail of {report['frames_tail']} frames: mse "
        f"pretrained {f(report['tail_mse_pretrained'])}, fine-tuned {f(report['tail_mse_fine_tuned'])}; "
        f"{report['steps']} steps in {report['seconds']:.1f} s"
        + (f"; jawOpen spread x{report['spread']['gain_jaw']:.2f} to match the person's" if report["spread"] else "")
        + ")")
    return report


def add_to_run(run_dir: str | Path, dataset: str | Path, overrides: dict | None = None, force: bool = False,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """The speech stage for a finished mesh run that has none (trained before the stage existed): fine-tune
    the prior on DATASET's training split (the run's own dataset, checked) and write
    RUN/speech_motion.safetensors. `overrides`: `speech` settings ({"fine_tune_steps": 300}); an existing
    file is replaced only with `force`. -> the report."""
    from emogs import config as cfgio
    from emogs.data.dataset import TalkingHeadDataset, load_manifest
    from emogs.errors import InputError
    from emogs.run import open_run
    from emogs.train.config import config_from_run, validate

    run = open_run(run_dir)
    if not run.is_complete():
        raise InputError(f"{run.path}: not a finished run (train it to the end first)")
    cfg = config_from_run(run.config_dict())
    if cfg.model.kind != "mesh":
        raise InputError(f"{run.path}: a '{cfg.model.kind}' head; the speech-motion model is for mesh heads")
    root = Path(dataset)
    run.check_dataset(load_manifest(root), root, fix="give the dataset it was trained on")
    if run.file("speech_motion.safetensors").is_file() and not force:
        raise InputError(f"{run.path}: already has speech_motion.safetensors; pass --force to replace it")
    try:
        cfg = cfgio.override(cfg, {"speech": {**(overrides or {}), "enabled": True}})
        validate(cfg)
    except ValueError as e:
        raise InputError(str(e)) from None
    m = cfg.model
    ds = TalkingHeadDataset(root, split="train", audio_feature=m.audio_feature, audio_window=m.audio_window,
                            au_window=m.au_window, mesh=True)
    rep = speech_motion_stage(run, ds, cfg, log)
    if rep is None:
        raise InputError(f"{root}: no audio to fine-tune the speech-motion model on")
    return rep
