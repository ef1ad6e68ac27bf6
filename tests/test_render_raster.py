"""CPU tests of the pure-PyTorch rasteriser: closed forms, compositing rules, batching, gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emogs.render import choose_backend, rasterize
from emogs.render.project import project_gaussians
from emogs.render.reference import rasterize_dense
from emogs.render.scenes import head_scene, random_scene

F64 = torch.float64


def _K(f: float, cx: float, cy: float, dtype=F64) -> torch.Tensor:
    return torch.tensor([[[f, 0, cx], [0, f, cy], [0, 0, 1]]], dtype=dtype)


def _one(means, scales, opac, colors, quats=None, dtype=F64):
    """Tensors for a few Gaussians given as python lists."""
    means = torch.tensor(means, dtype=dtype)
    n = means.shape[0]
    quats = torch.tensor(quats, dtype=dtype) if quats is not None else torch.tensor([[1.0, 0, 0, 0]] * n, dtype=dtype)
    return means, quats, torch.tensor(scales, dtype=dtype), torch.tensor(opac, dtype=dtype), \
        torch.tensor(colors, dtype=dtype)


def test_isotropic_gaussian_closed_form():
    """One isotropic Gaussian on the optical axis.

    alpha(p) = min(.999, o exp(-|p - c|^2 / 2 v)) with v = (f s / z)^2 + 0.3, zero below 1/255.
    """
    W, H, f, z, s, o = 40, 36, 30.0, 5.0, 0.4, 0.8
    cx, cy = 20.3, 17.8  # principal point off the pixel grid: checks the +0.5 pixel-centre convention
    g = _one([[0.0, 0.0, z]], [[s, s, s]], [o], [[0.2, 0.6, 0.9]])
    bg = torch.tensor([1.0, 0.5, 0.0], dtype=F64)
    out = rasterize(*g, torch.eye(4, dtype=F64)[None], _K(f, cx, cy), W, H, background=bg)
    var = (f * s / z) ** 2 + 0.3
    px, py = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    a = np.minimum(0.999, o * np.exp(-0.5 * ((px - cx) ** 2 + (py - cy) ** 2) / var))
    a = np.where(a >= 1 / 255, a, 0.0)
    expect = a[..., None] * np.array([0.2, 0.6, 0.9]) + (1 - a[..., None]) * bg.numpy()
    np.testing.assert_allclose(out.alpha[0, ..., 0].numpy(), a, atol=1e-12)
    np.testing.assert_allclose(out.colors[0].numpy(), expect, atol=1e-12)
    d = out.depth[0, ..., 0].numpy()
    np.testing.assert_allclose(d[a > 0], z, rtol=1e-12)
    assert np.all(d[a == 0] == 0)


def test_offscreen_jacobian_clamp():
    """A wide Gaussian far left of the view: projection uses x/z clamped to -(cx/fx + 0.3 tan(fov/2))."""
    W = H = 32
    f, z = 20.0, 4.0
    g = _one([[-30.0, 0.0, z]], [[20.0, 1.0, 1.0]], [0.9], [[1.0, 1.0, 1.0]])
    K = _K(f, W / 2, H / 2)
    p = project_gaussians(g[0][None], g[1][None], g[2][None], g[3][None], torch.eye(4, dtype=F64)[None], K, W, H)
    lim = (W / 2) / f + 0.3 * (0.5 * W / f)
    tx = -lim * z
    J = np.array([[f / z, 0, -f * tx / z ** 2], [0, f / z, 0]])
    cov2d = J @ np.diag([400.0, 1.0, 1.0]) @ J.T + 0.3 * np.eye(2)
    conic = np.linalg.inv(cov2d)
    np.testing.assert_allclose(p.conics[0, 0].numpy(), [conic[0, 0], conic[0, 1], conic[1, 1]], rtol=1e-10)
    np.testing.assert_allclose(p.means2d[0, 0].numpy(), [f * -30 / z + W / 2, H / 2])
    assert bool(p.valid[0, 0])


def test_occlusion_order_and_exact_blend():
    """Front Gaussian composited first, whatever the input order; pixel = a1 c1 + (1-a1) a2 c2 + T bg."""
    W = H = 16
    K = _K(20.0, 8.0, 8.0)
    red, green = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    for order in ([0, 1], [1, 0]):
        means = [[0.0, 0.0, 3.0], [0.0, 0.0, 6.0]]  # red in front
        cols, ops = [red, green], [0.7, 0.9]
        g = _one([means[i] for i in order], [[0.5] * 3] * 2, [ops[i] for i in order], [cols[i] for i in order])
        out = rasterize(*g, torch.eye(4, dtype=F64)[None], K, W, H, background=torch.zeros(3, dtype=F64))
        # pixel (7, 7) has centre (7.5, 7.5), offset (-.5, -.5) from the projected centre (8, 8)
        a1 = 0.7 * math.exp(-0.5 * 0.5 / ((20 * 0.5 / 3) ** 2 + 0.3))
        a2 = 0.9 * math.exp(-0.5 * 0.5 / ((20 * 0.5 / 6) ** 2 + 0.3))
        np.testing.assert_allclose(out.colors[0, 7, 7].numpy(), [a1, (1 - a1) * a2, 0.0], rtol=1e-10)
        np.testing.assert_allclose(out.depth[0, 7, 7, 0].item(), (a1 * 3 + (1 - a1) * a2 * 6) / (a1 + (1 - a1) * a2),
                                   rtol=1e-10)


def test_transmittance_cutoff_rule():
    """gsplat's rule: a Gaussian that would take T to <= 1e-4 is not composited (nor anything behind it)."""
    W = H = 8
    f, s = 10.0, 50.0
    K = _K(f, 4.0, 4.0)
    zs = [2.0, 3.0, 4.0]
    # three huge layers of opacity 0.98: T goes 1 -> 0.02 -> 4e-4 -> (8e-6: rejected)
    g = _one([[0, 0, z] for z in zs], [[s] * 3] * 3, [0.98] * 3, [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    bg = torch.tensor([0.0, 0.0, 0.5], dtype=F64)
    out = rasterize(*g, torch.eye(4, dtype=F64)[None], K, W, H, background=bg)
    # pixel (4, 4): centre (4.5, 4.5), 0.5 px from the projected centre on both axes
    a1, a2 = (0.98 * math.exp(-0.5 * 0.5 / ((f * s / z) ** 2 + 0.3)) for z in zs[:2])
    T2 = (1 - a1) * (1 - a2)
    assert 1e-4 < T2 < 1e-3 and T2 * (1 - 0.97) < 1e-4
    np.testing.assert_allclose(out.colors[0, 4, 4].numpy(), [a1, (1 - a1) * a2, T2 * 0.5], rtol=1e-9)
    np.testing.assert_allclose(out.alpha[0, 4, 4, 0].item(), 1 - T2, rtol=1e-12)


def test_alpha_clamped_at_0999():
    """gsplat 1.5.3 clamps alpha at 0.999 (the original 3DGS code: 0.99)."""
    K = _K(10.0, 4.0, 4.0)
    g = _one([[0, 0, 2.0]], [[50.0] * 3], [1.0], [[1.0, 0, 0]])
    out = rasterize(*g, torch.eye(4, dtype=F64)[None], K, 8, 8)
    torch.testing.assert_close(out.alpha, torch.full_like(out.alpha, 0.999), rtol=0, atol=1e-12)


def test_empty_scene_and_culled_gaussians_give_background():
    W, H = 24, 20
    K = _K(20.0, 12.0, 10.0)
    bg = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)
    vm = torch.eye(4, dtype=F64)[None]
    empty = [torch.zeros(0, 3, dtype=F64), torch.zeros(0, 4, dtype=F64), torch.zeros(0, 3, dtype=F64),
             torch.zeros(0, dtype=F64), torch.zeros(0, 4, dtype=F64)]
    # behind the camera, beyond the far plane, transparent, and off screen
    culled = _one([[0, 0, -2.0], [0, 0, 50.0], [0, 0, 3.0], [500.0, 0, 3.0]], [[0.3] * 3] * 4,
                  [0.9, 0.9, 0.001, 0.9], [[1.0] * 4] * 4)
    for g in (empty, culled):
        out = rasterize(*g, vm, K, W, H, background=bg, far=20.0)
        assert out.colors.shape == (1, H, W, 4)
        assert torch.equal(out.colors, bg.expand(1, H, W, 4))
        assert torch.all(out.alpha == 0) and torch.all(out.depth == 0)


def test_extra_feature_channels_match_rgb_render():
    """D = 7 channels: the first 3 equal an RGB render, the others follow the same weights."""
    sc = random_scene(60, size=32, n_cameras=2, channels=7, seed=1).to("cpu", F64)
    full = rasterize(*sc.params(), sc.viewmats, sc.Ks, sc.width, sc.height)
    rgb = rasterize(sc.means, sc.quats, sc.scales, sc.opacities, sc.colors[:, :3], sc.viewmats, sc.Ks, 32, 32)
    ones = rasterize(sc.means, sc.quats, sc.scales, sc.opacities, torch.ones_like(sc.colors[:, :1]),
                     sc.viewmats, sc.Ks, 32, 32)
    assert full.colors.shape == (2, 32, 32, 7)
    torch.testing.assert_close(full.colors[..., :3], rgb.colors, rtol=0, atol=1e-12)
    torch.testing.assert_close(ones.colors, full.alpha, rtol=0, atol=1e-12)  # sum of weights = alpha
    assert full.alpha.max() > 0.5


def test_per_camera_gaussians_equal_one_by_one():
    """(C, N, ...) per-camera Gaussians render exactly as C separate single-camera calls."""
    C = 3
    scenes = [random_scene(50, size=24, n_cameras=C, seed=s).to("cpu", F64) for s in range(C)]
    stack = lambda k: torch.stack([getattr(s, k) for s in scenes])  # noqa: E731
    vm, K = scenes[0].viewmats, scenes[0].Ks
    bg = torch.rand(C, 3, dtype=F64)
    batched = rasterize(stack("means"), stack("quats"), stack("scales"), stack("opacities"), stack("colors"),
                        vm, K, 24, 24, background=bg)
    for c, s in enumerate(scenes):
        one = rasterize(*s.params(), vm[c:c + 1], K[c:c + 1], 24, 24, background=bg[c])
        for k in ("colors", "alpha", "depth"):
            torch.testing.assert_close(getattr(batched, k)[c:c + 1], getattr(one, k), rtol=0, atol=1e-12)
    # and the shared-Gaussian form equals the same Gaussians stacked per camera
    s = scenes[0]
    shared = rasterize(*s.params(), vm, K, 24, 24)
    rep = rasterize(*(p.expand((C,) + p.shape) for p in s.params()), vm, K, 24, 24)
    torch.testing.assert_close(shared.colors, rep.colors, rtol=0, atol=0)


@pytest.mark.parametrize("tile,chunk,max_elems", [(16, 64, 1 << 21), (8, 7, 1 << 21), (4, 16, 20000)])
def test_tiles_and_chunks_match_dense_reference(tile, chunk, max_elems):
    """Any tile size / depth chunk / memory budget gives the dense all-pairs result, values and gradients."""
    sc = random_scene(120, size=36, n_cameras=2, channels=4, seed=3, scale=0.08).to("cpu", F64)
    sc.width = 40  # non-square, not a multiple of the tile size
    sc.Ks[:, 0, 2] = 20.0
    ps = [p.clone().requires_grad_(True) for p in sc.params()]
    bg = torch.rand(4, dtype=F64)
    a = rasterize(*ps, sc.viewmats, sc.Ks, 40, 36, background=bg, tile_size=tile, chunk=chunk, max_elems=max_elems)
    b = rasterize_dense(*ps, sc.viewmats, sc.Ks, 40, 36, background=bg)
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(getattr(a, k).shape, generator=gen, dtype=F64) for k in ("colors", "alpha", "depth")]
    grads = []
    for out in (a, b):
        loss = sum((getattr(out, k) * w).sum() for k, w in zip(("colors", "alpha", "depth"), ws))
        grads.append(torch.autograd.grad(loss, ps))
    for k in ("colors", "alpha", "depth"):
        torch.testing.assert_close(getattr(a, k), getattr(b, k), rtol=0, atol=1e-10)
    assert a.alpha.max() > 0.9  # some pixels saturate, so the cut-off paths run
    for ga, gb in zip(*grads):
        torch.testing.assert_close(ga, gb, rtol=1e-8, atol=1e-8)
        assert gb.abs().max() > 0


