"""`BaseFolder`: the one reader and writer of a few-shot BASE folder (`emogs pretrain` writes it, `emogs adapt`
reads it). What is shared across people: the EmoTaG head's triangle-local Gaussian layout and networks, one
identity code and colour residual per pretraining identity (emogs.model.emotag).

```
BASE/
  base.json          format version, emogs version, status "pretraining" | "complete", step, the identities
                     (name, dataset, frames) in code-table order; rewritten with every checkpoint (last)
  config.json        the pretraining TrainConfig (model.kind "emotag", model.num_identities)
  model.safetensors  the EmoTagHead state (metadata: step)
  optim.safetensors  optimiser + RNG tensors (metadata: step): resume
  pretrain_log.jsonl step, loss terms, psnr, it/s, identity
```
Every write is atomic (temp file + rename); the three state files carry the same step, or the folder is
refused as damaged.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from emogs import __version__
from emogs.errors import InputError
from emogs.io.atomic import read_json, write_json
from emogs.run.folder import _load_tensors, _save_tensors

BASE_FORMAT_VERSION = 1
BASE_JSON, CONFIG, MODEL, OPTIM, LOG = "base.json", "config.json", "model.safetensors", "optim.safetensors", "pretrain_log.jsonl"


class BaseFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return (self.path / BASE_JSON).is_file()

    def info(self) -> dict[str, Any]:
        p = self.path / BASE_JSON
        try:
            d = read_json(p)
        except FileNotFoundError:
            raise InputError(f"{self.path}: not a few-shot base (no {BASE_JSON}); make one with `emogs pretrain`") from None
        except (ValueError, OSError) as e:
            raise InputError(f"{p}: unreadable ({type(e).__name__})") from None
        if not isinstance(d, dict) or d.get("format_version") != BASE_FORMAT_VERSION:
            raise InputError(f"{p}: not a base of format {BASE_FORMAT_VERSION}")
        return d

    def config_dict(self) -> dict[str, Any]:
        """config.json as today's keys (a base from before the emotion latent: model.emotion_dim 0)."""
        from emogs.run.migrate import migrate_config

        try:
            d = read_json(self.path / CONFIG)
        except (FileNotFoundError, ValueError, OSError):
            raise InputError(f"{self.path / CONFIG}: missing or unreadable") from None
        return migrate_config(d, 2, str(self.path / CONFIG))

    @property
    def log_path(self) -> Path:
        return self.path / LOG

    def save(self, cfg: Any, model_state: dict[str, torch.Tensor], train_tensors: dict[str, torch.Tensor],
             step: int, identities: list[dict], complete: bool, **facts: Any) -> None:
        from emogs import config as cfgio

        self.path.mkdir(parents=True, exist_ok=True)
        meta = {"emogs_version": __version__, "kind": "fewshot_base", "step": str(step)}
        _save_tensors(self.path / MODEL, model_state, meta)
        _save_tensors(self.path / OPTIM, train_tensors, meta)
        cfgio.save(cfg, self.path / CONFIG)
        write_json(self.path / BASE_JSON, dict(
            format_version=BASE_FORMAT_VERSION, emogs_version=__version__, status="complete" if complete else "pretraining",
            step=int(step), identities=identities, saved=time.strftime("%Y-%m-%dT%H:%M:%S"), **facts))

    def load(self, with_optim: bool = False) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict]:
        """-> (config dict, model state, optimiser tensors or None, base.json)."""
        info = self.info()
        state, meta = _load_tensors(self.path / MODEL)
        opt = None
        if with_optim:
            opt, meta2 = _load_tensors(self.path / OPTIM)
            if meta2.get("step") != meta.get("step"):
                raise InputError(f"{self.path}: model and optimiser files disagree on the step (interrupted write?)")
        if meta.get("step") != str(info.get("step")):
            raise InputError(f"{self.path}: {MODEL} and {BASE_JSON} disagree on the step (interrupted write?)")
        return self.config_dict(), state, opt, info
