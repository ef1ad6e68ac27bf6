"""Shipped expert weights: `emogs/experts/weights/<name>.safetensors` (float16) + `<name>.json` beside it
(config, training data list, held-out identities, validation numbers). No pickle."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from emogs.errors import MissingAssetError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def save_weights(module: torch.nn.Module, path: str | Path, info: dict[str, Any]) -> None:
    """State dict as float16 safetensors (integer buffers kept) + `info` as JSON beside it, atomically."""
    from safetensors.torch import save_file

    from emogs.io.atomic import atomic_path, write_json

    path = Path(path)
    sd = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
          for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt", "info": "see the .json beside this file"})
    write_json(path.with_suffix(".json"), info)


def load_info(path: str | Path) -> dict[str, Any]:
    p = Path(path).with_suffix(".json")
    if not p.is_file():
        raise MissingAssetError(f"{p}: expert description missing (reinstall emogs)")
    return json.loads(p.read_text(encoding="utf-8"))


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """float32 state dict of a weight file (MissingAssetError when absent or unreadable)."""
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise MissingAssetError(f"{p}: expert weights missing (reinstall emogs, or train them with scripts/)")
    try:
        sd = load_file(str(p))
    except Exception as e:  # a truncated or foreign file
        raise MissingAssetError(f"{p}: unreadable expert weights ({type(e).__name__})") from None
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
