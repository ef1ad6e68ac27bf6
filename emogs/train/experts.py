"""The expert losses of training: L_sync (the lip-sync expert on 5 consecutive rendered mouths against their
Whisper audio window) and L_AU (AUNet on the rendered face crop against the frame's tracked AUs).

    sup = setup_expert_losses(cfg, train_ds, bank, device, log)   # None when loss.sync and loss.au are 0
    if is_sync_step(cfg, it): ids = sync_batch_ids(sup, cfg.loss.sync_windows, gen)   # (W * 5,) bank positions
    terms = expert_terms(sup, cfg, pred, ids, it, window=...)      # {"sync": (w, value), "au": (w, value)}

Both experts (`emogs.experts`) are loaded once, on the training device, in eval mode with frozen parameters:
gradients reach the rendered pixels, never the experts' weights; the run folder does not store them and the
inference path never imports this module. Crops follow the ground-truth frames' tracked landmarks
(`emogs.experts.crops.crop_affines`, computed once per clip in the dataset's pixels and scaled to the training
resolution), so it is the render's own mouth and face that are judged. The expert's audio window comes
from the dataset's Whisper rows (audio_whisper.npy), whatever feature the head itself reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from emogs.errors import InputError


@dataclass
class ExpertLosses:
    """What the expert terms need, built once per training (`setup_expert_losses`)."""
    sync_expert: Any | None  # emogs.experts.sync.SyncExpert (frozen) or None when loss.sync is 0
    aunet: Any | None  # emogs.experts.aunet.AUNet (frozen) or None when loss.au is 0
    mouth_affines: torch.Tensor | None  # (F, 2, 3) per bank frame: mouth-crop pixel -> render pixel
    face_affines: torch.Tensor | None  # (F, 2, 3) per bank frame: face-crop pixel -> render pixel
    audio_rows: np.ndarray | None  # (R, D) the expert's feature rows of the whole clip
    frame_index: np.ndarray  # (F,) clip frame index of each bank frame
    au_target: torch.Tensor  # (F, 17) the tracked AUs of each bank frame (au_window centre)
    centres: np.ndarray  # bank positions whose 5-frame window is 5 consecutive clip frames


def start_of(value: int, cfg) -> int:
    """An expert term's first iteration: `value`, or the fine stage's start when -1."""
    return cfg.fine_start if value < 0 else value


def is_sync_step(cfg, it: int) -> bool:
    """Whether iteration `it` (0-based, before the step) is a sync step: L_sync on, from `loss.sync_start`,
    every `loss.sync_every` iterations."""
    lc = cfg.loss
    s = start_of(lc.sync_start, cfg)
    return lc.sync > 0 and it >= s and (it - s) % lc.sync_every == 0


def is_au_step(cfg, it: int, window: bool) -> bool:
    """Whether iteration `it` carries L_AU: from `loss.au_start`; with `loss.expert_appearance` off only on
    the steps whose appearance is detached (the sync steps, `window`, or with L_sync off every
    `sync_every`-th step)."""
    lc = cfg.loss
    s = start_of(lc.au_start, cfg)
    if lc.au <= 0 or it < s:
        return False
    if lc.expert_appearance:
        return True
    return window if lc.sync > 0 else (it - s) % lc.sync_every == 0


def detach_appearance(cfg, it: int, window: bool) -> bool:
    """Whether step `it` renders with colours and opacities detached: it carries an expert loss and
    `loss.expert_appearance` is off (the experts then shape geometry and motion, never paint the skin)."""
    return not cfg.loss.expert_appearance and (window or is_au_step(cfg, it, window))


def cost_factor(cfg, frames_per_step: int | None = None) -> float:
    """Expected mean cost of an iteration relative to one of the first `calib_iters` (render cost taken as
    proportional to the frames rendered): the time budget's estimate scales by it."""
    lc = cfg.loss
    b = frames_per_step or cfg.batch_size
    if lc.sync <= 0 or cfg.iters <= 0:
        return 1.0
    share = max(0.0, 1.0 - start_of(lc.sync_start, cfg) / cfg.iters)  # iterations inside the sync phase
    extra = (lc.sync_windows * 5 - b) / b / lc.sync_every
    return 1.0 + share * max(0.0, extra)


