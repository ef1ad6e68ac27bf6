"""The expert losses in training (emogs.train.experts): L_sync / L_AU settings per preset and variant, old
runs reading them as 0, the sync step's 5 consecutive frames, gradients from both terms reaching the
Gaussians and the deformation network (never the experts), weight 0 meaning nothing is loaded, and a
mesh head trained a few steps with both on a real slice."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emogs import config as cfgio
from emogs.model.config import VARIANTS
from emogs.run.migrate import migrate_config
from emogs.train import experts as tex
from emogs.train.config import PAPER_LOSSES, TrainConfig, build_config, config_from_run
from emogs.train.data import FrameBank
from emogs.train.loop import init_model, train
from test_train_loop import tiny_config
from test_train_synth import synth_splits

ON = {"loss.sync": 0.1, "loss.au": 0.05}


def test_presets_variants_overrides_and_old_runs():
    for v in VARIANTS:
        g = build_config("cuda", variant=v)
        assert (g.loss.sync, g.loss.au) == (0.0, 0.0), v  # off by default (measured: docs/training.md, session 5)
        assert build_config("cpu", variant=v).loss.sync == 0.0
    p = build_config("cuda", variant="full", overrides=PAPER_LOSSES)  # the paper's objective, on request
    assert (p.loss.sync, p.loss.au) == (0.1, 0.05)
    c = build_config("cpu", overrides={**ON, "loss.sync_every": 2})
    assert (c.loss.sync, c.loss.au, c.loss.sync_every) == (0.1, 0.05, 2)
    assert build_config("cpu", variant="au", overrides=ON).loss.sync == 0.1  # explicit settings win
    with pytest.raises(ValueError):
        build_config("cpu", overrides={"loss.sync_every": 0})
    with pytest.raises(ValueError):
        build_config("cpu", overrides={"loss.sync_mode": "l2"})
    s = build_config("cuda", overrides={"loss.sync_start": 5000}).scaled(1000)  # milestones move with iters
    assert s.loss.sync_start == 500 and s.loss.au_start == -1 and s.fine_start == 600
    old = cfgio.to_dict(TrainConfig())
    for k in ("sync", "au", "sync_every", "expert_appearance"):
        del old["loss"][k]
    m = config_from_run(migrate_config(old, 2))
    assert (m.loss.sync, m.loss.au) == (0.0, 0.0) and m.loss.sync_every == TrainConfig().loss.sync_every
    assert m.loss.expert_appearance is True and TrainConfig().loss.expert_appearance is False  # as they trained


def test_sync_schedule_and_cost_factor():
    cfg = tiny_config(iters=20, **ON, **{"loss.sync_every": 3})  # fine_start 10
    steps = [it for it in range(20) if tex.is_sync_step(cfg, it)]
    assert steps == [10, 13, 16, 19]
    assert not any(tex.is_sync_step(cfgio.override(cfg, **{"loss.sync": 0.0}), it) for it in range(20))
    assert tex.cost_factor(cfg) == pytest.approx(1 + 0.5 * 4 / 3)
    assert tex.cost_factor(cfgio.override(cfg, **{"loss.sync": 0.0})) == 1.0


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = tiny_config(iters=4, **ON)
    tr, _ = synth_splits(14, 2, 48)
    bank = FrameBank.from_dataset(tr, cfg.resolution)
    cfg = cfgio.override(cfg, {"model.audio_dim": int(bank.audio.shape[-1]),
                               "model.audio_window": int(bank.audio.shape[1]) // 2})
    model = init_model(cfg, bank, tr)
    return cfg, tr, bank, model, tex.setup_expert_losses(cfg, tr, bank, "cpu", log=lambda _: None)


def test_sync_windows_are_consecutive_frames_and_crops_follow_the_landmarks(tiny):
    cfg, tr, bank, _, sup = tiny
    assert sup.centres.min() == 2 and sup.centres.max() == len(bank) - 3
    ids = tex.sync_batch_ids(sup, 3, torch.Generator().manual_seed(1)).numpy().reshape(3, 5)
    assert (np.diff(bank.index.numpy()[ids], axis=1) == 1).all()
    # the mouth crop's centre lands between the tracked mouth corners (landmarks 61, 291) at bank scale
    a = sup.mouth_affines[0].numpy()
    r = sup.sync_expert.cfg.region
    centre = a @ np.array([r.width / 2, r.height / 2, 1.0])
    corners = tr.landmarks(0)[[61, 291], :2] * bank.size / tr.size
    assert np.linalg.norm(centre[:2] - corners.mean(0)) < 0.1 * np.linalg.norm(corners[1] - corners[0]) + 1.0


@pytest.mark.parametrize("term", ["sync", "au"])
def test_expert_term_gradients_reach_the_head_not_the_expert(tiny, term):
    cfg, _, bank, model, sup = tiny
    ids = tex.sync_batch_ids(sup, 1, torch.Generator().manual_seed(0))
    b = bank.batch(ids)
    model.zero_grad(set_to_none=True)
    out = model(b["world_to_cam"], b["K"], b["audio"], b["au_window"], bank.size, bank.size, b["background"],
                backend="torch")
    terms = tex.expert_terms(sup, cfg, out.rgb, ids, cfg.fine_start, window=True)
    assert set(terms) == {"sync", "au"} and terms["sync"][0] == 0.1 and terms["au"][0] == 0.05
    w, v = terms[term]
    assert torch.isfinite(v) and v > 0
    v.backward()
    g = model.gaussians
    assert g.color_logit.grad is not None and g.color_logit.grad.abs().sum() > 0
    assert g.means.grad is not None and g.means.grad.abs().sum() > 0
    net = [p.grad.abs().sum() for p in model.network_parameters() if p.grad is not None]
    assert net and sum(net) > 0  # the deformation network (audio / AU branches) gets gradient too
    for e in (sup.sync_expert, sup.aunet):
        assert not e.training and all(p.grad is None and not p.requires_grad for p in e.parameters())


def test_au_term_waits_for_its_start_and_sync_needs_a_window(tiny):
    cfg, _, bank, model, sup = tiny
    ids = torch.tensor([0])
    with torch.no_grad():
        b = bank.batch(ids)
        out = model(b["world_to_cam"], b["K"], b["audio"], b["au_window"], bank.size, bank.size, b["background"],
                    backend="torch")
        assert tex.expert_terms(sup, cfg, out.rgb, ids, cfg.fine_start - 1, window=False) == {}
        # by default L_AU rides the sync steps, whose appearance is detached
        assert tex.expert_terms(sup, cfg, out.rgb, ids, cfg.fine_start, window=False) == {}
        assert tex.is_au_step(cfg, cfg.fine_start, window=True)
        old = cfgio.override(cfg, **{"loss.expert_appearance": True})  # the first GPU runs: every step
        assert set(tex.expert_terms(sup, old, out.rgb, ids, cfg.fine_start, window=False)) == {"au"}


def test_expert_steps_detach_appearance_unless_asked():
    cfg = tiny_config(iters=20, **ON, **{"loss.sync_every": 3})  # fine_start 10: sync steps 10, 13, 16, 19
    det = [it for it in range(20) if tex.detach_appearance(cfg, it, tex.is_sync_step(cfg, it))]
    assert det == [10, 13, 16, 19]
    au_only = cfgio.override(cfg, **{"loss.sync": 0.0})  # L_AU alone: its own every-3rd-step schedule
    steps = [it for it in range(20) if tex.is_au_step(au_only, it, False)]
    assert steps == [10, 13, 16, 19] and all(tex.detach_appearance(au_only, it, False) for it in steps)
    both = cfgio.override(cfg, **{"loss.expert_appearance": True})
    assert not any(tex.detach_appearance(both, it, tex.is_sync_step(both, it)) for it in range(20))
    assert [it for it in range(20) if tex.is_au_step(both, it, False)] == list(range(10, 20))
    none = cfgio.override(cfg, **{"loss.sync": 0.0, "loss.au": 0.0})
    assert not any(tex.detach_appearance(none, it, False) for it in range(20))


def test_a_render_with_detached_appearance_moves_geometry_only(tiny):
    cfg, _, bank, model, sup = tiny
    b = bank.batch(torch.tensor([0, 1]))
    grads = {}
    for det in (False, True):
        model.zero_grad(set_to_none=True)
        out = model(b["world_to_cam"], b["K"], b["audio"], b["au_window"], bank.size, bank.size, b["background"],
                    backend="torch", detach_appearance=det)
        (out.rgb - b["image"]).abs().mean().backward()
        g = model.gaussians
        grads[det] = [None if t.grad is None else float(t.grad.abs().sum()) for t in (g.color_logit, g.opacity_logit, g.means)]
        if not det:
            ref = out.rgb.detach()
        else:
            assert torch.allclose(out.rgb.detach(), ref)  # the same image, only the gradient differs
    assert all(v and v > 0 for v in grads[False])
    assert grads[True][0] in (None, 0.0) and grads[True][1] in (None, 0.0) and grads[True][2] > 0


def test_training_with_both_logs_them_and_with_weight_0_loads_nothing(tmp_path, monkeypatch):
    cfg = tiny_config(iters=8, **ON, **{"loss.sync_every": 2, "log_every": 2})
    s = train(synth_splits(12, 2, 48), tmp_path / "on", cfg, log=lambda _: None)
    assert s["finished"]
    recs = [json.loads(x) for x in (tmp_path / "on" / "train_log.jsonl").read_text().splitlines()]
    fine = [r for r in recs if r["iteration"] > cfg.fine_start]
    assert fine and all(np.isfinite(r["sync"]) and np.isfinite(r["au"]) for r in fine)
    assert not any("sync" in r or "au" in r for r in recs if r["iteration"] <= cfg.fine_start)
    saved = json.loads((tmp_path / "on" / "config.json").read_text())
    assert saved["loss"]["sync"] == 0.1 and saved["loss"]["au"] == 0.05
    assert not any("expert" in p.name for p in (tmp_path / "on").rglob("*"))  # the experts are not stored

    def boom(*a, **k):
        raise AssertionError("an expert was loaded with its weight at 0")

    import emogs.experts.aunet as au
    import emogs.experts.sync as sy

    monkeypatch.setattr(sy, "load_sync_expert", boom)
    monkeypatch.setattr(au, "load_aunet", boom)
    off = tiny_config(iters=4, **{"loss.sync": 0.0, "loss.au": 0.0, "log_every": 1})
    train(synth_splits(12, 2, 48), tmp_path / "off", off, log=lambda _: None)
    recs = [json.loads(x) for x in (tmp_path / "off" / "train_log.jsonl").read_text().splitlines()]
    assert recs and not any("sync" in r or "au" in r for r in recs)


def test_mesh_head_trains_with_both_on_a_real_slice(may_dataset, tmp_path):
    """may (4 s, prepared without Whisper features: the expert's rows are computed from audio.wav)."""
    if not (may_dataset / "mesh.npz").is_file():
        pytest.skip("the test dataset has no mesh fit (ICT-FaceKit not found)")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        over = {"resolution": 64, "log_every": 2, "model": {"num_face": 1500, "num_shell": 500, "num_mouth": 200,
                "kind": "mesh"}, "num_vote_views": 4, "eval_lpips": False, "fine_start": 2,
                **ON, "loss.sync_every": 2}
        cfg = build_config("cpu", None, None, {**over, "iters": 6})
        lines: list[str] = []
        s = train(may_dataset, tmp_path / "run", cfg, log=lines.append)
    finally:
        torch.set_num_threads(old)
    assert s["finished"] and any("computing the expert's whisper features" in x for x in lines)
    recs = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert any("sync" in r for r in recs) and all(np.isfinite(r["loss"]) for r in recs)
