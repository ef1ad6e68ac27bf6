"""The optimiser's state as flat named tensors (what a checkpoint stores to resume training exactly)."""
from __future__ import annotations

import torch


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam state as flat named tensors: 'opt.<group>.<i>.exp_avg' etc."""
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