def _clip_landmarks(ds, bank) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks (N, 478, 2) in the dataset's pixels, in clip order, and the row of each bank frame."""
    idx = bank.index.cpu().numpy()
    tracks = getattr(ds, "tracks", None)
    if tracks is not None and "landmarks" in tracks:
        return np.asarray(tracks["landmarks"], np.float32)[..., :2], idx
    lms = np.stack([np.asarray(ds[i]["landmarks"], np.float32)[:, :2] for i in range(len(ds))])
    order = np.argsort(idx, kind="stable")  # in-memory datasets: their own frames, sorted by time
    rows = np.empty(len(idx), np.int64)
    rows[order] = np.arange(len(idx))
    return lms[order], rows


def _dataset_size(ds) -> int:
    man = getattr(ds, "manifest", None)
    if man and "size" in man:
        return int(man["size"])
    return int(np.asarray(ds[0]["image"]).shape[0])


def expert_audio_rows(ds, ecfg, log: Callable[[str], None] = print) -> np.ndarray:
    """The lip-sync expert's feature rows of the whole clip: DATASET/audio_<feature>.npy (prepare writes
    audio_whisper.npy unless --no-whisper), the head's own rows when it reads that feature, an in-memory
    dataset's `expert_audio_rows`, or computed here from DATASET/audio.wav. InputError when none exists."""
    root = getattr(ds, "root", None)
    name = f"audio_{ecfg.audio_feature}.npy"
    if root is not None and (Path(root) / name).is_file():
        return np.load(Path(root) / name, mmap_mode="r")
    if getattr(ds, "audio_feature", None) == ecfg.audio_feature and getattr(ds, "audio", None) is not None:
        return ds.audio
    rows = getattr(ds, "expert_audio_rows", None)
    if rows is not None:
        return np.asarray(rows)
    if root is not None and (Path(root) / "audio.wav").is_file():
        from emogs.experts.sync import audio_features
        from emogs.io.media import load_audio

        log(f"[train] L_sync: {root} has no {name}; computing the expert's {ecfg.audio_feature} features from audio.wav")
        n = int(getattr(ds, "num_frames", 0) or len(ds))
        try:
            return audio_features(load_audio(Path(root) / "audio.wav"), n, ecfg)
        except ImportError as e:  # e.g. a machine without faster-whisper (the GPU image)
            raise InputError(f"L_sync: {root} has no {name} and it cannot be computed here ({e}); copy the "
                             "dataset's audio_whisper.npy along (pack-dataset --whisper)") from None
    raise InputError(f"L_sync needs the dataset's {ecfg.audio_feature} features ({name}) or its audio.wav; "
                     "re-prepare with Whisper on, or train with --config-json '{\"loss.sync\": 0}'")


