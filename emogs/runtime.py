"""Where computation runs: the torch device a command asked for."""
from __future__ import annotations

from emogs.errors import InputError


def resolve_device(name: str = "auto"):
    """'auto' | 'cpu' | 'cuda' (| 'cuda:N') -> torch.device; InputError when CUDA is asked for and absent."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or name.split(":")[0] not in ("cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name} asked for but no CUDA device is available")
    return torch.device(name)
