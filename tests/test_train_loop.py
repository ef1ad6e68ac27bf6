"""Training loop tests on the synthetic in-memory dataset: config round-trip, densification bookkeeping,
every ablation variant training a step, and resume after an interruption matching an uninterrupted run."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from emogs import config as cfgio
from emogs.model.config import VARIANTS
from emogs.model.gaussians import GaussianSet
from emogs.run import RunFolder
from emogs.train.config import DensifyConfig, TrainConfig, build_config, cpu_config
from emogs.train.densify import DensifyStats, densify_and_prune
from emogs.train.loop import train
from test_train_synth import synth_splits


def tiny_config(iters: int = 12, **kw) -> TrainConfig:
    cfg = cpu_config()
    cfg = cfgio.override(cfg, **{"model.num_face": 400, "model.num_shell": 200, "model.num_mouth": 60,
                                 "model.token_dim": 16, "model.hidden": 32, "model.triplane_res": 8,
                                 "resolution": 48, "num_vote_views": 4, "num_init_views": 2, "log_every": 4,
                                 "eval_lpips": False, "checkpoint_every": 1000, "preview_every": 1000,
                                 "iters": iters, "fine_start": iters // 2,
                                 "densify.start": 3, "densify.stop": 9, "densify.every": 3, "densify.max_grow": 0.2})
    return cfgio.override(cfg, **kw) if kw else cfg


def test_config_round_trip_and_overrides(tmp_path):
    cfg = build_config("cpu", iters=300, variant="au_citae", overrides={"resolution": 96, "model": {"heads": 4},
                                                                         "loss.raar": 0.02})
    assert cfg.model.variant == "au_citae" and cfg.model.heads == 4 and cfg.loss.raar == 0.02
    assert cfg.resolution == 96 and cfg.iters == 300
    base = cpu_config()
    assert cfg.fine_start == round(base.fine_start * 300 / base.iters)  # schedule rescaled with iters
    assert cfg.densify.stop == round(base.densify.stop * 300 / base.iters)
    cfgio.save(cfg, tmp_path / "config.json")
    assert cfgio.load(TrainConfig, tmp_path / "config.json") == cfg
    with pytest.raises(ValueError):
        build_config("cpu", overrides={"model": {"no_such_key": 1}})
    with pytest.raises(ValueError):
        build_config("cpu", variant="bogus")


def test_densify_clones_splits_prunes_and_keeps_adam_in_step():
    torch.manual_seed(0)
    n = 10
    g = GaussianSet.from_arrays(torch.randn(n, 3).numpy(), torch.rand(n, 3).numpy(),
                                torch.tensor([0.01] * 5 + [1.0] * 5).numpy(), torch.arange(n).remainder(5).numpy())
    with torch.no_grad():
        g.opacity_logit[9] = -10.0  # transparent -> pruned
    opt = torch.optim.Adam([dict(params=[getattr(g, k)], name=k) for k in GaussianSet.PARAMS])
    (g.means.sum() + g.quats.sum() + g.log_scales.sum() + g.opacity_logit.sum() + g.color_logit.sum()).backward()
    opt.step()
    stats = DensifyStats.zeros(n, "cpu")
    stats.grad_accum[[0, 1, 5, 6]] = 1.0  # 0, 1 small -> clone; 5, 6 large -> split
    stats.count[:] = 1
    info = densify_and_prune(g, opt, stats, DensifyConfig(grad_threshold=0.5, percent_dense=0.1, max_grow=1.0, max_scale=10.0),
                             extent=1.0, gen=torch.Generator().manual_seed(0))
    assert (info["clone"], info["split"], info["prune"]) == (2, 2, 1)
    assert len(g) == 10 + 2 + 2 - 1 == info["total"]
    assert g.zone.shape == (len(g),)
    for grp in opt.param_groups:
        p = grp["params"][0]
        assert p.shape[0] == len(g) and opt.state[p]["exp_avg"].shape == p.shape
        assert any(p is getattr(g, k) for k in GaussianSet.PARAMS)
    (g.means.sum() + g.opacity_logit.sum()).backward()  # autograd works on the new tensors
    opt.step()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_trains_a_step(tmp_path, variant):
    cfg = tiny_config(iters=2, **{"model.variant": variant})
    s = train(synth_splits(6, 2, 48), tmp_path / "run", cfg, log=lambda _: None)
    assert s["finished"] and s["metrics"]["full"]["psnr"] > 5
    c, m = RunFolder(tmp_path / "run").load_model()
    assert c.variant == variant and hasattr(m, "au_enc") == VARIANTS[variant]["use_au"]


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)  # bit-exact comparison across the two runs
    try:
        cfg = tiny_config(iters=12)
        data = synth_splits(8, 2, 48)
        a = train(data, tmp_path / "a", cfg, log=lambda _: None)
        b1 = train(data, tmp_path / "b", cfg, max_steps=7, log=lambda _: None)  # "killed" after iteration 7
        assert not b1["finished"] and b1["iteration"] == 7
        assert not (tmp_path / "b" / "model.safetensors").exists()
        lines = []
        b2 = train(data, tmp_path / "b", dataclasses.replace(cfg, iters=999), log=lines.append)
        assert any("resuming" in s and "iteration 7" in s for s in lines)
        assert b2["finished"] and b2["iteration"] == 12  # the run's saved config wins
    finally:
        torch.set_num_threads(2)
    sa, sb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a["num_gaussians"] == b2["num_gaussians"] and sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    # densification happened in both halves, so its statistics went through the checkpoint
    assert a["num_gaussians"] != 660


def _blobs(n, scale):
    g = GaussianSet.from_arrays(torch.randn(n, 3).numpy(), torch.rand(n, 3).numpy(),
                                torch.tensor(scale).numpy(), torch.arange(n).remainder(5).numpy())
    opt = torch.optim.Adam([dict(params=[getattr(g, k)], name=k) for k in GaussianSet.PARAMS])
    return g, opt


def test_screen_size_splits_large_gaussians_without_gradient():
    """`densify.max_screen_px`: a Gaussian wider than the limit on screen is split although its gradient is below the
    threshold; off (0) nothing happens; the screen size is world size x the mean px per unit of the views."""
    torch.manual_seed(0)
    scale = [0.002] * 4 + [0.05] * 2  # world units (free Gaussians: stored = world)
    base = dict(grad_threshold=0.5, percent_dense=0.01, max_grow=1.0, max_scale=10.0, max_gaussians=100)
    for limit, want in ((0.0, 0), (2.0, 2), (20.0, 0)):
        g, opt = _blobs(6, scale)
        stats = DensifyStats.zeros(6, "cpu")
        stats.count[:] = 2
        stats.px_per_unit[:] = 2 * 100.0  # 100 px per world unit in both views: radius 0.2 px / 5 px
        info = densify_and_prune(g, opt, stats, DensifyConfig(**base, max_screen_px=limit), extent=1.0,
                                 gen=torch.Generator().manual_seed(0))
        assert (info["split"], info["clone"]) == (want, 0), (limit, info)
    # stats.add accumulates focal / depth over the views that saw each Gaussian
    st = DensifyStats.zeros(2, "cpu")
    means = torch.tensor([[[0.0, 0.0, 10.0], [0.0, 0.0, 5.0]]])
    st.add(torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]), torch.eye(4)[None], means,
           torch.tensor([[[500.0, 0, 32], [0, 500.0, 32], [0, 0, 1]]]), 64)
    assert st.count.tolist() == [1.0, 0.0] and st.px_per_unit.tolist() == [50.0, 0.0]


def test_cap_prune_makes_room_at_the_cap():
    """`densify.cap_prune_opacity`: at the cap, faint Gaussians are pruned and their room goes to the candidates."""
    torch.manual_seed(0)
    base = dict(grad_threshold=0.5, percent_dense=10.0, max_grow=0.5, max_scale=10.0, max_gaussians=6)
    for cap_prune, want_clone in ((0.0, 0), (0.1, 2)):
        g, opt = _blobs(6, [0.01] * 6)
        with torch.no_grad():
            g.opacity_logit[[4, 5]] = -4.0  # opacity 0.018: above min_opacity, below 0.1
        stats = DensifyStats.zeros(6, "cpu")
        stats.grad_accum[[0, 1]] = 1.0
        stats.count[:] = 1
        info = densify_and_prune(g, opt, stats, DensifyConfig(**base, cap_prune_opacity=cap_prune), extent=1.0,
                                 gen=torch.Generator().manual_seed(0))
        assert info["clone"] == want_clone and info["total"] == 6 and len(g) <= 6, (cap_prune, info)