def setup_expert_losses(cfg, ds, bank, device: torch.device | str,
                        log: Callable[[str], None] = print) -> ExpertLosses | None:
    """The frozen experts and the per-frame crops / targets for `bank` (the training frames of `ds`); None
    when both weights are 0 (nothing is loaded or computed)."""
    lc = cfg.loss
    if lc.sync <= 0 and lc.au <= 0:
        return None
    from emogs.experts.crops import crop_affines

    lms, rows = _clip_landmarks(ds, bank)
    scale = bank.size / _dataset_size(ds)

    def affines(region) -> torch.Tensor:
        a = crop_affines(lms, region)[rows] * scale  # crop px -> dataset px, then -> training px
        return torch.as_tensor(a, dtype=torch.float32, device=device)

    sync = aunet = mouth = face = audio = None
    if lc.sync > 0:
        from emogs.experts.sync import load_sync_expert

        sync = load_sync_expert(device=device)
        mouth = affines(sync.cfg.region)
        audio = expert_audio_rows(ds, sync.cfg, log)
    if lc.au > 0:
        from emogs.experts.aunet import load_aunet

        aunet = load_aunet(device=device)
        face = affines(aunet.cfg.region)
    idx = bank.index.cpu().numpy()
    h = 2  # the expert's 5-frame window: t - 2 .. t + 2
    if sync is not None:
        h = sync.cfg.frames // 2
    p = np.arange(h, len(bank) - h)
    centres = p[idx[p + h] - idx[p - h] == 2 * h] if len(p) else p
    if sync is not None and not len(centres):
        raise InputError(f"L_sync needs {2 * h + 1} consecutive training frames; the training split has "
                         f"{len(bank)} frames")
    au_t = bank.au_window[:, bank.au_window.shape[1] // 2].float()
    sup = ExpertLosses(sync, aunet, mouth, face, audio, idx, au_t, centres)
    log(f"[train] expert losses: " + ", ".join(
        s for s in (f"L_sync x{lc.sync} every {lc.sync_every} it from it {start_of(lc.sync_start, cfg)} "
                    f"({lc.sync_windows} x {2 * h + 1} frames)" if sync is not None else "",
                    f"L_AU x{lc.au} from it {start_of(lc.au_start, cfg)}" if aunet is not None else "",
                    "colours and opacities detached on their steps" if not lc.expert_appearance else
                    "appearance included") if s))
    return sup


def sync_batch_ids(sup: ExpertLosses, windows: int, gen: torch.Generator) -> torch.Tensor:
    """(windows * 5,) bank positions: `windows` random centres, each with its 5 consecutive frames in order."""
    h = sup.sync_expert.cfg.frames // 2
    pick = torch.randint(len(sup.centres), (windows,), generator=gen).numpy()
    c = sup.centres[pick]
    return torch.from_numpy((c[:, None] + np.arange(-h, h + 1)[None]).reshape(-1))


def expert_terms(sup: ExpertLosses | None, cfg, pred: torch.Tensor, ids: torch.Tensor, it: int,
                 window: bool) -> dict[str, tuple[float, torch.Tensor]]:
    """The expert loss terms of one step: {"sync": (weight, L_sync)} on a sync step (`window`: `pred` (W*5,
    S, S, 3) is `sync_batch_ids`' frames in order), {"au": (weight, L_AU)} on the steps `is_au_step` names."""
    if sup is None:
        return {}
    lc = cfg.loss
    ids = ids.to(sup.au_target.device)
    out: dict[str, tuple[float, torch.Tensor]] = {}
    if window and sup.sync_expert is not None:
        from emogs.experts.sync import audio_windows, mouth_windows, sync_loss

        e = sup.sync_expert
        t = e.cfg.frames
        w = pred.shape[0] // t
        frames = pred.reshape(w, t, *pred.shape[1:])
        centre = sup.frame_index[ids.cpu().numpy().reshape(w, t)[:, t // 2]]
        aw = torch.as_tensor(np.asarray(audio_windows(sup.audio_rows, e.cfg, centre), np.float32), device=pred.device)
        mouths = mouth_windows(frames, sup.mouth_affines[ids].reshape(w, t, 2, 3), e.cfg.region)
        out["sync"] = (lc.sync, sync_loss(e, mouths, aw, lc.sync_mode))
    if sup.aunet is not None and is_au_step(cfg, it, window):
        from emogs.experts.aunet import au_consistency_loss, face_crops

        crops = face_crops(pred, sup.face_affines[ids], sup.aunet.cfg.region)
        out["au"] = (lc.au, au_consistency_loss(sup.aunet, crops, sup.au_target[ids]))
    return out


class TermMeans:
    """Means of loss terms over the steps since the last log line (the expert terms are not computed on
    every step, so the logged step alone would often miss them)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, terms: dict[str, float]) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums}
        self.sums, self.counts = {}, {}
        return out
