"""`RunFolder`: the one reader and writer of a trained run's folder (`RUN/`, made by `emogs train`).

```
RUN/
  run.json               format version, emogs version, model kind, the dataset it was trained on
                         (path, sha256 of the source clip), status "training" | "complete" (written first,
                         rewritten when training finishes); runs of `emogs adapt`: "adapt" (base, seconds, wall s)
  config.json            the full TrainConfig (model + train + data settings), rewritten with every checkpoint
  model.safetensors      final network + Gaussian weights; metadata: emogs version, run format version
  speech_aus.safetensors audio -> speech AUs (AU17/20/23/25/26) ridge regression
  speech_motion.safetensors  mesh runs: audio -> the mouth's mesh coefficients (the pretrained prior fine-tuned
                         on this person; its metadata: config, the person's mean and scale, the fine-tune report)
  au_drive.json          mesh runs, optional: person-calibrated AU drive gains (`emogs calibrate-drive`); rendering
                         uses them instead of the AU table's (emogs.mesh.drive_calibration)
  gaussians.ply          canonical Gaussians, standard 3DGS PLY
  background.png         the plate a rendered head is composited onto (from the dataset)
  dataset.json           what rendering needs of the training data: K, size, AU names and statistics
  train_cameras.npz      training world_to_cam (F,4,4) + AUs (F,17): `render --pose training` replays them
  train_refine.safetensors  runs with per-frame refinements (TrainConfig.pose_refine / appearance): the training
                         frames' pose deltas (refine.pose_rot / pose_trans, F x 3), refined world_to_cam (F,4,4),
                         appearance codes and decoder; training-only (test frames and new audio render without)
  render_benchmark.json  end-to-end render speed when measured (`scripts/gpu_render_fps.py`)
  train_log.jsonl        iteration, loss terms, psnr, it/s
  previews/              preview PNGs during training
  checkpoints/           last.safetensors + last_optim.safetensors + last_state.json (resume)
  test_render.mp4        test split: render | ground truth side by side, test audio muxed in
  metrics.json           psnr, ssim, lpips on the test split (full frame, face region, the field's protocol and
                         where its squared error lies per label region)
  test_alpha.npz         the test frames' rendered head alpha (F, S, S) uint8: with test_render.mp4 and the plate
                         `emogs eval` rebuilds the field protocol's frames (head pasted on the true frame)
```
Every write is atomic (temp file + rename). Reading goes through `emogs.run.migrate`, so runs of older
versions load with the settings they were trained with. Models stay pure: this room turns files into
arrays and modules, and back.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emogs import RUN_FORMAT_VERSION, __version__
from emogs.errors import InputError
from emogs.io.atomic import atomic_path, read_json, write_json
from emogs.run.migrate import migrate_config, migrate_model_state

READABLE_FORMATS = (1, 2)

RUN_JSON = "run.json"
CONFIG = "config.json"
MODEL = "model.safetensors"
SPEECH_AUS = "speech_aus.safetensors"
SPEECH_MOTION = "speech_motion.safetensors"
AU_DRIVE = "au_drive.json"
PLY = "gaussians.ply"
BACKGROUND = "background.png"
DATASET_INFO = "dataset.json"
TRAIN_CAMERAS = "train_cameras.npz"
TRAIN_REFINE = "train_refine.safetensors"
BENCHMARK = "render_benchmark.json"
BENCHMARK_FILES = (BENCHMARK, "benchmark.json")
LOG = "train_log.jsonl"
PREVIEWS = "previews"
CHECKPOINTS = "checkpoints"
TEST_RENDER = "test_render.mp4"
TEST_ALPHA = "test_alpha.npz"
METRICS = "metrics.json"

_CK_MODEL, _CK_OPTIM, _CK_STATE = "last.safetensors", "last_optim.safetensors", "last_state.json"


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)


def _load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; InputError naming the file when it is damaged."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except Exception as e:  # noqa: BLE001 - truncated or not safetensors at all
        raise InputError(f"{path}: unreadable ({type(e).__name__}: {str(e)[:80]}); the file is damaged, "
                         "retrain the run or restore the file") from None


def _read_json(path: Path) -> Any:
    try:
        return read_json(path)
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except (ValueError, OSError) as e:
        raise InputError(f"{path}: unreadable ({type(e).__name__}); the file is damaged, retrain the run or "
                         "restore the file") from None


def source_identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """What identifies a dataset for a run: its source clip's sha256 and the dataset settings."""
    src = manifest.get("source", {}) if isinstance(manifest, dict) else {}
    return dict(sha256=src.get("sha256"), source=src.get("path"), num_frames=manifest.get("num_frames"),
                size=manifest.get("size"), splits=manifest.get("splits"))


