"""The one training loop: stages ("coarse": full image; "fine": lips/mouth emphasis, LPIPS, mouth depth),
3DGS-rate Adam groups with exponential decay, densification, logging, previews, checkpoints, resume,
and the final test-split evaluation (test_render.mp4 + metrics.json). Everything it writes goes through
the run room (`emogs.run.RunFolder`)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from emogs import config as cfgio
from emogs.errors import InputError
from emogs.io.atomic import atomic_path
from emogs.model.gaussians import View, init_head_gaussians
from emogs.model.head import TalkingHead
from emogs.run import RunFolder
from emogs.runtime import resolve_device
from emogs.train.config import TrainConfig, config_from_run, validate
from emogs.train.data import FrameBank
from emogs.train.densify import DensifyStats, densify_and_prune
from emogs.train.evaluate import evaluate_test
from emogs.train.experts import (TermMeans, cost_factor, detach_appearance, expert_terms, is_sync_step,
                                 setup_expert_losses, sync_batch_ids)
from emogs.train.losses import LossContext, compute_losses
from emogs.train.refine import FrameRefiner
from emogs.train.state import optimizer_tensors, restore_optimizer


def open_datasets(root: str | Path, cfg: TrainConfig):
    """TalkingHeadDataset train/test splits with the model's audio/AU windows."""
    from emogs.data.dataset import TalkingHeadDataset

    m = cfg.model
    kw = dict(audio_feature=m.audio_feature, audio_window=m.audio_window, au_window=m.au_window,
              mesh=m.kind in ("mesh", "emotag"))
    return TalkingHeadDataset(root, split="train", **kw), TalkingHeadDataset(root, split="test", **kw)


def build_optimizer(model: TalkingHead, cfg: TrainConfig, extent: float,
                    refiner: FrameRefiner | None = None) -> torch.optim.Adam:
    """Adam over the model's groups, plus the per-frame refinements' (pose deltas, appearance codes) when on."""
    o, g = cfg.optim, model.gaussians
    groups = [
        ("net", model.network_parameters(), o.lr_net, o.lr_net_final),
        ("encoding", model.field_parameters(), o.lr_encoding, o.lr_encoding_final),
        ("means", [g.means], o.lr_means * extent, o.lr_means_final * extent),
        ("scales", [g.log_scales], o.lr_scales, o.lr_scales),
        ("quats", [g.quats], o.lr_quats, o.lr_quats),
        ("opacity", [g.opacity_logit], o.lr_opacity, o.lr_opacity),
        ("colors", [g.color_logit], o.lr_colors, o.lr_colors),
    ] + (refiner.param_groups(cfg) if refiner is not None else [])
    return torch.optim.Adam([dict(params=p, lr=a, name=n, lr0=a, lr1=b) for n, p, a, b in groups], eps=1e-15)


def set_learning_rates(opt: torch.optim.Optimizer, it: int, total: int) -> None:
    t = min(1.0, it / max(1, total))
    for g in opt.param_groups:
        g["lr"] = g["lr0"] * (g["lr1"] / g["lr0"]) ** t if g["lr0"] > 0 else 0.0


def _views(bank: FrameBank, n: int) -> list[View]:
    ids = bank.spread_ids(n)
    return [View(bank.images[i].cpu().numpy().astype(np.float32) / 255, bank.labels[i].cpu().numpy(),
                 bank.world_to_cam[i].cpu().double().numpy(), bank.K[i].cpu().double().numpy()) for i in ids]


