"""Run files: checkpoints for resume, the final model, and `load_run` for inference.

RUN/checkpoints/last.safetensors        model state (network + Gaussians), metadata: iteration, versions
RUN/checkpoints/last_optim.safetensors  Adam moments and steps per parameter, RNG state, densify stats
RUN/checkpoints/last_state.json         iteration, stage, scene extent, ... (written last)
RUN/config.json                         TrainConfig, rewritten with every checkpoint
RUN/model.safetensors                   final weights (metadata: emogs version, run format version)
All writes are atomic (temp file + rename); the three checkpoint files carry the same iteration and
`load_checkpoint` refuses a mismatched set (a crash between two renames).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file, safe_open

from emogs import __version__, config as cfgio
from emogs.errors import InputError
from emogs.io.atomic import atomic_path, read_json, write_json
from emogs.model.head import TalkingHead
from emogs.train.config import TrainConfig, load_run_config

RUN_FORMAT_VERSION = 1


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)


def _meta(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam state as flat named tensors: '<group>.<i>.exp_avg' etc."""
    out = {}
    for g in opt.param_groups:
        for i, p in enumerate(g["params"]):
            for k, v in opt.state.get(p, {}).items():
                out[f"opt.{g['name']}.{i}.{k}"] = torch.as_tensor(v).reshape(-1) if k == "step" else v
    return out


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    for g in opt.param_groups:
        for i, p in enumerate(g["params"]):
            st = {k: tensors[f"opt.{g['name']}.{i}.{k}"].to(p.device)
                  for k in ("step", "exp_avg", "exp_avg_sq") if f"opt.{g['name']}.{i}.{k}" in tensors}
            if st:
                st["step"] = st["step"].reshape(()).cpu().float()
                opt.state[p] = st


def save_checkpoint(run_dir: str | Path, cfg: TrainConfig, model: TalkingHead, opt: torch.optim.Optimizer,
                    state: dict[str, Any], extra: dict[str, torch.Tensor]) -> None:
    """Write the resumable checkpoint: model, optimiser + `extra` tensors, then state JSON and config."""
    ck = Path(run_dir) / "checkpoints"
    it = str(state["iteration"])
    meta = {"emogs_version": __version__, "run_format_version": str(RUN_FORMAT_VERSION), "iteration": it}
    _save_tensors(ck / "last.safetensors", model.state_dict(), meta)
    _save_tensors(ck / "last_optim.safetensors", {**optimizer_tensors(opt), **extra}, meta)
    cfgio.save(cfg, Path(run_dir) / "config.json")
    write_json(ck / "last_state.json", state)


def has_checkpoint(run_dir: str | Path) -> bool:
    return (Path(run_dir) / "checkpoints" / "last_state.json").is_file()


def load_checkpoint(run_dir: str | Path, device: torch.device | str = "cpu"
                    ) -> tuple[TrainConfig, TalkingHead, dict[str, torch.Tensor], dict[str, Any]]:
    """-> (config, model, optimiser/extra tensors, state) from RUN/checkpoints."""
    run_dir = Path(run_dir)
    ck = run_dir / "checkpoints"
    state = read_json(ck / "last_state.json")
    for f in ("last.safetensors", "last_optim.safetensors"):
        if _meta(ck / f).get("iteration") != str(state["iteration"]):
            raise InputError(f"{ck}: checkpoint files disagree on the iteration (interrupted write?)")
    cfg = load_run_config(run_dir / "config.json")
    model = TalkingHead.from_state_dict(cfg.model, load_file(str(ck / "last.safetensors"))).to(device)
    return cfg, model, load_file(str(ck / "last_optim.safetensors")), state


def save_model(run_dir: str | Path, model: TalkingHead) -> None:
    meta = {"emogs_version": __version__, "run_format_version": str(RUN_FORMAT_VERSION),
            "num_gaussians": str(len(model.gaussians)), "variant": model.cfg.variant}
    _save_tensors(Path(run_dir) / "model.safetensors", model.state_dict(), meta)


def load_run(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[TrainConfig, TalkingHead]:
    """A trained run -> (TrainConfig, TalkingHead in eval mode). Uses model.safetensors, else the last
    checkpoint (a run still training)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise InputError(f"{run_dir}: not a run folder (no config.json)")
    cfg = load_run_config(run_dir / "config.json")
    path = run_dir / "model.safetensors"
    if not path.is_file():
        path = run_dir / "checkpoints" / "last.safetensors"
    if not path.is_file():
        raise InputError(f"{run_dir}: no model.safetensors or checkpoint")
    model = TalkingHead.from_state_dict(cfg.model, load_file(str(path))).to(device).eval()
    return cfg, model