def test_gradients_match_finite_differences():
    """torch.autograd.gradcheck (central differences, float64) on a tiny scene, every Gaussian parameter."""
    sc = random_scene(6, size=12, n_cameras=2, channels=2, seed=5, spread=0.5, scale=0.15).to("cpu", F64)
    gen = torch.Generator().manual_seed(1)
    w_rgb = torch.randn(2, 12, 12, 2, generator=gen, dtype=F64)
    w_a = torch.randn(2, 12, 12, 1, generator=gen, dtype=F64)
    w_d = torch.randn(2, 12, 12, 1, generator=gen, dtype=F64)

    def f(means, quats, scales, opac, colors):
        o = rasterize(means, quats, scales, opac, colors, sc.viewmats, sc.Ks, 12, 12,
                      background=torch.tensor([0.3, 0.7], dtype=F64), tile_size=4, chunk=2)
        return (o.colors * w_rgb).sum() + (o.alpha * w_a).sum() + 0.1 * (o.depth * w_d).sum()

    ps = tuple(p.clone().requires_grad_(True) for p in sc.params())
    assert torch.autograd.gradcheck(f, ps, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_sh_colours_and_gradients():
    """SH input (N, K, 3) with sh_degree: degree 0 equals RGB = 0.5 + C0 * dc; higher degrees get gradients."""
    from emogs.render.sh import rgb_to_sh0
    sc = random_scene(40, size=20, n_cameras=2, seed=7).to("cpu", F64)
    sh = torch.zeros(40, 16, 3, dtype=F64)
    sh[:, 0] = rgb_to_sh0(sc.colors)
    a = rasterize(sc.means, sc.quats, sc.scales, sc.opacities, sh, sc.viewmats, sc.Ks, 20, 20, sh_degree=3)
    b = rasterize(*sc.params(), sc.viewmats, sc.Ks, 20, 20)
    torch.testing.assert_close(a.colors, b.colors, rtol=0, atol=1e-12)
    sh = sh.clone().requires_grad_(True)
    means = sc.means.clone().requires_grad_(True)
    out = rasterize(means, sc.quats, sc.scales, sc.opacities, sh, sc.viewmats, sc.Ks, 20, 20, sh_degree=3)
    out.colors.sum().backward()
    assert sh.grad[:, 1:].abs().sum() > 0 and means.grad.abs().sum() > 0


def test_head_scene_float32_matches_dense():
    """The float32 tile path on a small head scene stays within 1e-5 of the dense float64 reference."""
    sc = head_scene(1500, size=48, n_cameras=2)
    a = rasterize(*sc.params(), sc.viewmats, sc.Ks, 48, 48, background=torch.ones(3))
    s64 = sc.to("cpu", F64)
    b = rasterize_dense(*s64.params(), s64.viewmats, s64.Ks, 48, 48, background=torch.ones(3, dtype=F64))
    assert (a.colors.double() - b.colors).abs().max() < 1e-4
    assert (a.colors.double() - b.colors).abs().mean() < 1e-5
    assert b.alpha.max() > 0.99


def test_backend_choice():
    assert choose_backend(torch.device("cpu")) == "torch"
    with pytest.raises(ValueError):
        choose_backend(torch.device("cpu"), "gsplat")
    with pytest.raises(ValueError):
        choose_backend(torch.device("cpu"), "opengl")  # type: ignore[arg-type]


def test_cuda_without_gsplat_falls_back_with_one_warning(monkeypatch, capsys):
    """Session 6's slow studio (115 ms a frame) was CUDA rendering through the PyTorch rasteriser because gsplat
    was not on the path: say so, once per process."""
    import importlib

    rz = importlib.import_module("emogs.render.rasterize")  # the module (emogs.render.rasterize is the function)
    monkeypatch.setattr(rz, "gsplat_available", lambda: False)
    rz._warn_no_gsplat.cache_clear()
    assert choose_backend(torch.device("cuda")) == "torch"
    assert choose_backend(torch.device("cuda")) == "torch"
    err = capsys.readouterr().err
    assert err.count("gsplat is not importable") == 1
    assert choose_backend(torch.device("cuda"), "torch") == "torch"  # asked for explicitly: no warning
    assert choose_backend(torch.device("cpu")) == "torch" and "gsplat" not in capsys.readouterr().err
    rz._warn_no_gsplat.cache_clear()


def test_blocks_respect_memory_budget(monkeypatch):
    """No (tiles x pixels x Gaussians) block exceeds max_elems, forward or backward, and the image is unchanged."""
    import emogs.render.tiles as tiles
    sizes: list[int] = []
    orig = tiles._alphas

    def spy(feat, ncoef, opac):
        out = orig(feat, ncoef, opac)
        sizes.append(out[2].numel())
        return out

    sc = head_scene(3000, size=64, n_cameras=2)
    ps = [p.clone().requires_grad_(True) for p in sc.params()]
    big = rasterize(*ps, sc.viewmats, sc.Ks, 64, 64, tile_size=8, chunk=32)
    monkeypatch.setattr(tiles, "_alphas", spy)
    small = rasterize(*ps, sc.viewmats, sc.Ks, 64, 64, tile_size=8, chunk=32, max_elems=8 * 64 * 32)
    small.colors.sum().backward()
    assert len(sizes) > 10 and max(sizes) <= 8 * 64 * 32
    torch.testing.assert_close(small.colors, big.colors, rtol=0, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_matches_torch_on_cuda():
    """On a CUDA machine with gsplat installed: both backends give the same image (full study: docs/render.md)."""
    pytest.importorskip("gsplat")
    sc = random_scene(3000, size=96, n_cameras=2).to("cuda")
    a = rasterize(*sc.params(), sc.viewmats, sc.Ks, 96, 96, backend="gsplat")
    b = rasterize(*sc.params(), sc.viewmats, sc.Ks, 96, 96, backend="torch")
    assert (a.colors - b.colors).abs().mean() < 1e-5 and (a.alpha - b.alpha).abs().mean() < 1e-5
