"""Reading runs written by older emogs versions: every difference between an old run folder and today's
format is handled here, and only here.

- Run format 1 (no `run.json`): the run's identity (dataset, completeness) is read from `dataset.json`
  and `model.safetensors`' metadata instead.
- Model settings added after the first runs get the value those runs were trained with
  (`LEGACY_MODEL_DEFAULTS`; runs without a model kind are free heads), not today's default.
- The head-pose input of the deformation network (`pose_dim`, `pose_in_deform`) is gone: it was off by
  default (zeroed), so its weight columns contributed nothing; they are dropped from old weights
  (`migrate_model_state`). A run trained with it on cannot be rendered by this version.
- `use_raar` moved from the model's variant table to the loss settings: variants without RAAR get
  `loss.raar = 0` when an old config is read for resuming.
- The expert losses L_sync and L_AU (`loss.sync`, `loss.au`) came after the first runs: a run whose config
  lacks them was trained without them and reads them as 0 (`LEGACY_LOSS_DEFAULTS`); runs from before
  `loss.expert_appearance` let the experts change colours and opacities, and read it as true.
- The eyelid re-binding of mesh heads (`densify.eyelid_margin`, `model.eyeball_init`, issue 13) came later: runs
  whose config lacks them read 0 (off) and "sphere", so resuming them trains as before.
- `neck_keep` (the head label trimmed below the jaw, session 7) came later: runs whose config lacks it read -1
  (the dataset's labels), so resuming them trains as before.
- Runs without `train_cameras.npz` read the training cameras from the dataset they were trained on.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from emogs.errors import InputError

# model settings added after the first runs -> the value that reproduces those runs
# (emotion_dim 0: emotag heads from before the emotion latent)
LEGACY_MODEL_DEFAULTS = {"au_basis_zones": "all", "bias_au_in_other": 0.0, "eyeball_init": "sphere", "emotion_dim": 0}
REMOVED_MODEL_KEYS = ("pose_dim", "pose_in_deform")
RAAR_VARIANTS = ("au_szpab", "full")
# loss settings added after the first runs -> the value that reproduces those runs
LEGACY_LOSS_DEFAULTS = {"sync": 0.0, "au": 0.0, "expert_appearance": True}
# densification settings added after the first runs -> the value that reproduces those runs
LEGACY_DENSIFY_DEFAULTS = {"eyelid_margin": 0.0}
# top-level training settings added after the first runs -> the value that reproduces those runs
LEGACY_TRAIN_DEFAULTS = {"neck_keep": -1.0}


def migrate_config(d: dict[str, Any], format_version: int, where: str = "config.json") -> dict[str, Any]:
    """A saved TrainConfig dict of a run of `format_version` -> today's keys (a copy)."""
    if not isinstance(d, dict) or not isinstance(d.get("model"), dict):
        raise InputError(f"{where}: not an emogs run config (no 'model' settings)")
    d = copy.deepcopy(d)
    model = d["model"]
    model.setdefault("kind", "free")  # runs from before the mesh head
    for k, v in LEGACY_MODEL_DEFAULTS.items():
        model.setdefault(k, v)
    if model.get("pose_in_deform"):
        raise InputError(f"{where}: this run feeds the head pose into its deformation network, which this "
                         "emogs no longer supports; retrain it")
    for k in REMOVED_MODEL_KEYS:
        model.pop(k, None)
    loss = d.get("loss")
    if isinstance(loss, dict):
        # weights of loss terms that older versions declared but never implemented (always 0 there)
        for k in ("lip_sync", "au_consistency"):
            if k in loss and not loss[k]:
                loss.pop(k)
        if format_version < 2 and model.get("variant") not in RAAR_VARIANTS:
            loss["raar"] = 0.0  # format 1 applied RAAR by variant, whatever the weight said
        for k, v in LEGACY_LOSS_DEFAULTS.items():
            loss.setdefault(k, v)
    for k, v in LEGACY_TRAIN_DEFAULTS.items():
        d.setdefault(k, v)
    dens = d.get("densify")
    if isinstance(dens, dict):
        for k, v in LEGACY_DENSIFY_DEFAULTS.items():
            dens.setdefault(k, v)
    return d


def migrate_model_state(state: dict[str, torch.Tensor], feat_dim: int, token_dim: int) -> dict[str, torch.Tensor]:
    """Weights of any version -> today's parameter names and shapes: drops the pose encoder and the pose
    columns of the deformation network's first layer (they multiplied a zero input)."""
    if not any(k.startswith("pose.") for k in state):
        return state
    state = {k: v for k, v in state.items() if not k.startswith("pose.")}
    w = state.get("deform.mlp.0.weight")
    if w is not None and w.shape[1] > feat_dim + token_dim:
        state["deform.mlp.0.weight"] = w[:, : feat_dim + token_dim].contiguous()
    return state
