"""EmoTaG few-shot end to end on a short real slice (the may_5s test dataset with its ICT-FaceKit fit, and a
second identity made from it by another identity vector): `emogs pretrain` (resume, two gloo processes with
identical weights), `emogs adapt` on the first second (an ordinary run: render, eval, eval-controls, export,
Avatar work on it unchanged)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emogs.cli import main

TINY = {"resolution": 48, "log_every": 1, "checkpoint_every": 2, "eval_lpips": False, "num_vote_views": 4,
        "num_init_views": 2,
        "model": {"num_face": 300, "num_shell": 100, "num_mouth": 40, "token_dim": 16, "hidden": 32,
                  "triplane_res": 16, "triplane_channels": 4, "citae_hidden": 8, "grmn_hidden": 32, "id_dim": 8}}


@pytest.fixture(scope="module")
def identities(may_dataset, tmp_path_factory):
    """Two mesh datasets: may, and may with another face shape (identity vector) fitted in."""
    if not (may_dataset / "mesh.npz").is_file():
        pytest.skip("the test dataset has no mesh fit (ICT-FaceKit not found)")
    root = tmp_path_factory.mktemp("ids")
    a, b = root / "person_a", root / "person_b"
    for d in (a, b):
        d.mkdir()
        for f in may_dataset.iterdir():
            if f.is_file() and f.name != "mesh.npz":
                (d / f.name).symlink_to(f)
    with np.load(may_dataset / "mesh.npz", allow_pickle=False) as z:
        m = {k: z[k] for k in z.files}
    np.savez(a / "mesh.npz", **m)
    m["identity"] = (m["identity"] + np.random.default_rng(0).normal(0, 1.0, m["identity"].shape)).astype(np.float32)
    np.savez(b / "mesh.npz", **m)
    return [a, b]


@pytest.fixture(scope="module")
def base(identities, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "base"
    assert main(["pretrain", *map(str, identities), "-o", str(out), "--steps", "4", "--device", "cpu",
                 "--config-json", json.dumps(TINY)]) == 0
    return out


def test_pretrain_writes_a_base_and_resumes(base, identities, tmp_path):
    from emogs.run.base import BaseFolder

    info = BaseFolder(base).info()
    assert info["status"] == "complete" and info["step"] == 4
    assert [i["name"] for i in info["identities"]] == ["person_a", "person_b"]
    _, state, _, _ = BaseFolder(base).load()
    assert state["id_code"].shape[0] == 2 and state["id_color"].shape[:2] == (2, state["gaussians.means"].shape[0])
    # a second identity's mesh: other vertices, same topology
    from emogs.train.loop import person_mesh
    pa, pb = person_mesh(identities[0]), person_mesh(identities[1])
    assert np.abs(pa["neutral"] - pb["neutral"]).max() > 0.1
    # the base holds the first identity's mesh (each step puts its person's mesh into the head: no aliasing)
    assert np.abs(state["mesh_neutral"].numpy() - pa["neutral"]).max() < 1e-5
    # resume: a base stopped after 2 of 4 steps continues to 4 from its checkpoint
    part = tmp_path / "part"
    from emogs.train.config import build_config
    from emogs.train.fewshot import pretrain

    cfg = build_config("cpu", 4, None, {**TINY, "model.kind": "emotag"})
    s1 = pretrain(identities, part, cfg, max_steps=2, log=lambda m: None)
    assert s1["step"] == 2 and not s1["complete"] and BaseFolder(part).info()["status"] == "pretraining"
    s2 = pretrain(identities, part, cfg, log=lambda m: None)
    assert s2["step"] == 4 and s2["complete"]
    steps = [json.loads(line)["step"] for line in (part / "pretrain_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # no step done twice, none skipped
    # other identities for the same base folder: refused
    assert main(["pretrain", str(identities[1]), "-o", str(part), "--steps", "4", "--device", "cpu",
                 "--config-json", json.dumps(TINY)]) == 2


def test_two_gloo_processes_hold_identical_weights(identities, tmp_path):
    over = {**TINY, "model.kind": "emotag", "iters": 3}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "EMOGS_DIST_BACKEND": "gloo", "CUDA_VISIBLE_DEVICES": ""}
    script = Path(__file__).with_name("_fewshot_ddp.py")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        "29517", str(script), str(tmp_path / "base"), str(tmp_path), json.dumps(over),
                        *map(str, identities)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    s0, s1 = (json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1))
    assert s0["world"] == s1["world"] == 2 and s0["step"] == s1["step"] == 3
    assert s0["weights_sha256"] == s1["weights_sha256"]
    from emogs.run.base import BaseFolder

    assert BaseFolder(tmp_path / "base").info()["world_size"] == 2


@pytest.fixture(scope="module")
def adapted(base, identities, tmp_path_factory):
    run = tmp_path_factory.mktemp("adapt") / "run"
    assert main(["adapt", str(base), str(identities[1]), "-o", str(run), "--seconds", "1", "--steps", "6",
                 "--device", "cpu", "--config-json", json.dumps({"log_every": 2, "eval_lpips": False})]) == 0
    return run


def test_adapt_uses_only_the_first_seconds_and_writes_an_ordinary_run(adapted, identities):
    from emogs.model.emotag import EmoTagHead
    from emogs.run import open_run

    r = open_run(adapted)
    info = r.info()
    assert r.is_complete() and info["model_kind"] == "emotag" and info["adapt"]["seconds"] == 1.0
    with np.load(adapted / "train_cameras.npz") as z:
        assert z["index"].max() < 25 and len(z["index"]) == 25  # frames 0-24: the first second only
    m = json.loads((adapted / "metrics.json").read_text())
    man = json.loads((identities[1] / "manifest.json").read_text())
    assert m["num_frames"] == man["splits"]["test"][1] - man["splits"]["test"][0]
    assert m["field"]["psnr"] is not None and m["full"]["psnr"] > 10
    mc, model = r.load_model()
    assert isinstance(model, EmoTagHead) and model.id_code.shape[0] == 1 and model.id_color is None


def test_render_eval_controls_export_and_avatar_work_on_the_adapted_run(adapted, shared_data, tmp_path):
    from emogs.avatar import Avatar

    audio = shared_data / "audio" / "emotalk_happy.wav"
    assert main(["render", str(adapted), "--audio", str(audio), "-o", str(tmp_path / "r.mp4"), "--au", "AU12=0.8",
                 "--device", "cpu"]) == 0
    assert (tmp_path / "r.mp4").stat().st_size > 1000
    assert main(["export", str(adapted), "-o", str(tmp_path / "h.ply"), "--emotion", "happy"]) == 0
    assert main(["eval", str(adapted), "-o", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "psnr" in json.dumps(ev)
    # a head adapted for 6 steps has no face MediaPipe finds, so the measuring half of eval-controls has
    # nothing to measure: its rendering half (plain and edited, through Avatar) runs on the run
    assert main(["eval-controls", str(adapted), "--audio", str(audio), "--au", "AU12=1@1-2", "-o",
                 str(tmp_path / "ec"), "--device", "cpu", "--render-only"]) == 0
    assert len(list((tmp_path / "ec").rglob("*.mp4"))) >= 2
    av = Avatar.load(adapted, device="cpu")
    assert av.is_mesh
    wav = np.random.default_rng(0).normal(scale=0.05, size=16000).astype(np.float32)
    frames = av.render(wav, quiet=True, au="AU12=0.5")
    assert frames.shape == (25, 48, 48, 3)
    e = av.speech_expression(np.zeros((100, 80), np.float32), 25)
    assert e.shape == (25, av.model.num_expressions)


def test_the_emotag_head_trains_per_person_from_scratch(identities, tmp_path):
    from emogs.run import open_run

    (tmp_path / "over.json").write_text(json.dumps(TINY))
    assert main(["train", str(identities[0]), "-o", str(tmp_path / "run"), "--model", "emotag", "--iters", "3",
                 "--device", "cpu", "--config-json", str(tmp_path / "over.json")]) == 0
    r = open_run(tmp_path / "run")
    assert r.is_complete() and r.info()["model_kind"] == "emotag" and r.load_model()[1].id_code.shape[0] == 1


def test_the_adapted_layout_is_the_bases_surface_and_the_persons_own_shell(base, identities):
    import torch

    from emogs.run.base import BaseFolder
    from emogs.train.config import config_from_run
    from emogs.train.data import FrameBank
    from emogs.train.fewshot import adapt_config, few_shot_datasets, head_from_base

    cfg_d, state, _, _ = BaseFolder(base).load()
    cfg = adapt_config(cfg_d, "cpu", 4)
    tr, _ = few_shot_datasets(identities[1], cfg, 1.0)
    bank = FrameBank.from_dataset(tr, cfg.resolution)
    n = config_from_run(cfg_d).model.num_face + config_from_run(cfg_d).model.num_mouth
    own = head_from_base(cfg, state, bank, tr, log=lambda m: None, reset_opacity=True)
    kept = head_from_base(cfg, state, bank, tr, log=lambda m: None, person_shell=False)
    g, k = own.gaussians, kept.gaussians
    assert torch.equal(g.means[:n], state["gaussians.means"][:n]) and torch.equal(g.parent[:n], state["gaussians.parent"][:n])
    assert torch.equal(k.means, state["gaussians.means"]) and torch.equal(k.opacity_logit, state["gaussians.opacity_logit"])
    shell = g.means[n:]
    assert len(shell) > 0 and not torch.equal(shell, state["gaussians.means"][n:n + len(shell)])
    assert torch.allclose(torch.sigmoid(g.opacity_logit), torch.tensor(0.3), atol=1e-5)
    assert torch.equal(own.mesh_neutral, kept.mesh_neutral) and not torch.equal(own.mesh_neutral, state["mesh_neutral"])


def test_the_emotion_guidance_reads_cached_fer2013_scores(base, identities):
    from emogs.data.fer_features import load_fer_features
    from emogs.face.fer import emotion_intensity
    from emogs.run.base import BaseFolder

    for d in identities:  # computed once at data time, cached beside the dataset
        p = load_fer_features(d)
        assert p is not None and p.shape[1] == 7 and np.allclose(p.sum(1), 1, atol=1e-2)
        assert ((emotion_intensity(p) >= 0) & (emotion_intensity(p) <= 1)).all()
    _, state, _, _ = BaseFolder(base).load()
    assert "grmn.emotion.0.weight" in state and "fer_mean" in state
    recs = [json.loads(x) for x in (base / "pretrain_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["kl"]) for r in recs)


def _upper_drive_frames(av, emotion, wav):
    return av.render(wav, quiet=True, emotion=emotion, blinks=False, speech_aus=False).astype(np.int16)


def test_an_emotion_request_moves_the_adapted_head_through_the_residual_branch(adapted):
    import torch

    from emogs.avatar import Avatar

    av = Avatar.load(adapted, device="cpu", upper_drive="branch")  # the table moves only the lower face
    assert av.model.has_emotion
    wav = np.random.default_rng(0).normal(scale=0.05, size=16000).astype(np.float32)
    torch.manual_seed(0)
    with torch.no_grad():  # a branch that has learned something (6 adaptation steps barely move it)
        av.model.grmn.residual[-1].weight.normal_(0, 0.5)
        av.model.grmn.gate.bias.fill_(3.0)
    happy = _upper_drive_frames(av, "happy:1", wav)
    plain = _upper_drive_frames(av, None, wav)
    with torch.no_grad():  # the same request with the branch silenced: what the table and the AU inputs do
        av.model.grmn.residual[-1].weight.zero_()
        av.model.grmn.residual[-1].bias.zero_()
    happy0 = _upper_drive_frames(av, "happy:1", wav)
    top = slice(0, happy.shape[1] // 2)  # the upper face (eyes, brows) of the 48 px frame
    assert np.abs(happy - happy0)[:, top].max() > 2  # the branch changes the upper face under the request
    assert np.abs(happy - plain)[:, top].max() > 2
    # nothing asked (the person's mean AUs and emotion): the branch adds nothing
    assert np.abs(_upper_drive_frames(av, None, wav) - plain).max() <= 1
    # the table alone ignores the branch
    av.upper_drive = "table"
    with torch.no_grad():
        av.model.grmn.residual[-1].weight.normal_(0, 0.5)
    t1 = _upper_drive_frames(av, "happy:1", wav)
    with torch.no_grad():
        av.model.grmn.residual[-1].weight.zero_()
    assert np.array_equal(t1, _upper_drive_frames(av, "happy:1", wav))


def test_an_emotag_run_from_before_the_emotion_latent_still_loads_and_renders(adapted, tmp_path):
    import shutil

    from emogs.avatar import Avatar
    from emogs.run.folder import _load_tensors, _save_tensors

    old = tmp_path / "old"
    shutil.copytree(adapted, old, ignore=shutil.ignore_patterns("checkpoints", "*.mp4"))
    cfg = json.loads((old / "config.json").read_text())
    cfg["model"].pop("emotion_dim")
    cfg["model"].pop("emotion_kl")
    (old / "config.json").write_text(json.dumps(cfg))
    state, meta = _load_tensors(old / "model.safetensors")
    U, C = 8, cfg["model"]["id_dim"]
    state = {k: v for k, v in state.items() if not k.startswith("grmn.emotion") and k != "fer_mean"}
    state["grmn.residual.0.weight"] = state["grmn.residual.0.weight"][:, :U + C].contiguous()
    state["grmn.gate.weight"] = state["grmn.gate.weight"][:, :-1].contiguous()
    _save_tensors(old / "model.safetensors", state, meta)
    av = Avatar.load(old, device="cpu")
    assert not av.model.has_emotion and av.emotion_rows(None, 3) is None
    wav = np.random.default_rng(0).normal(scale=0.05, size=8000).astype(np.float32)
    assert av.render(wav, quiet=True, emotion="happy:0.7").shape[1:] == (48, 48, 3)