class RunFolder:
    """A run folder on disk. Cheap to construct; every method reads or writes one part of it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    # -- what is there ------------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.path / CONFIG).is_file() or (self.path / RUN_JSON).is_file()

    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINTS / _CK_STATE).is_file()

    def has_model(self) -> bool:
        return (self.path / MODEL).is_file()

    def info(self) -> dict[str, Any]:
        """run.json (format 2), or the same facts gathered from a format-1 folder."""
        p = self.path / RUN_JSON
        if p.is_file():
            d = _read_json(p)
            if not isinstance(d, dict) or "format_version" not in d:
                raise InputError(f"{p}: not an emogs run description")
            return d
        if not (self.path / CONFIG).is_file():
            raise InputError(f"{self.path}: not a run folder (no {RUN_JSON} or {CONFIG})")
        ds = _read_json(self.path / DATASET_INFO) if (self.path / DATASET_INFO).is_file() else {}
        complete = (self.path / MODEL).is_file()
        return dict(format_version=1, emogs_version=None, model_kind="free",
                    dataset=dict(root=ds.get("root"), **source_identity(ds.get("manifest", {}))),
                    status="complete" if complete else "training")

    def format_version(self) -> int:
        v = self.info().get("format_version")
        if v not in READABLE_FORMATS:
            raise InputError(f"{self.path}: run format version {v} is not supported by this emogs "
                             f"(reads {', '.join(map(str, READABLE_FORMATS))}); retrain with this version")
        return int(v)

    def is_complete(self) -> bool:
        return self.has_model() and self.info().get("status") == "complete"

    # -- config -------------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """config.json as today's keys (migrated from older versions)."""
        p = self.path / CONFIG
        if not p.is_file():
            raise InputError(f"{self.path}: not a run folder (no {CONFIG})")
        return migrate_config(_read_json(p), self.format_version(), str(p))

    def model_config(self):
        """The run's ModelConfig."""
        from emogs import config as cfgio
        from emogs.model.config import ModelConfig

        try:
            return cfgio.from_dict(ModelConfig, self.config_dict()["model"])
        except (ValueError, TypeError) as e:
            raise InputError(f"{self.path / CONFIG}: {e}") from None

    def render_settings(self) -> dict[str, Any]:
        """The settings rendering needs besides the model's: resolution, rasteriser backend."""
        d = self.config_dict()
        res = d.get("resolution")
        if not isinstance(res, int) or not 8 <= res <= 8192:
            raise InputError(f"{self.path / CONFIG}: bad resolution {res!r}")
        return dict(resolution=res, backend=d.get("backend", "auto"))

    def write_config(self, cfg: Any) -> None:
        from emogs import config as cfgio

        cfgio.save(cfg, self.path / CONFIG)

    # -- creation and identity ----------------------------------------------------------------------
    def create(self, cfg: Any, dataset_info: dict[str, Any], train_cameras: dict[str, np.ndarray],
               background_png: Path | np.ndarray, model_kind: str = "free") -> None:
        """Start a new run: run.json (status training), config, dataset info, cameras, plate."""
        self.path.mkdir(parents=True, exist_ok=True)
        man = dataset_info.get("manifest", {})
        write_json(self.path / RUN_JSON, dict(
            format_version=RUN_FORMAT_VERSION, emogs_version=__version__, model_kind=model_kind,
            dataset=dict(root=dataset_info.get("root"), **source_identity(man)), status="training",
            created=time.strftime("%Y-%m-%dT%H:%M:%S")))
        self.write_config(cfg)
        write_json(self.path / DATASET_INFO, dataset_info)
        with atomic_path(self.path / TRAIN_CAMERAS) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **train_cameras)
        self.write_background(background_png)
        (self.path / PREVIEWS).mkdir(exist_ok=True)

    def check_dataset(self, manifest: dict[str, Any], root: str | Path | None = None,
                      fix: str = "choose a new -o folder") -> None:
        """InputError unless `manifest` is the dataset this run was trained on (same source clip and
        settings): continuing a run on another person's data would silently mix the two, and measuring a
        run against another person's video would report nonsense. `fix` ends the message (what to do)."""
        want = self.info().get("dataset", {})
        have = source_identity(manifest)
        keys = [k for k in ("sha256", "num_frames", "size", "splits") if want.get(k) is not None]
        diff = [k for k in keys if want.get(k) != have.get(k)]
        if diff:
            what = "another source clip" if "sha256" in diff else f"other settings ({', '.join(diff)})"
            raise InputError(f"{self.path} was trained on {want.get('root') or want.get('source')}; "
                             f"{root or 'this dataset'} has {what}: {fix}")

    def mark_complete(self, **facts: Any) -> None:
        d = self.info()
        if d.get("format_version", 1) < RUN_FORMAT_VERSION:
            return  # an old run resumed to the end keeps its format-1 layout
        d.update(status="complete", finished=time.strftime("%Y-%m-%dT%H:%M:%S"), **facts)
        write_json(self.path / RUN_JSON, d)

    def write_adapt_info(self, facts: dict[str, Any]) -> None:
        """run.json's "adapt" entry of a run made by `emogs adapt` (the base, the seconds used, wall time)."""
        d = self.info()
        d["adapt"] = facts
        write_json(self.path / RUN_JSON, d)

    # -- dataset facts, cameras, plate --------------------------------------------------------------
    def dataset_info(self) -> dict[str, Any]:
        d = _read_json(self.path / DATASET_INFO)
        need = ("K", "au_mean", "au_min", "au_max")
        if not isinstance(d, dict) or any(k not in d for k in need):
            raise InputError(f"{self.path / DATASET_INFO}: incomplete (needs {', '.join(need)}); retrain the run")
        return d

    def background(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB plate."""
        import cv2

        bgr = cv2.imread(str(self.path / BACKGROUND), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"{self.path}: {BACKGROUND} missing or unreadable")
        return np.ascontiguousarray(bgr[..., ::-1])

    def write_background(self, src: Path | np.ndarray) -> None:
        import shutil

        import cv2

        if isinstance(src, (str, Path)):
            with atomic_path(self.path / BACKGROUND) as tmp:
                shutil.copyfile(src, tmp)
            return
        img = np.asarray(src)
        if img.dtype != np.uint8:
            img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        with atomic_path(self.path / BACKGROUND) as tmp:
            cv2.imwrite(str(tmp), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))

    def train_expressions(self) -> np.ndarray | None:
        """(F, E) float32 fitted expressions of the training frames (mesh-rigged runs), else None."""
        p = self.path / TRAIN_CAMERAS
        if not p.is_file():
            return None
        with np.load(p, allow_pickle=False) as z:
            return z["expression"].astype(np.float32) if "expression" in z.files else None

    def train_cameras(self) -> np.ndarray:
        """(F, 4, 4) float32 training world_to_cam (older runs: read from their dataset)."""
        p = self.path / TRAIN_CAMERAS
        if p.is_file():
            try:
                with np.load(p, allow_pickle=False) as z:
                    return z["world_to_cam"].astype(np.float32)
            except Exception as e:  # noqa: BLE001
                raise InputError(f"{p}: unreadable ({type(e).__name__}); retrain the run") from None
        root = Path(self.dataset_info().get("root", ""))
        if not (root / "tracks.npz").is_file():
            raise InputError(f"{self.path}: no {TRAIN_CAMERAS} and the dataset {root} is gone")
        a, b = _read_json(root / "manifest.json")["splits"]["train"]
        with np.load(root / "tracks.npz", allow_pickle=False) as z:
            return z["world_to_cam"][a:b].astype(np.float32)

    def write_refinements(self, tensors: dict[str, torch.Tensor], world_to_cam: torch.Tensor,
                          refined_world_to_cam: torch.Tensor | None = None) -> None:
        """train_refine.safetensors: the per-frame refinements' tensors (`FrameRefiner.state_tensors`), the
        tracked training cameras and, with pose refinement, the refined ones."""
        t = {**tensors, "world_to_cam": world_to_cam}
        if refined_world_to_cam is not None:
            t["refined_world_to_cam"] = refined_world_to_cam
        _save_tensors(self.path / TRAIN_REFINE, t, self._meta("train_refine"))

    def refinements(self) -> dict[str, torch.Tensor] | None:
        """The tensors of train_refine.safetensors, or None for runs trained without per-frame refinements."""
        p = self.path / TRAIN_REFINE
        return _load_tensors(p)[0] if p.is_file() else None

    # -- weights ------------------------------------------------------------------------------------
    def _meta(self, kind: str, **extra: Any) -> dict[str, str]:
        return {"emogs_version": __version__, "run_format_version": str(RUN_FORMAT_VERSION), "kind": kind,
                **{k: str(v) for k, v in extra.items()}}

    def write_model(self, model) -> None:
        """The final weights (model.safetensors)."""
        _save_tensors(self.path / MODEL, model.state_dict(),
                      self._meta("model", num_gaussians=len(model.gaussians), variant=model.cfg.variant))

    def load_model(self, device: torch.device | str = "cpu", checkpoint_ok: bool = True):
        """(ModelConfig, TalkingHead in eval mode) from model.safetensors, else (a run still training) the
        last checkpoint."""
        from emogs.model.head import TalkingHead

        self.format_version()
        mc = self.model_config()
        path = self.path / MODEL
        if not path.is_file() and checkpoint_ok:
            path = self.path / CHECKPOINTS / _CK_MODEL
        if not path.is_file():
            raise InputError(f"{self.path}: no {MODEL} (training not finished? run `emogs train` again)")
        state, meta = _load_tensors(path)
        ver = meta.get("run_format_version")
        if ver not in {str(v) for v in READABLE_FORMATS}:
            raise InputError(f"{self.path}: run format version {ver} is not supported by this emogs (reads "
                             f"{', '.join(map(str, READABLE_FORMATS))}); retrain with this version")
        model = self._build(mc, state, path)
        return mc, model.to(device).eval()

    def _build(self, mc, state: dict[str, torch.Tensor], path: Path):
        from emogs.model.head import TalkingHead

        try:
            state = migrate_model_state(state, TalkingHead.feature_dim(mc), mc.token_dim)
            return _model_class(mc.kind).from_state_dict(mc, state)
        except (KeyError, RuntimeError, ValueError) as e:
            raise InputError(f"{path}: does not fit the run's config.json ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:100]}); retrain the run") from None

    # -- speech AUs ---------------------------------------------------------------------------------
    def write_speech_aus(self, sp) -> None:
        tensors, info = sp.to_arrays()
        _save_tensors(self.path / SPEECH_AUS, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()},
                      {**self._meta("speech_aus"), "info": json.dumps(info)})

    def speech_aus(self):
        """The run's SpeechAUs, or None for runs without the file."""
        from emogs.model.speech_aus import SpeechAUs

        p = self.path / SPEECH_AUS
        if not p.is_file():
            return None
        try:
            t, meta = _load_tensors(p)
            return SpeechAUs.from_arrays({k: v.numpy() for k, v in t.items()}, json.loads(meta.get("info", "{}")))
        except (InputError, KeyError, ValueError) as e:
            msg = str(e) if isinstance(e, InputError) else f"{p}: unreadable ({type(e).__name__})"
            raise InputError(f"{msg.split(';')[0]}; delete it to render without speech AUs, or retrain the run") from None

    # -- AU drive gains (mesh runs, optional: `emogs calibrate-drive`) ---------------------------------
    def write_au_drive(self, calib: dict) -> None:
        from emogs.io.atomic import write_json

        write_json(self.path / AU_DRIVE, calib)

    def au_drive(self) -> dict | None:
        """The run's person-calibrated AU drive ({"gains": {AU: gain}, ...}, emogs.mesh.drive_calibration), or
        None for runs without the file."""
        p = self.path / AU_DRIVE
        if not p.is_file():
            return None
        d = _read_json(p)
        g = d.get("gains") if isinstance(d, dict) else None
        if not isinstance(g, dict) or not all(isinstance(v, (int, float)) and 0 < v <= 10 for v in g.values()):
            raise InputError(f"{p}: no valid 'gains' table; delete it to render with the AU table's gains, or run "
                             "`emogs calibrate-drive` again")
        return d

    # -- speech motion (mesh runs) ------------------------------------------------------------------
    def write_speech_motion(self, module, mean, scale, report: dict | None = None) -> None:
        _save_tensors(self.path / SPEECH_MOTION, dict(module.state_dict()),
                      {**self._meta("speech_motion"), "config": json.dumps(module.cfg.to_dict()),
                       "mean": json.dumps([float(x) for x in mean]), "scale": json.dumps([float(x) for x in scale]),
                       "report": json.dumps(report or {})})

    def speech_motion(self):
        """(SpeechMotion module, person mean (K,), scale (K,)) of a mesh run, or None for runs without one."""
        p = self.path / SPEECH_MOTION
        if not p.is_file():
            return None
        from emogs.model.speech_motion import SpeechMotion, SpeechMotionConfig

        t, meta = _load_tensors(p)
        try:
            m = SpeechMotion(SpeechMotionConfig.from_dict(json.loads(meta["config"])))
            m.load_state_dict(t)
            return m.eval(), np.asarray(json.loads(meta["mean"]), np.float32), np.asarray(json.loads(meta["scale"]), np.float32)
        except (KeyError, ValueError, RuntimeError) as e:
            raise InputError(f"{p}: unreadable ({type(e).__name__}); delete it to render the mouth from the speech "
                             "AUs instead, or retrain the run") from None

    # -- checkpoints --------------------------------------------------------------------------------
    def save_checkpoint(self, cfg: Any, model_state: dict[str, torch.Tensor], train_tensors: dict[str, torch.Tensor],
                        state: dict[str, Any]) -> None:
        """The resumable state: model, optimiser/RNG/densification tensors, then the state JSON (written
        last: the three files carry the same iteration) and the config."""
        ck = self.path / CHECKPOINTS
        meta = self._meta("checkpoint", iteration=state["iteration"])
        _save_tensors(ck / _CK_MODEL, model_state, meta)
        _save_tensors(ck / _CK_OPTIM, train_tensors, meta)
        self.write_config(cfg)
        write_json(ck / _CK_STATE, state)

    def load_checkpoint(self, device: torch.device | str = "cpu"):
        """-> (config dict, ModelConfig, TalkingHead, train tensors, state) from RUN/checkpoints."""
        ck = self.path / CHECKPOINTS
        state = _read_json(ck / _CK_STATE)
        tens = {}
        for f in (_CK_MODEL, _CK_OPTIM):
            tens[f], meta = _load_tensors(ck / f)
            if meta.get("iteration") != str(state.get("iteration")):
                raise InputError(f"{ck}: checkpoint files disagree on the iteration (interrupted write?); "
                                 "delete the checkpoints folder to start over")
        mc = self.model_config()
        model = self._build(mc, tens[_CK_MODEL], ck / _CK_MODEL).to(device)
        return self.config_dict(), mc, model, tens[_CK_OPTIM], state

    # -- training outputs ---------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.path / LOG

    def preview_path(self, iteration: int) -> Path:
        return self.path / PREVIEWS / f"it{iteration:06d}.png"

    def write_ply(self, means, quats, scales, opacities, sh, name: str = PLY) -> Path:
        from emogs.render.ply import save_ply

        save_ply(self.path / name, means, quats, scales, opacities, sh)
        return self.path / name

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self.path / METRICS, metrics)

    def metrics(self) -> dict[str, Any] | None:
        p = self.path / METRICS
        return _read_json(p) if p.is_file() else None

    def write_test_alpha(self, alpha: np.ndarray) -> None:
        with atomic_path(self.path / TEST_ALPHA) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, alpha=np.asarray(alpha, np.uint8))

    def test_alpha(self) -> np.ndarray | None:
        """(F, S, S) uint8 rendered head alpha of the test split, or None (runs from before it was written)."""
        p = self.path / TEST_ALPHA
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return z["alpha"]
        except Exception as e:  # noqa: BLE001
            raise InputError(f"{p}: unreadable ({type(e).__name__}); delete it (eval then reports no field-protocol "
                             "regions)") from None

    @property
    def test_render_path(self) -> Path:
        return self.path / TEST_RENDER

    def split_render_path(self, split: str) -> Path:
        return self.path / f"{split}_render.mp4"

    # -- benchmarks ---------------------------------------------------------------------------------
    def write_benchmark(self, results: dict[str, Any]) -> None:
        write_json(self.path / BENCHMARK, results)

    def benchmark_fps(self) -> tuple[float | None, str | None]:
        """`fps` (or `render_fps`) from the render benchmark file, when present."""
        for name in BENCHMARK_FILES:
            p = self.path / name
            if p.is_file():
                d = _read_json(p)
                for key in ("fps", "render_fps"):
                    if isinstance(d, dict) and isinstance(d.get(key), (int, float)):
                        return float(d[key]), str(p)
        return None, None


def _model_class(kind: str):
    """The model class of a run's `model.kind`."""
    if kind == "emotag":
        from emogs.model.emotag import EmoTagHead

        return EmoTagHead
    if kind == "mesh":
        from emogs.model.mesh_head import MeshHead

        return MeshHead
    from emogs.model.head import TalkingHead

    return TalkingHead


def open_run(path: str | Path) -> RunFolder:
    """An existing run folder (InputError with a one-line reason otherwise)."""
    run = RunFolder(path)
    if not run.path.is_dir():
        raise InputError(f"{run.path}: no such run folder" if not run.path.exists() else f"{run.path}: not a folder")
    if not run.exists():
        raise InputError(f"{run.path}: not a run folder (no {CONFIG} or {MODEL}); make one with `emogs train`")
    run.format_version()
    return run
