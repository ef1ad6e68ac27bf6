"""EmoTaG few-shot training: `pretrain` (many identities -> one BASE) and `adapt` (BASE + a few seconds of a new
person -> an ordinary run), both on the EmoTagHead (emogs.model.emotag). docs/fewshot.md.

pretrain: the identities' frames in memory (FrameBank each), one shared triangle-local Gaussian layout (made on
the first identity's mesh and frames, as the mesh head's; no densification, so the layout stays one for all),
colours voted per identity into the head's per-identity colour residual. Each step takes one identity
(shuffled round robin; with several processes each rank takes its own), puts that person's mesh, mean
expression / AUs and identity row into the head, and takes the training loop's losses (`compute_losses`, plus
the head's motion loss). Several processes (`torchrun`, `torch.distributed`: NCCL on CUDA, gloo on CPU) average
their gradients with an all-reduce before each step (what DistributedDataParallel does; done by hand because
every rank swaps its own person's buffers into the head each step, which DDP's buffer broadcast would
overwrite), so every rank holds identical weights. Checkpoints (BASE/, emogs.run.base) every
`checkpoint_every` steps and when `budget_s` runs out: a later call resumes from the last one.

adapt: the base's layout moved onto the new person's mesh (triangle-local parameters copied, the parent sizes
of their mesh), colours voted from their frames (Gaussians no frame sees, and the mouth interior, keep the
base's mean colour), the identity code at the mean of the pretraining codes, the shared networks loaded; then
the ordinary training loop (`emogs.train.loop.train`, stages, densification, checkpoints, test evaluation) on
the first `seconds` of the dataset, with the networks at a tenth of their learning rate. The result is an
ordinary run (model.kind "emotag").
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from emogs import config as cfgio
from emogs.errors import InputError
from emogs.model.emotag import EmoTagHead, concat_layouts, take_layout, transfer_layout, vote_colors
from emogs.model.gaussians import GaussianSet, _logit
from emogs.run.base import BaseFolder
from emogs.train.config import TrainConfig, config_from_run, validate
from emogs.train.data import FrameBank

# state keys of a base that are not loaded into an adapted head: the layout (rebuilt on the person's mesh by
# `head_from_base`), the person's mesh and means, the identity tables
SHARED_SKIP = ("gaussians.", "mesh_neutral", "expr_mean", "au_mean", "fer_mean", "id_code", "id_color", "identity")


def attach_fer(bank: FrameBank, ds, cfg: TrainConfig, log=print) -> FrameBank:
    """With the emotion latent (cfg.model.emotion_dim > 0): the bank's frames' FER2013 conditioning (scores + e,
    (F, 8)) from the dataset's cached scores (DATASET/fer.npz, computed and cached now when absent:
    emogs.data.fer_features). Unchanged otherwise."""
    if int(getattr(cfg.model, "emotion_dim", 0)) <= 0 or bank.fer is not None:
        return bank
    from emogs.data.fer_features import ensure_fer_features
    from emogs.face.fer import emotion_condition

    probs = ensure_fer_features(ds.root, log)
    cond = emotion_condition(probs)[bank.index.cpu().numpy()]
    bank.fer = torch.as_tensor(cond, device=bank.index.device)
    return bank


# -- building heads -----------------------------------------------------------------------------------------
def _person(ds, bank: FrameBank) -> dict[str, Any]:
    from emogs.train.fewshot_pack import load_person_mesh
    from emogs.train.loop import mesh_regions

    pm = load_person_mesh(ds.root)
    regions = mesh_regions(pm)
    expr = bank.expression.cpu().numpy()
    return dict(neutral=pm["neutral"].astype(np.float32), basis=pm["basis"].astype(np.float32),
                triangles=np.asarray(pm["triangles"], np.int64), regions=regions, expr=expr, expr_mean=expr.mean(0),
                au_mean=bank.au_window[:, bank.au_window.shape[1] // 2].float().mean(0).cpu(),
                fer_mean=None if bank.fer is None else bank.fer.float().mean(0).cpu(),
                names=[str(n) for n in pm["expression_names"]])


def _layout(cfg: TrainConfig, bank: FrameBank, p: dict) -> GaussianSet:
    from emogs.model.mesh_head import init_mesh_gaussians
    from emogs.train.loop import _views

    m = cfg.model
    iv, vv = bank.spread_ids(cfg.num_init_views), bank.spread_ids(cfg.num_vote_views)
    return init_mesh_gaussians(p["neutral"], p["basis"], p["triangles"], p["regions"], p["expr_mean"],
                               _views(bank, cfg.num_init_views), p["expr"][iv], _views(bank, cfg.num_vote_views),
                               p["expr"][vv], m.num_face, m.num_shell, m.num_mouth, cfg.seed)


def _colors(g: GaussianSet, bank: FrameBank, p: dict, n_views: int) -> tuple[np.ndarray, np.ndarray]:
    from emogs.train.loop import _views

    ids = bank.spread_ids(n_views)
    col = vote_colors(g, p["neutral"], p["basis"], p["triangles"], _views(bank, n_views), p["expr"][ids], default=-1.0)
    return np.clip(col, 0.02, 0.98), col[:, 0] >= 0  # colours, seen by some view


def _head(cfg: TrainConfig, g: GaussianSet, p: dict, box=None) -> EmoTagHead:
    model = EmoTagHead(cfg.model, g, torch.tensor(p["neutral"]), torch.as_tensor(p["basis"]),
                       torch.as_tensor(p["triangles"]), torch.tensor(p["expr_mean"]),
                       *(box if box is not None else (None, None)))
    model.au_mean.copy_(p["au_mean"])
    if model.has_emotion:
        if p.get("fer_mean") is None:
            raise InputError("the emotion latent needs the frames' FER2013 scores (model.emotion_dim > 0)")
        model.fer_mean.copy_(p["fer_mean"])
    return model


def init_emotag_model(cfg: TrainConfig, bank: FrameBank, ds) -> EmoTagHead:
    """A one-person EmoTagHead from scratch (`emogs train --model emotag`): the mesh head's initialisation."""
    if getattr(ds, "mesh", None) is None or bank.expression is None:
        raise InputError("the emotag model needs a dataset with a fitted face mesh (mesh.npz)")
    cfg = cfgio.override(cfg, {"model.num_identities": 1})
    attach_fer(bank, ds, cfg)
    p = _person(ds, bank)
    return _head(cfg, _layout(cfg, bank, p), p)


