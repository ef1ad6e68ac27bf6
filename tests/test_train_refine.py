"""Issue 15's two training levers (emogs.train.refine): per-frame rigid head-pose refinement and per-frame
appearance codes. The maths on a fixed Gaussian scene (a perturbed pose is recovered through the rasteriser's
gradient; an exposure change is absorbed by a code; code 0 is the plain render), then both inside the
training loop on the synthetic dataset (perturbed cameras / exposure drift: lower training loss than without,
checkpoint + resume, the run's train_refine.safetensors, test renders without them)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emogs.render import rasterize
from emogs.train.refine import FrameRefiner, se3_matrix


def _scene(n: int = 600, seed: int = 0):
    """A textured ellipsoid of Gaussians (cm, centred at (0.5, -0.3, 0.2)) seen from 40 cm: world_to_cam (1, 4, 4), K."""
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    centre = torch.tensor([0.5, -0.3, 0.2])
    means = d * torch.tensor([7.0, 9.0, 7.0]) + centre
    colors = 0.5 + 0.4 * torch.sin(means @ torch.tensor([[0.9, 0.2, 0.1], [0.1, 0.7, 0.4], [0.3, 0.1, 0.8]]))
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    scales = torch.full((n, 3), 0.9)
    opac = torch.full((n,), 0.8)
    w2c = torch.eye(4)[None]
    w2c[0, 2, 3] = 40.0
    S = 48
    K = torch.tensor([[60.0, 0, S / 2], [0, 60.0, S / 2], [0, 0, 1]])[None]
    return dict(means=means, quats=quats, scales=scales, opac=opac, colors=colors, w2c=w2c, K=K, S=S, centre=centre)


def _render(sc, w2c, colors=None):
    out = rasterize(sc["means"], sc["quats"], sc["scales"], sc["opac"], sc["colors"] if colors is None else colors,
                    w2c, sc["K"], sc["S"], sc["S"], backend="torch")
    return out.colors, out.alpha


def test_se3_is_identity_at_zero_and_turns_about_the_pivot():
    pivot = torch.tensor([1.0, 2.0, -3.0])
    assert torch.allclose(se3_matrix(torch.zeros(2, 6), pivot), torch.eye(4).expand(2, 4, 4))
    d = torch.tensor([[0.1, -0.2, 0.05, 0.0, 0.0, 0.0], [0.0, 0.3, 0.0, 1.0, -2.0, 0.5]])
    T = se3_matrix(d, pivot)
    p = torch.cat([pivot, torch.ones(1)])
    assert torch.allclose((T[0] @ p)[:3], pivot, atol=1e-6)  # a pure rotation leaves the pivot where it is
    assert torch.allclose((T[1] @ p)[:3], pivot + d[1, 3:], atol=1e-6)
    R = T[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-6)
    assert math.isclose(float(torch.linalg.det(R[1])), 1.0, rel_tol=1e-6)
    # rotation angle = |rotation vector|
    ang = math.acos((float(R[0].trace()) - 1) / 2)
    assert math.isclose(ang, float(d[0, :3].norm()), rel_tol=1e-4)


def test_pose_refinement_recovers_a_known_perturbation_through_the_rasteriser():
    torch.manual_seed(0)
    sc = _scene()
    true = torch.tensor([[0.03, -0.04, 0.02, 0.4, -0.3, 0.5]])  # ~3 deg, ~0.7 cm: a few pixels at 48 px
    target, _ = _render(sc, sc["w2c"] @ se3_matrix(true, sc["centre"]))
    ref = FrameRefiner(1, sc["centre"], pose=True)
    opt = torch.optim.Adam([ref.pose_rot, ref.pose_trans], lr=3e-3)
    ids = torch.tensor([0])
    first = None
    for _ in range(150):
        img, _ = _render(sc, ref.cameras(sc["w2c"], ids))
        loss = (img - target).abs().mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        assert ref.pose_rot.grad.abs().sum() > 0 and ref.pose_trans.grad.abs().sum() > 0
        opt.step()
    err0 = float(true.norm())
    err = float((ref.pose.detach() - true).norm())
    assert err < 0.3 * err0, (ref.pose.detach(), true)
    assert float(loss) < 0.3 * first


def test_appearance_code_zero_is_the_plain_render_and_a_code_absorbs_exposure():
    sc = _scene()
    head, alpha = _render(sc, sc["w2c"])
    bg = torch.full((1, sc["S"], sc["S"], 3), 0.3)
    ref = FrameRefiner(2, sc["centre"], appearance_dim=4)
    rgb, head0 = ref.recolor(head, alpha, bg, torch.tensor([0]))
    assert torch.equal(head0, head) and torch.equal(rgb, head + (1 - alpha) * bg)  # code 0: no change at all
    # the affine on the premultiplied render is the affine on every Gaussian's colour (rendering is linear)
    with torch.no_grad():
        ref.code[1] = torch.tensor([0.5, -1.0, 0.3, 2.0])
    A, b = ref.affine(torch.tensor([1]))
    recol = sc["colors"] + sc["colors"] @ A[0].T + b[0]
    h2, a2 = _render(sc, sc["w2c"], recol)
    _, h1 = ref.recolor(head, alpha, bg, torch.tensor([1]))
    assert torch.allclose(h1, h2, atol=1e-5)
    # a darker, warmer exposure of frame 1 is learned by its code (and the decoder), frame 0's stays 0
    target = (head * torch.tensor([0.75, 0.7, 0.6]) + 0.05 * alpha) + (1 - alpha) * bg
    ref = FrameRefiner(2, sc["centre"], appearance_dim=4)
    opt = torch.optim.Adam([ref.code, ref.decoder], lr=1e-2)
    ids = torch.tensor([1])
    before = float((ref.recolor(head, alpha, bg, ids)[0] - target).abs().mean())
    for _ in range(200):
        loss = (ref.recolor(head, alpha, bg, ids)[0] - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.2 * before
    assert float(ref.code[0].abs().sum()) == 0.0 and float(ref.code[1].abs().sum()) > 0


# -- inside the training loop ---------------------------------------------------------------------------
class _Perturbed:
    """A dataset whose reported cameras are off by a known rigid head motion per frame (`delta`, (F, 6),
    zero-mean) and/or whose images are darkened on odd frames (exposure drift)."""

    def __init__(self, ds, delta: np.ndarray | None = None, dark: float | None = None, pivot=None):
        self.ds, self.delta, self.dark = ds, delta, dark
        self.pivot = torch.zeros(3) if pivot is None else pivot
        self.background = ds.background

    def __len__(self):
        return len(self.ds)

    def __getattr__(self, k):
        return getattr(self.ds, k)

    def __getitem__(self, i):
        it = dict(self.ds[i])
        if self.delta is not None:  # reported = true @ inv(P): the ideal refinement is P
            P = se3_matrix(torch.as_tensor(self.delta[i:i + 1], dtype=torch.float64), self.pivot.double())[0].numpy()
            it["world_to_cam"] = (np.asarray(it["world_to_cam"], np.float64) @ np.linalg.inv(P)).astype(np.float32)
        if self.dark is not None and i % 2:
            img = np.asarray(it["image"], np.float32)
            lab = np.asarray(it["labels"])
            head = (lab >= 2)[..., None]  # the head's pixels only (background and torso come from the frame)
            it["image"] = np.where(head, img * self.dark, img).astype(np.float32)
        return it


def _pivot_of_synth():
    from emogs.face.camera import canonical_face_mesh

    v, _, _ = canonical_face_mesh()
    return torch.as_tensor(v.mean(0), dtype=torch.float32)


def _train_psnr(run, bank_ds, cfg, refined: bool):
    """Mean PSNR of the training frames rendered by the trained model, with the refined cameras / codes or
    the tracked ones (no refinement)."""
    from emogs.run import RunFolder
    from emogs.train.data import FrameBank
    from emogs.train.loop import recolored

    r = RunFolder(run)
    _, model = r.load_model()
    bank = FrameBank.from_dataset(bank_ds, cfg.resolution)
    ref = None
    if refined:
        t = r.refinements()
        ref = FrameRefiner.from_config(cfg, len(bank), torch.zeros(3))
        ref.load_state_tensors(t)
    ps = []
    with torch.no_grad():
        for i in range(len(bank)):
            ids = torch.tensor([i])
            b = bank.batch(ids)
            w2c = ref.cameras(b["world_to_cam"], ids) if ref is not None and ref.pose_rot is not None else b["world_to_cam"]
            out = model(w2c, b["K"], b["audio"], b["au_window"], bank.size, bank.size, b["background"], backend="torch")
            if ref is not None:
                out = recolored(ref, cfg, out, b["background"], ids, cfg.iters)
            mse = float(((out.rgb - b["image"]) ** 2).mean())
            ps.append(-10 * math.log10(max(mse, 1e-10)))
    return float(np.mean(ps))


@pytest.fixture(scope="module")
def perturbed_runs(tmp_path_factory):
    """Three short trainings on 6 synthetic frames (cameras off by ~1.7 deg / 0.4 cm, zero-mean): pose
    refinement off, on, and on + resumed from a checkpoint half-way."""
    from emogs.train.loop import train
    from test_train_loop import tiny_config
    from test_train_synth import synth_splits

    tr, te = synth_splits(6, 2, 48)
    rng = np.random.default_rng(1)
    d = np.concatenate([rng.normal(scale=0.03, size=(6, 3)), rng.normal(scale=0.25, size=(6, 3))], 1)
    d -= d.mean(0)
    pivot = _pivot_of_synth()
    ptr = _Perturbed(tr, d, pivot=pivot)
    root = tmp_path_factory.mktemp("refine")
    kw = {"densify.start": 1000, "densify.stop": 1000, "iters": 120, "fine_start": 1000, "log_every": 10,
          "pose_refine.lr_rotation": 2e-3, "pose_refine.lr_translation": 2e-2, "pose_refine.start": 20,
          "pose_refine.reg_rotation": 0.0, "pose_refine.reg_translation": 0.0, "checkpoint_every": 60}
    runs = {}
    for name, on in (("off", False), ("on", True)):
        cfg = tiny_config(**{**kw, "pose_refine.enabled": on})
        train((ptr, te), root / name, cfg, log=lambda _: None)
        runs[name] = (root / name, cfg)
    cfg = tiny_config(**{**kw, "pose_refine.enabled": True})
    train((ptr, te), root / "resumed", cfg, log=lambda _: None, max_steps=60)
    train((ptr, te), root / "resumed", cfg, log=lambda _: None)
    runs["resumed"] = (root / "resumed", cfg)
    return runs, ptr, d, pivot


def test_pose_refinement_in_training_lowers_the_loss_and_moves_toward_the_truth(perturbed_runs):
    runs, ptr, d, pivot = perturbed_runs
    (off, cfg_off), (on, cfg_on) = runs["off"], runs["on"]
    p_off = _train_psnr(off, ptr, cfg_off, refined=False)
    p_on = _train_psnr(on, ptr, cfg_on, refined=True)
    assert p_on > p_off + 0.5, (p_on, p_off)
    from emogs.run import RunFolder

    t = RunFolder(on).refinements()
    est = torch.cat([t["refine.pose_rot"], t["refine.pose_trans"]], -1).numpy()
    est = est - est.mean(0)  # the common part is the gauge (the head can move instead); compare the rest
    # the refined cameras are closer to the true ones than the reported ones, in the pose's own units
    w = np.array([1 / 0.03] * 3 + [1 / 0.25] * 3)
    err_before = np.linalg.norm(d * w, axis=1).mean()
    err_after = np.linalg.norm((d - est) * w, axis=1).mean()
    assert err_after < 0.8 * err_before, (err_after, err_before, est, d)
    assert torch.equal(t["refined_world_to_cam"][0], t["refined_world_to_cam"][0])
    assert t["world_to_cam"].shape == (6, 4, 4)


def test_pose_refinement_resumes_exactly(perturbed_runs):
    from emogs.run import RunFolder

    runs = perturbed_runs[0]
    a, b = RunFolder(runs["on"][0]).refinements(), RunFolder(runs["resumed"][0]).refinements()
    for k in ("refine.pose_rot", "refine.pose_trans", "refined_world_to_cam"):
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_appearance_codes_train_and_the_test_render_is_the_code_zero_render(tmp_path):
    from emogs.run import RunFolder
    from emogs.train.data import FrameBank
    from emogs.train.evaluate import render_bank
    from emogs.train.loop import recolored, train
    from test_train_loop import tiny_config
    from test_train_synth import synth_splits

    tr, te = synth_splits(6, 2, 48)
    dtr = _Perturbed(tr, dark=0.6)
    kw = {"densify.start": 1000, "densify.stop": 1000, "iters": 100, "fine_start": 1000, "log_every": 10,
          "appearance.lr": 1e-2, "appearance.lr_decoder": 1e-2, "appearance.reg": 0.0}
    res = {}
    for name, on in (("off", False), ("on", True)):
        cfg = tiny_config(**{**kw, "appearance.enabled": on})
        train((dtr, te), tmp_path / name, cfg, log=lambda _: None)
        res[name] = _train_psnr(tmp_path / name, dtr, cfg, refined=on)
    assert res["on"] > res["off"] + 0.5, res
    r = RunFolder(tmp_path / "on")
    t = r.refinements()
    code = t["refine.code"]
    assert code.shape == (6, cfg.appearance.dim) and float(code[1::2].norm(dim=-1).mean()) > 0
    # the darkened frames' codes map to a darker head: the affine's mean gain on odd frames is below even ones'
    ref = FrameRefiner.from_config(cfg, 6, torch.zeros(3))
    ref.load_state_tensors(t)
    A, _ = ref.affine(torch.arange(6))
    gain = torch.diagonal(A, dim1=1, dim2=2).mean(-1)
    assert float(gain[1::2].mean()) < float(gain[0::2].mean()) - 0.05, gain
    # test frames render without the codes: the same as the training path with code 0
    _, model = r.load_model()
    bank = FrameBank.from_dataset(te, cfg.resolution)
    plain = render_bank(model, bank, "torch")
    with torch.no_grad():
        ref.code.zero_()
        b = bank.batch(torch.arange(len(bank)))
        bgs = bank.background.expand(len(bank), -1, -1, -1)
        out = model(b["world_to_cam"], b["K"], b["audio"], b["au_window"], bank.size, bank.size, bgs, backend="torch")
        out0 = recolored(ref, cfg, out, bgs, torch.arange(len(bank)), cfg.iters)
    assert torch.equal(out0.rgb, out.rgb)
    assert np.abs((out0.rgb.clamp(0, 1) * 255).round().byte().numpy().astype(int) - plain.astype(int)).max() <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA and gsplat")
def test_pose_gradient_is_the_same_through_gsplat_and_the_torch_rasteriser():
    from emogs.render.rasterize import gsplat_available

    if not gsplat_available():
        pytest.skip("gsplat not installed")
    sc = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in _scene().items()}
    grads = {}
    for backend in ("torch", "gsplat"):
        ref = FrameRefiner(1, sc["centre"], pose=True).cuda()
        with torch.no_grad():
            ref.pose_rot[0] = torch.tensor([0.01, -0.02, 0.01])
        out = rasterize(sc["means"], sc["quats"], sc["scales"], sc["opac"], sc["colors"],
                        ref.cameras(sc["w2c"], torch.tensor([0], device="cuda")), sc["K"], sc["S"], sc["S"],
                        backend=backend)
        (out.colors * torch.linspace(0, 1, sc["S"], device="cuda")[:, None, None]).sum().backward()
        grads[backend] = torch.cat([ref.pose_rot.grad, ref.pose_trans.grad], -1)
    assert torch.allclose(grads["torch"], grads["gsplat"], rtol=0.05, atol=1e-3 * float(grads["torch"].abs().max())), grads