def init_model(cfg: TrainConfig, bank: FrameBank, ds=None) -> TalkingHead:
    """The head for `cfg.model.kind`: canonical Gaussians from MediaPipe's canonical face mesh + the bank's
    frames (free), or Gaussians bound to the person's fitted ICT-FaceKit mesh (mesh; `ds.mesh` holds the
    dataset's fit), then the networks."""
    if cfg.model.kind == "mesh":
        return init_mesh_model(cfg, bank, ds)
    if cfg.model.kind == "emotag":  # the few-shot head, here trained on one person from scratch
        from emogs.train.fewshot import init_emotag_model

        return init_emotag_model(cfg, bank, ds)
    from emogs.face.camera import canonical_face_mesh

    verts, faces, _ = canonical_face_mesh()
    m = cfg.model
    g = init_head_gaussians(verts.astype(np.float64), faces, _views(bank, cfg.num_init_views),
                            _views(bank, cfg.num_vote_views), m.num_face, m.num_shell, m.num_mouth, cfg.seed)
    model = TalkingHead(m, g)
    model.au_mean.copy_(bank.au_window[:, bank.au_window.shape[1] // 2].float().mean(0).cpu())
    return model


PERSON_MESH = "person_mesh.npz"
ICT_BASIS = "ict_expression_basis.npz"  # packed assets: the basis person_mesh.npz files packed without one share


def person_mesh(root: Path) -> dict[str, np.ndarray]:
    """The person's head mesh for a dataset with a mesh fit: the ICT-FaceKit head regions
    (`emogs.mesh.ict.HEAD_REGIONS`) with the fitted identity baked in. -> neutral (V,3) f32, basis (E,V,3) f16,
    triangles (T,3), expression_names (E,), region_names / region_triangles (R, 2). Read from
    DATASET/person_mesh.npz when present (a dataset packed for a machine without ICT-FaceKit)."""
    root = Path(root)
    if (root / PERSON_MESH).is_file():
        with np.load(root / PERSON_MESH, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
        if "basis" not in out:  # packed without it: the ICT expression basis is the same for every person
            from emogs.io.assets import packed_asset

            f = packed_asset(ICT_BASIS)
            if f is None:
                raise InputError(f"{root / PERSON_MESH}: holds no expression basis and EMOGS_ASSETS has no {ICT_BASIS}")
            with np.load(f, allow_pickle=False) as z:
                if [str(n) for n in z["expression_names"]] != [str(n) for n in out["expression_names"]]:
                    raise InputError(f"{f}: names other expression shapes than {root / PERSON_MESH}")
                out["basis"] = z["basis"]
        return out
    from emogs.mesh.ict import HEAD_REGIONS, load_ict

    with np.load(root / "mesh.npz", allow_pickle=False) as z:
        identity, names = z["identity"], [str(n) for n in z["expression_names"]]
    ict = load_ict().submesh(HEAD_REGIONS)
    if tuple(names) != tuple(ict.expression_names):
        raise InputError(f"{root}: the mesh fit names other expression shapes than this ICT-FaceKit model")
    reg = list(ict.regions.items())
    return dict(neutral=ict.vertices(identity).astype(np.float32), basis=ict.expression_basis.astype(np.float16),
                triangles=np.asarray(ict.triangles, np.int64), expression_names=np.array(names),
                region_names=np.array([n for n, _ in reg]), region_triangles=np.array([(r.t0, r.t1) for _, r in reg]))


def mesh_regions(pm: dict[str, np.ndarray]) -> dict[str, tuple[int, int]]:
    """`person_mesh` output -> region name -> (first triangle, end triangle)."""
    return {str(n): (int(a), int(b)) for n, (a, b) in zip(pm["region_names"], pm["region_triangles"])}


def init_mesh_model(cfg: TrainConfig, bank: FrameBank, ds) -> TalkingHead:
    """MeshHead: the person's head mesh (`person_mesh`), Gaussians bound to its triangles
    (emogs.model.mesh_head.init_mesh_gaussians)."""
    from emogs.model.mesh_head import MeshHead, init_mesh_gaussians

    if getattr(ds, "mesh", None) is None or bank.expression is None:
        raise InputError("the mesh model needs a dataset with a fitted face mesh (mesh.npz)")
    pm = person_mesh(ds.root)
    neutral, basis = pm["neutral"].astype(np.float32), pm["basis"].astype(np.float32)
    regions = mesh_regions(pm)
    expr = bank.expression.cpu().numpy()
    expr_mean = expr.mean(0)
    m = cfg.model
    iv = bank.spread_ids(cfg.num_init_views)
    vv = bank.spread_ids(cfg.num_vote_views)
    g = init_mesh_gaussians(neutral, basis, pm["triangles"], regions, expr_mean, _views(bank, cfg.num_init_views),
                            expr[iv], _views(bank, cfg.num_vote_views), expr[vv], m.num_face, m.num_shell,
                            m.num_mouth, cfg.seed, m.eyeball_init)
    model = MeshHead(m, g, torch.as_tensor(neutral), torch.as_tensor(basis), torch.as_tensor(pm["triangles"]),
                     torch.as_tensor(expr_mean))
    if cfg.densify.eyelid_margin > 0:  # lash-line samples on the eyeballs go to the lids (issue 13)
        from emogs.model.mesh_head import eyelid_rebind

        eyelid_rebind(model, regions, cfg.densify.eyelid_margin,
                      camera=eye_camera(bank) if cfg.model.eyeball_init == "front" else None)
    model.au_mean.copy_(bank.au_window[:, bank.au_window.shape[1] // 2].float().mean(0).cpu())
    return model


def eye_camera(bank: FrameBank, size: int = 512) -> tuple[np.ndarray, np.ndarray, int]:
    """(K, world_to_cam, size): the training camera nearest the median camera centre, K at `size` px (the
    eyelid re-binding's visibility test)."""
    w2c = bank.world_to_cam.cpu().double().numpy()
    cen = -np.einsum("fji,fj->fi", w2c[:, :3, :3], w2c[:, :3, 3])
    i = int(np.linalg.norm(cen - np.median(cen, 0), axis=1).argmin())
    K = bank.K[i].cpu().double().numpy().copy()
    K[:2] *= size / bank.size
    return K, w2c[i], size


def eyelid_step(model: TalkingHead, opt: torch.optim.Optimizer, cfg: TrainConfig, regions: dict | None,
                bank: FrameBank) -> int:
    """Mesh heads with `densify.eyelid_margin` > 0: re-bind eyeball-bound Gaussians at the lid margin to the
    lids (`emogs.model.mesh_head.eyelid_rebind`), their Adam moments reset (they were in the old triangle's
    frame). Returns how many moved (0 for other heads)."""
    from emogs.model.mesh_head import MeshHead, eyelid_rebind

    if cfg.densify.eyelid_margin <= 0 or not isinstance(model, MeshHead) or regions is None:
        return 0
    g = model.gaussians
    before = g.parent.clone()
    # with the front-cap init the eyeball the lids hide is sclera-coloured and stays (it shows when a lid rises);
    # with the whole-sphere init it holds the lid's colour, sampled through it, and goes to the lid as well
    cam = eye_camera(bank) if cfg.model.eyeball_init == "front" else None
    n = eyelid_rebind(model, regions, cfg.densify.eyelid_margin, camera=cam)
    if n:
        rows = (g.parent != before).nonzero()[:, 0]
        for name in ("means", "quats", "log_scales"):
            st = opt.state.get(getattr(g, name), {})
            for k in ("exp_avg", "exp_avg_sq"):
                if k in st:
                    st[k][rows] = 0
    return n


def add_auxiliary_loss(model: TalkingHead, batch: dict, loss: torch.Tensor, terms: dict) -> tuple[torch.Tensor, dict]:
    """The model's own loss terms (`model.auxiliary_loss(batch)`, e.g. the EmoTaG motion network's) added to
    the image losses; unchanged for models without one."""
    aux = getattr(model, "auxiliary_loss", None)
    if aux is None:
        return loss, terms
    extra, t = aux(batch)
    return loss + extra, {**terms, **t}


def _fill_data_sizes(cfg: TrainConfig, bank: FrameBank) -> TrainConfig:
    return cfgio.override(cfg, {"model.audio_dim": int(bank.audio.shape[-1]),
                                "model.audio_window": int(bank.audio.shape[1]) // 2,
                                "model.au_window": int(bank.au_window.shape[1]),
                                "model.num_aus": int(bank.au_window.shape[2])})


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean().clamp_min(1e-10)))


def _save_preview(path: Path, model: TalkingHead, bank: FrameBank, i: int, cfg: TrainConfig) -> None:
    with torch.no_grad():
        b = bank.batch(torch.tensor([i], device=bank.images.device))
        out = model(b["world_to_cam"], b["K"], b["audio"], b["au_window"], bank.size, bank.size,
                    bank.background[None], backend=cfg.backend, expression=b["expression"])
        row = torch.cat([out.rgb[0], b["image"][0], out.alpha[0].expand(-1, -1, 3)], 1)
        img = (row.clamp(0, 1) * 255).round().byte().cpu().numpy()
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def dataset_summary(ds, bank: FrameBank) -> dict[str, Any]:
    """RUN/dataset.json: what render/eval need to know of the training data."""
    man = getattr(ds, "manifest", None) or {}
    au = bank.au_window[:, bank.au_window.shape[1] // 2].cpu().numpy()  # (F, 17) centre frames
    out = dict(root=str(getattr(ds, "root", "")), manifest=man, size=int(man.get("size", bank.size)),
               train_resolution=bank.size, K=bank.K[0].cpu().tolist(), au_names=man.get("au_names"),
               au_mean=au.mean(0).tolist(), au_std=au.std(0).tolist(), au_min=au.min(0).tolist(),
               au_max=au.max(0).tolist(), num_train_frames=len(bank))
    mesh = getattr(ds, "mesh", None)
    if mesh is not None:  # mesh-rigged heads: the fit's shape names and the training expressions' range
        e = bank.expression.cpu().numpy()
        out.update(expression_names=[str(n) for n in mesh["expression_names"]], expression_mean=e.mean(0).tolist(),
                   expression_min=e.min(0).tolist(), expression_max=e.max(0).tolist(),
                   mesh_fit_error_px=float(np.median(mesh["error_px"])) if "error_px" in mesh else None)
    return out


def _check_run_folder(run: RunFolder, manifest: dict | None, root, resume: bool) -> str:
    """What to do with the output folder: "new", "resume" or "complete" (InputError when it holds
    something else: another run's data, or files that are not a run)."""
    if not run.path.exists():
        return "new"
    if not run.path.is_dir():
        raise InputError(f"{run.path}: exists and is not a folder; choose another -o")
    if not run.exists():
        if any(run.path.iterdir()):
            raise InputError(f"{run.path}: folder holds other files (not an emogs run); choose a new or empty -o")
        return "new"
    if not resume:
        raise InputError(f"{run.path}: already holds a run (drop --no-resume to continue it, or choose a new -o)")
    if manifest is not None:
        run.check_dataset(manifest, root)
    if run.is_complete():
        return "complete"
    return "resume" if run.has_checkpoint() else "new"


def pose_start(cfg: TrainConfig) -> int:
    """First iteration of pose refinement: `pose_refine.start`, or (-1) the first densification."""
    return cfg.pose_refine.start if cfg.pose_refine.start >= 0 else cfg.densify.start


def refined_cameras(refiner: FrameRefiner | None, cfg: TrainConfig, world_to_cam: torch.Tensor, ids: torch.Tensor,
                    it: int) -> torch.Tensor:
    """The batch's cameras: tracked, or refined by the per-frame pose deltas once pose refinement has started."""
    if refiner is None or refiner.pose_rot is None or it < pose_start(cfg):
        return world_to_cam
    return refiner.cameras(world_to_cam, ids)


def recolored(refiner: FrameRefiner | None, cfg: TrainConfig, out, background: torch.Tensor, ids: torch.Tensor, it: int,
              detach: bool = False):
    """The model's output with the frames' appearance codes applied (unchanged when off or not started);
    `detach`: the codes and their decoder get no gradient from this step (the expert losses' steps with
    `loss.expert_appearance` false, where the model's colours are detached too)."""
    if refiner is None or refiner.code is None or it < cfg.appearance.start:
        return out
    import dataclasses

    rgb, head = refiner.recolor(out.head_rgb, out.alpha, background, ids, detach=detach)
    return dataclasses.replace(out, rgb=rgb, head_rgb=head)


def refine_terms(refiner: FrameRefiner | None, cfg: TrainConfig, ids: torch.Tensor, it: int) -> dict:
    """The refinements' L2 terms {name: (weight, value)} for `compute_losses` (none before their start)."""
    if refiner is None:
        return {}
    reg = refiner.reg_terms(ids)
    w = {"pose_rot": cfg.pose_refine.reg_rotation if it >= pose_start(cfg) else None,
         "pose_trans": cfg.pose_refine.reg_translation if it >= pose_start(cfg) else None,
         "appearance": cfg.appearance.reg if it >= cfg.appearance.start else None}
    return {f"reg_{k}": (w[k], v) for k, v in reg.items() if w[k] is not None}


def train(dataset: str | Path | tuple, run_dir: str | Path, cfg: TrainConfig, resume: bool = True,
          max_steps: int | None = None, log: Callable[[str], None] = print,
          init: Callable[..., TalkingHead] | None = None) -> dict[str, Any]:
    """Train (or resume) a run. `dataset`: a prepared DATASET folder, or (train_ds, test_ds) objects with
    the TalkingHeadDataset item dict. `max_steps` stops this call after that many iterations (checkpoint
    written), as an interruption would. `init(cfg, bank, train_ds)` builds the model of a new run (default
    `init_model`; `emogs adapt` starts from a pretrained base). A finished run is left as it is. Returns a summary dict (final
    iteration, metrics if finished)."""
    run = RunFolder(run_dir)
    manifest = None
    if not isinstance(dataset, tuple):
        from emogs.data.dataset import load_manifest

        manifest = load_manifest(dataset)
    what = _check_run_folder(run, manifest, dataset if manifest is not None else None, resume)
    if what == "complete":
        m = run.metrics() or {}
        log(f"[train] {run.path} is complete ({run.info().get('iterations', '?')} iterations); nothing to do "
            "(choose a new -o folder to train again)")
        return dict(iteration=run.info().get("iterations"), finished=True, already_complete=True, metrics=m)
    resuming = what == "resume"
    if resuming:  # the run's own config wins (the schedule must not change mid-run)
        cfg = config_from_run(run.config_dict())
    elif cfg.model.kind == "auto":
        has_mesh = manifest is not None and (Path(dataset) / "mesh.npz").is_file()
        cfg = cfgio.override(cfg, {"model.kind": "mesh" if has_mesh else "free"})
        log(f"[train] model: {cfg.model.kind} ({'the dataset has a face-mesh fit' if has_mesh else 'no face-mesh fit in the dataset (prepare it with ICT-FaceKit available for the mesh head)'})")
    validate(cfg)
    device = resolve_device(cfg.device)
    train_ds, test_ds = dataset if isinstance(dataset, tuple) else open_datasets(dataset, cfg)
    t0 = time.time()
    bank = FrameBank.from_dataset(train_ds, cfg.resolution, device, cfg.neck_keep)
    # the test frames keep the dataset's labels: evaluation's regions never depend on the training config
    test_bank = FrameBank.from_dataset(test_ds, cfg.resolution, device) if len(test_ds) else None
    if cfg.model.kind == "emotag":  # the emotion latent's FER2013 conditioning (cached beside the dataset)
        from emogs.train.fewshot import attach_fer

        attach_fer(bank, train_ds, cfg, log)
    plate = getattr(train_ds, "root", None) and Path(train_ds.root) / "background.png"
    plate = plate if plate and plate.is_file() else bank.background.cpu().numpy()
    if bank.neck_freed is not None:  # neck_keep: the run's own plate, with the neck the head no longer paints
        plate = _neck_plate(bank, test_bank, plate, log)
    log(f"[train] {len(bank)} train / {len(test_ds)} test frames at {cfg.resolution} px on {device} "
        f"({time.time() - t0:.1f}s to load)")
    gen = torch.Generator().manual_seed(cfg.seed)
    if resuming:
        cfg_d, _, model, tens, state = run.load_checkpoint(device)
        cfg = config_from_run(cfg_d)
        extent = float(state["extent"])
        refiner = FrameRefiner.from_config(cfg, len(bank), torch.zeros(3))
        if refiner is not None:
            refiner.load_state_tensors(tens)
            refiner.to(device)
        opt = build_optimizer(model, cfg, extent, refiner)
        restore_optimizer(opt, tens)
        gen.set_state(tens["rng.torch"].to(torch.uint8))
        stats = DensifyStats(tens["densify.grad_accum"].to(device), tens["densify.count"].to(device),
                             tens["densify.px_per_unit"].to(device) if "densify.px_per_unit" in tens
                             else torch.zeros_like(tens["densify.count"]).to(device))  # older checkpoints
        start = int(state["iteration"])
        log(f"[train] resuming {run.path} from iteration {start}")
    else:
        torch.manual_seed(cfg.seed)
        cfg = _fill_data_sizes(cfg, bank)
        model = (init or init_model)(cfg, bank, train_ds).to(device)
        extent = model.gaussians.extent()
        with torch.no_grad():  # the pose deltas turn the head about its centre
            refiner = FrameRefiner.from_config(cfg, len(bank), model.canonical_positions().mean(0).cpu())
        if refiner is not None:
            refiner.to(device)
        opt = build_optimizer(model, cfg, extent, refiner)
        stats = DensifyStats.zeros(len(model.gaussians), device)
        start = 0
        run.create(cfg, dataset_summary(train_ds, bank), _train_cameras(bank), plate, model_kind=cfg.model.kind)
        log(f"[train] {len(model.gaussians)} Gaussians initialised, extent {extent:.1f} cm, variant "
            f"{cfg.model.variant}")
    dcfg = cfg.densify
    experts = setup_expert_losses(cfg, train_ds, bank, device, log)  # None unless loss.sync / loss.au > 0
    expert_means = TermMeans()

    def checkpoint(it: int) -> None:
        extra = {"rng.torch": gen.get_state(), "densify.grad_accum": stats.grad_accum,
                 "densify.count": stats.count, "densify.px_per_unit": stats.px_per_unit,
                 **(refiner.state_tensors() if refiner is not None else {})}
        run.save_checkpoint(cfg, model.state_dict(), {**optimizer_tensors(opt), **extra},
                            dict(iteration=it, stage=stage_of(it), extent=extent, num_gaussians=len(model.gaussians)))

    def stage_of(it: int) -> str:
        return "coarse" if it < cfg.fine_start else "fine"

    t_train = time.time()

    def fit_time_budget(it: int) -> None:
        """At `calib_iters`, shrink the run so the remaining iterations fit `time_budget_s` (it/s drops as
        densification adds Gaussians, hence the 0.6 safety factor). Only milestones still ahead move."""
        nonlocal cfg, dcfg, stop
        spent = time.time() - t_train
        left = cfg.time_budget_s - spent
        fit = it + int(0.6 * left * (it - start) / max(spent, 1e-6) / cost_factor(cfg))
        if fit < cfg.iters:
            cfg = cfg.scaled(max(fit, it + 1))
            dcfg, stop = cfg.densify, min(stop, cfg.iters)
            log(f"[train] time budget {cfg.time_budget_s:.0f}s: {spent / (it - start):.3f}s/it -> {cfg.iters} iterations")

    from emogs.model.mesh_head import MeshHead

    # mesh heads' lid re-binding after each densification needs the mesh's regions: read once, here
    eyelid_regions = (mesh_regions(person_mesh(Path(train_ds.root))) if cfg.densify.eyelid_margin > 0
                      and start < cfg.densify.stop and isinstance(model, MeshHead)
                      and getattr(train_ds, "root", None) is not None else None)
    logf = open(run.log_path, "a")
    model.train()
    it = start
    t_last, it_last = time.time(), start
    stop = cfg.iters if max_steps is None else min(cfg.iters, start + max_steps)
    try:
        while it < stop:
            stage = stage_of(it)
            set_learning_rates(opt, it, cfg.iters)
            window = experts is not None and is_sync_step(cfg, it)  # a sync step: 5 consecutive frames
            ids = (sync_batch_ids(experts, cfg.loss.sync_windows, gen) if window else
                   torch.randint(len(bank), (cfg.batch_size,), generator=gen)).to(device)
            b = bank.batch(ids, cfg.neck_soft_px * cfg.resolution / 512)
            w2c = refined_cameras(refiner, cfg, b["world_to_cam"], ids, it)
            frozen = experts is not None and detach_appearance(cfg, it, window)
            out = model(w2c, b["K"], b["audio"], b["au_window"], bank.size, bank.size,
                        b["background"], backend=cfg.backend, expression=b["expression"],
                        detach_appearance=frozen)
            out.means.retain_grad()
            out = recolored(refiner, cfg, out, b["background"], ids, it, detach=frozen)
            ctx = LossContext(out.rgb, b["image"], b, out, model, stage)
            loss, terms = compute_losses(ctx, cfg.loss, {**expert_terms(experts, cfg, out.rgb, ids, it, window),
                                                         **refine_terms(refiner, cfg, ids, it)})
            expert_means.add({k: terms[k] for k in ("sync", "au") if k in terms})
            loss, terms = add_auxiliary_loss(model, b, loss, terms)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if dcfg.start <= it < dcfg.stop and out.means.grad is not None:
                stats.add(out.means.grad, w2c.detach(), out.means.detach(), b["K"], bank.size)
            opt.step()
            it += 1
            if cfg.time_budget_s > 0 and it == start + cfg.calib_iters:
                fit_time_budget(it)
            if dcfg.start < it <= dcfg.stop and it % dcfg.every == 0:
                info = densify_and_prune(model.gaussians, opt, stats, dcfg, extent, gen)
                rb = eyelid_step(model, opt, cfg, eyelid_regions, bank)
                log(f"[train] it {it} densify: +{info['clone']} clone, {info['split']} split, "
                    f"-{info['prune']} pruned -> {info['total']}" + (f", {rb} re-bound to the eyelids" if rb else ""))
            if it % cfg.log_every == 0 or it == stop:
                now = time.time()
                ips = (it - it_last) / max(now - t_last, 1e-9)
                t_last, it_last = now, it
                p = _psnr(out.rgb.detach(), b["image"])
                rec = {**dict(iteration=it, stage=stage, loss=float(loss.detach()), psnr=p, it_s=ips,
                              num_gaussians=len(model.gaussians)), **terms, **expert_means.pop()}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                ex = "".join(f" | {k} {rec[k]:.4f}" for k in ("sync", "au") if k in rec)
                log(f"[train] it {it}/{cfg.iters} {stage} | loss {float(loss.detach()):.4f} | psnr {p:.2f}{ex} | "
                    f"{ips:.2f} it/s | {len(model.gaussians)} G")
            if it % cfg.preview_every == 0 or it == cfg.iters:
                _save_preview(run.preview_path(it), model, test_bank if test_bank is not None else bank, 0, cfg)
            if it % cfg.checkpoint_every == 0 and it < stop:
                checkpoint(it)
    except KeyboardInterrupt:
        checkpoint(it)
        log(f"[train] interrupted: checkpoint at iteration {it}; run again to resume")
        raise
    finally:
        logf.close()
    checkpoint(it)
    summary: dict[str, Any] = dict(iteration=it, num_gaussians=len(model.gaussians), finished=it >= cfg.iters)
    if it < cfg.iters:
        return summary
    model.eval()
    run.write_model(model)
    if refiner is not None:  # training-only: test frames and new audio render without it
        run.write_refinements(refiner.state_tensors(), bank.world_to_cam.cpu(),
                              refiner.refined_cameras(bank.world_to_cam).cpu() if refiner.pose_rot is not None else None)
        summary["refine"] = refiner.summary()
        log(f"[train] per-frame refinements: {json.dumps({k: round(v, 4) for k, v in summary['refine'].items()})}")
    _save_ply(run, model)
    sp = fit_speech_aus(train_ds, cfg.model.audio_window)
    if sp is not None:  # speech-driven lower-face AUs for rendering new audio
        run.write_speech_aus(sp)
        log(f"[train] speech AUs: {', '.join(sp.info['driven']) or 'none'} follow the audio "
            f"(out-of-fold r {sp.info['oof_r']})")
    from emogs.train.speech import speech_motion_stage

    sm = speech_motion_stage(run, train_ds, cfg, log)  # mesh heads: the mouth's motion from any speech
    if sm is not None:
        summary["speech_motion"] = sm
    if test_bank is not None:
        audio = _test_audio(test_ds, test_bank)
        summary["metrics"] = evaluate_test(model, test_bank, run, cfg, audio, log)
    run.mark_complete(iterations=it, num_gaussians=len(model.gaussians))
    log(f"[train] done: {run.path}")
    return summary


def fit_speech_aus(ds, half: int):
    """SpeechAUs fitted on a dataset's training split (its audio feature rows and tracked AUs); None for
    in-memory datasets without them."""
    from emogs.data.windows import feature_windows
    from emogs.model.speech_aus import fit_arrays, window_features

    if not all(hasattr(ds, k) for k in ("audio", "rows_per_frame", "tracks", "indices")):
        return None
    wins = feature_windows(ds.audio, ds.rows_per_frame, ds.indices, half)
    sp = fit_arrays(window_features(wins), np.asarray(ds.tracks["aus"])[ds.indices])
    sp.info.update(audio_feature=ds.audio_feature, audio_window=half)
    return sp


def _neck_plate(bank: FrameBank, test_bank: FrameBank | None, plate: Path | np.ndarray, log) -> np.ndarray:
    """`neck_keep`: the run's plate (RGB u8 at the dataset plate's size) with the freed neck filled from the training
    frames (`emogs.train.data.neck_plate`); both banks composite over it, so the training, the test metrics and
    every later render see the same plate."""
    import cv2

    from emogs.train.data import neck_plate

    if isinstance(plate, Path):
        plate = cv2.cvtColor(cv2.imread(str(plate), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    else:
        plate = np.clip(np.rint(np.asarray(plate) * 255), 0, 255).astype(np.uint8)
    out = neck_plate(bank, plate)
    small = cv2.resize(out, (bank.size, bank.size), interpolation=cv2.INTER_AREA) if out.shape[0] != bank.size else out
    bg = torch.as_tensor(small, dtype=torch.float32, device=bank.background.device) / 255.0
    bank.background = bg
    if test_bank is not None:
        test_bank.background = bg
    log(f"[train] neck_keep {bank.neck_freed.mean():.1%} of the frame freed from the head; the run's plate fills "
        "it from the training frames")
    return out


def _train_cameras(bank: FrameBank) -> dict[str, np.ndarray]:
    """Training world_to_cam (F,4,4) and centre-frame AUs (F,17), so `emogs render --pose training` can
    replay the training head motion without the dataset."""
    au = bank.au_window[:, bank.au_window.shape[1] // 2]
    out = dict(world_to_cam=bank.world_to_cam.cpu().numpy().astype(np.float32),
               aus=au.cpu().numpy().astype(np.float32), index=bank.index.cpu().numpy())
    if bank.expression is not None:  # mesh-rigged heads: the fitted expressions of the training frames
        out["expression"] = bank.expression.cpu().numpy().astype(np.float32)
    return out


def _save_ply(run: RunFolder, model: TalkingHead) -> None:
    """Canonical Gaussians as a standard 3DGS PLY."""
    from emogs.render.sh import rgb_to_sh0

    with torch.no_grad():
        d = {k: v.detach().cpu() for k, v in model.canonical_gaussians().items()}
    run.write_ply(d["means"], d["quats"], d["scales"], d["opacities"], rgb_to_sh0(d["colors"])[:, None, :])


def _test_audio(ds, bank: FrameBank) -> np.ndarray | None:
    """16 kHz audio of the test frames (frame i <-> samples [640 i, 640 (i+1))), if the dataset has it."""
    root = getattr(ds, "root", None)
    if root is None or not (Path(root) / "audio.wav").is_file():
        return None
    from emogs.io.media import load_audio

    wav = load_audio(Path(root) / "audio.wav")
    a, b = int(bank.index[0]), int(bank.index[-1]) + 1
    return wav[640 * a: 640 * b]