def head_from_base(cfg: TrainConfig, state: dict[str, torch.Tensor], bank: FrameBank, ds, log=print,
                   person_shell: bool = True, reset_opacity: bool = False) -> EmoTagHead:
    """The base's layout and networks on a new person (see the module doc). `person_shell`: the hair/neck
    shell made from this person's frames (as a per-person head makes it) instead of the base's.
    `reset_opacity`: the surface Gaussians start at a per-person head's initial opacity (0.3) instead of the
    base's (what is visible, e.g. ears under hair, is the person's)."""
    if getattr(ds, "mesh", None) is None or bank.expression is None:
        raise InputError(f"{getattr(ds, 'root', 'the dataset')}: adapt needs a dataset with a fitted face mesh (mesh.npz)")
    attach_fer(bank, ds, cfg, log)
    p = _person(ds, bank)
    n_tri = int(state["mesh_triangles"].shape[0])
    if len(p["triangles"]) != n_tri or not torch.equal(torch.as_tensor(p["triangles"]), state["mesh_triangles"].long()):
        raise InputError(f"{ds.root}: its face mesh has another topology than the base's")
    src = GaussianSet(state["gaussians.means"].shape[0], bound=True)
    src.load_state_dict({k[len("gaussians."):]: v for k, v in state.items() if k.startswith("gaussians.")})
    base_col = state["gaussians.color_logit"]
    if "id_color" in state:
        base_col = base_col + state["id_color"].mean(0)
    n_surface = cfg.model.num_face + cfg.model.num_mouth  # the layout's surface part comes first (no densification)
    if person_shell and n_surface < len(src):
        # the hair/neck shell outlines the pretraining person's hair: this person's own from their frames instead
        keep_idx = torch.arange(n_surface)
        src, base_col = take_layout(src, keep_idx), base_col[keep_idx]
    g = transfer_layout(src, p["neutral"], p["basis"], p["triangles"], p["expr_mean"])
    col, seen = _colors(g, bank, p, max(cfg.num_vote_views, 8))
    from emogs.model.szpab import ZONE_MOUTH

    logit = _logit(col)
    keep = (~torch.as_tensor(seen)) | (g.zone == ZONE_MOUTH)
    with torch.no_grad():
        g.color_logit.copy_(torch.where(keep[:, None], base_col, logit))
        if reset_opacity:
            g.opacity_logit.fill_(float(_logit(np.float32(0.3))))
    n_shell = 0
    if person_shell and cfg.model.num_shell > 0:
        own = _layout(cfgio.override(cfg, {"model.num_face": 1, "model.num_mouth": 0}), bank, p)
        shell = take_layout(own, torch.arange(1, len(own)))  # what follows the one surface sample
        n_shell = len(shell)
        g = concat_layouts(g, shell)
        seen = np.concatenate([seen, np.ones(n_shell, bool)])
        keep = torch.cat([keep, torch.zeros(n_shell, dtype=torch.bool)])
    model = _head(cfgio.override(cfg, {"model.num_identities": 1}), g, p, (state["encoding.lo"], state["encoding.hi"]))
    shared = {k: v for k, v in state.items() if not k.startswith(SHARED_SKIP)}
    missing, unexpected = model.load_state_dict(shared, strict=False)
    bad = [k for k in missing if not k.startswith(SHARED_SKIP)]
    if bad or unexpected:
        raise InputError(f"the base does not fit this emogs's EmoTagHead (missing {bad[:3]}, unexpected {unexpected[:3]})")
    with torch.no_grad():
        model.id_code.copy_(state["id_code"].mean(0, keepdim=True))
    log(f"[adapt] base layout on the person's mesh: {len(g) - n_shell} Gaussians ({int(keep.sum())} keep the base's "
        f"colour) + {n_shell} shell Gaussians from their frames")
    return model


# -- distributed ---------------------------------------------------------------------------------------------
def _dist() -> tuple[int, int, bool]:
    """(rank, world size, started here) from torchrun's environment."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    dist.init_process_group("nccl" if torch.cuda.is_available() and os.environ.get("EMOGS_DIST_BACKEND") != "gloo"
                            else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    import torch.distributed as dist

    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    i = 0
    for g in grads:
        g.copy_(flat[i:i + g.numel()].view_as(g))
        i += g.numel()


def _any_rank(flag: bool, world: int, device) -> bool:
    if world <= 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def state_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's parameters (what two ranks must agree on)."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# -- pretraining -------------------------------------------------------------------------------------------
def _open_all(root: Path, cfg: TrainConfig):
    from emogs.data.dataset import TalkingHeadDataset

    m = cfg.model
    return TalkingHeadDataset(root, split="all", audio_feature=m.audio_feature, audio_window=m.audio_window,
                              au_window=m.au_window, mesh=True)


def pretrain(datasets: list[str | Path], base_dir: str | Path, cfg: TrainConfig, budget_s: float = 0.0,
             max_steps: int | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Pretrain (or resume) a BASE on the mesh datasets of many identities (one dataset = one identity; pass
    each person once). Stops at cfg.iters, after `max_steps` steps of this call, or when `budget_s` wall
    seconds are spent (checkpoint written, so a later call resumes). Returns a summary."""
    from emogs.runtime import resolve_device
    from emogs.train.loop import _fill_data_sizes, build_optimizer, set_learning_rates
    from emogs.train.losses import LossContext, compute_losses
    from emogs.train.state import optimizer_tensors, restore_optimizer

    t_start = time.time()
    rank, world, started = _dist()
    base = BaseFolder(base_dir)
    roots = [Path(d) for d in datasets]
    if len(roots) < 1:
        raise InputError("pretrain needs at least one dataset")
    if len({r.resolve() for r in roots}) != len(roots):
        raise InputError("pretrain: a dataset is given twice")
    resuming = base.exists()
    if resuming:
        cfg_d, state, otens, info = base.load(with_optim=True)
        cfg = config_from_run(cfg_d)
        if [i["name"] for i in info["identities"]] != [r.name for r in roots]:
            raise InputError(f"{base.path}: pretrained on other identities ({', '.join(i['name'] for i in info['identities'])}); "
                             "give the same datasets in the same order, or a new -o")
        if info.get("status") == "complete":
            log(f"[pretrain] {base.path} is complete ({info['step']} steps); nothing to do")
            return dict(step=info["step"], complete=True, already_complete=True)
    cfg = cfgio.override(cfg, {"model.kind": "emotag", "model.num_identities": len(roots)})
    validate(cfg)
    if world > 1 and torch.cuda.is_available() and cfg.device != "cpu":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = resolve_device(cfg.device)
    t0 = time.time()
    dss = [_open_all(r, cfg) for r in roots]
    banks = [attach_fer(FrameBank.from_dataset(d, cfg.resolution, device, cfg.neck_keep), d, cfg, log) for d in dss]
    if any(b.expression is None for b in banks):
        raise InputError("pretrain: every dataset needs a face-mesh fit (mesh.npz)")
    people = [_person(d, b) for d, b in zip(dss, banks)]
    for r, p in zip(roots, people):
        if p["triangles"].shape != people[0]["triangles"].shape or p["names"] != people[0]["names"]:
            raise InputError(f"{r}: its face mesh differs from {roots[0]}'s (another ICT-FaceKit model?)")
    log(f"[pretrain] rank {rank}/{world}: {len(roots)} identities, {sum(len(b) for b in banks)} frames at "
        f"{cfg.resolution} px on {device} ({time.time() - t0:.1f}s to load)")
    gen = torch.Generator().manual_seed(cfg.seed + 1000 * rank)
    if resuming:
        model = EmoTagHead.from_state_dict(cfg.model, state).to(device)
        step = int(info["step"])
    else:
        torch.manual_seed(cfg.seed)
        cfg = _fill_data_sizes(cfg, banks[0])
        g = _layout(cfg, banks[0], people[0])
        model = _head(cfg, g, people[0])
        with torch.no_grad():
            model.gaussians.color_logit.zero_()
            for k, (b, p) in enumerate(zip(banks, people)):
                col, _ = _colors(model.gaussians, b, p, max(cfg.num_init_views, 8))
                model.id_color[k].copy_(_logit(col))
        model = model.to(device)
        step = 0
    extent = float(model.gaussians.extent())
    opt = build_optimizer(model, cfg, extent)
    opt.add_param_group(dict(params=[model.id_color], lr=cfg.optim.lr_colors, name="id_color",
                             lr0=cfg.optim.lr_colors, lr1=cfg.optim.lr_colors))
    if resuming:
        restore_optimizer(opt, otens)
        if f"rng.rank{rank}" in otens:
            gen.set_state(otens[f"rng.rank{rank}"].to(torch.uint8))
        log(f"[pretrain] resuming {base.path} from step {step}")
    if world > 1:  # every rank starts from rank 0's weights
        import torch.distributed as dist

        for t in list(model.parameters()):
            dist.broadcast(t.data, 0)
    params = [p for grp in opt.param_groups for p in grp["params"]]
    # copies (torch.tensor): the head's buffers are overwritten by `put`, and must not alias these
    dev_people = [dict(neutral=torch.tensor(p["neutral"], device=device),
                       expr_mean=torch.tensor(p["expr_mean"], device=device), au_mean=p["au_mean"].clone().to(device),
                       fer_mean=None if p["fer_mean"] is None else p["fer_mean"].clone().to(device))
                  for p in people]
    identities = [dict(name=r.name, dataset=str(r), frames=len(b)) for r, b in zip(roots, banks)]

    def put(k: int) -> None:
        with torch.no_grad():
            model.mesh_neutral.copy_(dev_people[k]["neutral"])
            model.expr_mean.copy_(dev_people[k]["expr_mean"])
            model.au_mean.copy_(dev_people[k]["au_mean"])
            if model.has_emotion:
                model.fer_mean.copy_(dev_people[k]["fer_mean"])
        model.set_identity(k)

    def checkpoint(at: int, complete: bool) -> None:
        tens = dict(optimizer_tensors(opt))
        states = [gen.get_state()]
        if world > 1:
            import torch.distributed as dist

            gathered = [None] * world
            dist.all_gather_object(gathered, gen.get_state())
            states = gathered
        for r, s in enumerate(states):
            tens[f"rng.rank{r}"] = s
        if rank == 0:
            put(0)
            base.save(cfg, model.state_dict(), tens, at, identities, complete, world_size=world,
                      resolution=cfg.resolution)
        if world > 1:
            import torch.distributed as dist

            dist.barrier()

    stop = cfg.iters if max_steps is None else min(cfg.iters, step + max_steps)
    if rank == 0:
        base.path.mkdir(parents=True, exist_ok=True)
    logf = open(base.log_path, "a") if rank == 0 else None
    model.train()
    t_loop, t_last, s_last = time.time(), time.time(), step
    n = len(roots)
    try:
        while step < stop:
            if budget_s > 0 and _any_rank(time.time() - t_start > budget_s, world, device):
                log(f"[pretrain] time budget {budget_s:.0f}s reached at step {step}")
                break
            j = step * world + rank  # shuffled round robin: epoch j // n visits every identity once
            k = int(torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + j // n))[j % n])
            put(k)
            bank = banks[k]
            set_learning_rates(opt, step, cfg.iters)
            ids = torch.randint(len(bank), (cfg.batch_size,), generator=gen).to(device)
            b = bank.batch(ids, cfg.neck_soft_px * cfg.resolution / 512)
            stage = "coarse" if step < cfg.fine_start else "fine"
            out = model(b["world_to_cam"], b["K"], b["audio"], b["au_window"], bank.size, bank.size,
                        b["background"], backend=cfg.backend, expression=b["expression"])
            loss, terms = compute_losses(LossContext(out.rgb, b["image"], b, out, model, stage), cfg.loss)
            aux, t2 = model.auxiliary_loss(b)
            loss = loss + aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1:
                _average_gradients(params, world)
            opt.step()
            step += 1
            if logf is not None and (step % cfg.log_every == 0 or step == stop):
                now = time.time()
                ips = (step - s_last) / max(now - t_last, 1e-9)
                t_last, s_last = now, step
                psnr = float(-10 * torch.log10(((out.rgb.detach() - b["image"]) ** 2).mean().clamp_min(1e-10)))
                rec = dict(step=step, identity=identities[k]["name"], loss=float(loss.detach()), psnr=psnr, it_s=ips,
                           world=world, **terms, **t2)
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                log(f"[pretrain] step {step}/{cfg.iters} | {identities[k]['name'][:24]} | loss {float(loss.detach()):.4f} "
                    f"| psnr {psnr:.2f} | motion {t2.get('motion', 0):.4f}"
                    + (f" | kl {t2['kl']:.3f}" if "kl" in t2 else "") + f" | {ips:.2f} it/s")
            if step % cfg.checkpoint_every == 0 and step < stop:
                checkpoint(step, False)
    finally:
        if logf is not None:
            logf.close()
    checkpoint(step, step >= cfg.iters)
    summary = dict(step=step, complete=step >= cfg.iters, identities=len(roots), world=world, rank=rank,
                   weights_sha256=state_digest(model),
                   wall_s=round(time.time() - t_start, 1), steps_per_s=round((step - s_last) / max(time.time() - t_last, 1e-9), 3))
    log(f"[pretrain] {'complete' if summary['complete'] else 'checkpoint'} at step {step} -> {base.path}")
    if started:
        import torch.distributed as dist

        dist.destroy_process_group()
    return summary


# -- adaptation --------------------------------------------------------------------------------------------
ADAPT_NET_LR_SCALE = 0.1  # the shared networks move slowly; appearance, layout and the code at the usual rates


def adapt_config(base_cfg: dict, device: str = "auto", iters: int | None = None, budget_s: float = 0.0,
                 overrides: dict | None = None, net_lr_scale: float = ADAPT_NET_LR_SCALE) -> TrainConfig:
    """The adaptation's TrainConfig: the base's (the model's structure must stay), one identity, the device's
    backend, the networks' learning rates times `net_lr_scale`, `overrides` for anything but the model."""
    cfg = config_from_run(base_cfg)
    o = cfg.optim
    cfg = cfgio.override(cfg, {"model.num_identities": 1, "device": device, "time_budget_s": float(budget_s),
                               "optim.lr_net": o.lr_net * net_lr_scale,
                               "optim.lr_net_final": o.lr_net_final * net_lr_scale})
    if overrides:
        if any(str(k).startswith("model") for k in overrides):
            raise InputError("adapt: the model's settings come from the base (no model.* overrides)")
        cfg = cfgio.override(cfg, overrides)
    validate(cfg)
    iters = iters or TrainConfig().iters  # the schedule of a per-person run; a time budget shrinks it
    if iters != cfg.iters:
        cfg = cfg.scaled(iters)
    return cfg


def few_shot_datasets(dataset: str | Path, cfg: TrainConfig, seconds: float):
    """(train, test) TalkingHeadDatasets: the first `seconds` of the dataset's train split (all of it when it
    is shorter), and its test split."""
    from emogs.train.loop import open_datasets

    tr, te = open_datasets(dataset, cfg)
    fps = float(tr.manifest.get("fps", 25))
    n = int(round(seconds * fps))
    if n < 1:
        raise InputError(f"--seconds {seconds}: less than one frame")
    tr.indices = tr.indices[:n]  # a shorter train split is used whole (run.json's adapt.seconds says how much)
    return tr, te


def adapt(base_dir: str | Path, dataset: str | Path, run_dir: str | Path, seconds: float = 5.0,
          iters: int | None = None, budget_s: float = 0.0, device: str = "auto", overrides: dict | None = None,
          resume: bool = True, person_shell: bool = True, net_lr_scale: float = ADAPT_NET_LR_SCALE,
          reset_opacity: bool = False,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """BASE + the first `seconds` of DATASET -> an ordinary run folder (see the module doc)."""
    from emogs.data.dataset import load_manifest
    from emogs.run import RunFolder
    from emogs.train.loop import train

    t0 = time.time()
    load_manifest(dataset)
    base = BaseFolder(base_dir)
    cfg_d, state, _, info = base.load()
    if info.get("status") != "complete":
        log(f"[adapt] note: {base.path} is a pretraining checkpoint (step {info.get('step')}), not a finished base")
    cfg = adapt_config(cfg_d, device, iters, budget_s, overrides, net_lr_scale)
    if cfg.model.kind != "emotag":
        raise InputError(f"{base.path}: not an EmoTaG base (model.kind {cfg.model.kind})")
    run = RunFolder(run_dir)
    train_ds, test_ds = few_shot_datasets(dataset, cfg, seconds)
    log(f"[adapt] {dataset}: the first {len(train_ds)} frames ({len(train_ds) / 25:g} s) from base {base.path} "
        f"(step {info.get('step')}, {len(info.get('identities', []))} identities); test split {len(test_ds)} frames")
    summary = train((train_ds, test_ds), run_dir, cfg, resume=resume, log=log,
                    init=lambda c, bank, ds: head_from_base(c, state, bank, ds, log, person_shell, reset_opacity))
    facts = dict(base=str(base.path), base_step=int(info.get("step", 0)), seconds=len(train_ds) / 25,
                 shell="person" if person_shell else "base", net_lr_scale=net_lr_scale, reset_opacity=reset_opacity,
                 train_frames=[int(train_ds.indices[0]), int(train_ds.indices[-1]) + 1],
                 wall_s=round(time.time() - t0, 1))
    run.write_adapt_info(facts)
    summary["adapt"] = facts
    return summary
