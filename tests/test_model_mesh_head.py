"""Mesh-rigged head (emogs.model.mesh_head, emogs.model.binding): Gaussians ride their parent triangles, the
network's residual lives in the triangle's frame, densification keeps each Gaussian's parent."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from emogs.model.binding import quat_mul, rotmat_to_quat, to_local, to_world, triangle_frames
from emogs.model.config import ModelConfig
from emogs.model.gaussians import GaussianSet
from emogs.model.mesh_head import MeshHead


def test_triangle_frames_and_binding_round_trip():
    torch.manual_seed(0)
    v = torch.randn(3, 12, 3)
    tris = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]])
    c, R, k = triangle_frames(v, tris)
    assert torch.allclose(R.transpose(-1, -2) @ R, torch.eye(3).expand(3, 4, 3, 3), atol=1e-5)
    assert torch.allclose(torch.det(R), torch.ones(3, 4), atol=1e-5)  # right-handed
    area = 0.5 * torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1).norm(dim=-1)
    assert torch.allclose(k[:, 0], (2 * area).sqrt(), atol=1e-5)
    local = torch.randn(3, 7, 3)
    par = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    assert torch.allclose(to_local(to_world(local, par, c, R, k), par, c, R, k), local, atol=1e-4)
    q = torch.nn.functional.normalize(torch.randn(50, 4), dim=-1)
    from emogs.train.densify import quat_to_rotmat

    assert torch.allclose(quat_to_rotmat(rotmat_to_quat(quat_to_rotmat(q))), quat_to_rotmat(q), atol=1e-5)
    # composing rotations: R(q1 q2) = R(q1) R(q2)
    q1, q2 = q[:25], q[25:]
    assert torch.allclose(quat_to_rotmat(quat_mul(q1, q2)), quat_to_rotmat(q1) @ quat_to_rotmat(q2), atol=1e-5)


def _mesh_head(seed: int = 0) -> tuple[MeshHead, torch.Tensor]:
    """Two separate triangles; expression 0 moves only triangle 0 (translates and rotates it), expression 1
    scales triangle 1 up. Gaussians 0-9 on triangle 0, 10-19 on triangle 1."""
    torch.manual_seed(seed)
    neutral = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [3, 0, 0], [4, 0, 0], [3, 1, 0]], dtype=torch.float32)
    tris = torch.tensor([[0, 1, 2], [3, 4, 5]])
    basis = torch.zeros(2, 6, 3)
    basis[0, :3] = torch.tensor([[0.0, 0, 1], [0, 0, 1], [0, 0, 2]])  # triangle 0 lifts and tilts about x
    basis[1, 3:] = neutral[3:] - neutral[3:].mean(0)  # triangle 1 grows about its centroid
    g = GaussianSet(20, bound=True)
    with torch.no_grad():
        g.parent.copy_(torch.cat([torch.zeros(10), torch.ones(10)]).long())
        g.means.copy_(torch.randn(20, 3) * 0.2)
        g.log_scales.fill_(-2.0)
        g.opacity_logit.fill_(2.0)
    cfg = ModelConfig(audio_dim=12, token_dim=16, hidden=32, triplane_channels=4, triplane_res=8, citae_hidden=8)
    return MeshHead(cfg, g, neutral, basis, tris), tris


def test_a_triangle_moves_its_gaussians_and_only_those():
    m, _ = _mesh_head()
    audio, au = torch.randn(1, 16, 12), torch.rand(1, 9, 17)
    with torch.no_grad():
        base = m.deformed(audio, au, torch.tensor([[0.0, 0.0]]))
        moved = m.deformed(audio, au, torch.tensor([[1.0, 0.0]]))
        grown = m.deformed(audio, au, torch.tensor([[0.0, 1.0]]))
    d = (moved["means"] - base["means"])[0].norm(dim=-1)
    assert d[:10].min() > 0.3 and d[10:].max() < 1e-5  # triangle 0's Gaussians ride it, triangle 1's stay
    assert not torch.allclose(moved["quats"][0, :10], base["quats"][0, :10], atol=1e-3)  # they rotate with it
    # triangle 1 twice as large: its Gaussians keep their place relative to it and scale with it
    s = grown["scales"][0, 10:] / base["scales"][0, 10:]
    assert torch.allclose(s, torch.full_like(s, 2.0), atol=1e-3)  # the basis is stored in float16
    c0 = base["means"][0, 10:] - base["means"][0, 10:].mean(0)
    c1 = grown["means"][0, 10:] - grown["means"][0, 10:].mean(0)
    assert torch.allclose(c1, 2 * c0, atol=1e-3)
    # a residual offset is in the triangle's frame: it turns with the triangle
    with torch.no_grad():
        m.deform.mlp[-1].bias[:3] = torch.tensor([0.0, 0.0, 0.5])  # +0.5 triangle sizes along the normal
        lifted = m.deformed(audio, au, torch.tensor([[0.0, 0.0]]))
    assert torch.allclose((lifted["means"] - base["means"])[0, :, :2], torch.zeros(20, 2), atol=1e-4)
    assert (lifted["means"] - base["means"])[0, :, 2].min() > 0.1  # both triangles face +z at rest


def test_densification_keeps_parents_and_state_dict_round_trips():
    from emogs.train.config import DensifyConfig
    from emogs.train.densify import DensifyStats, densify_and_prune

    m, _ = _mesh_head()
    g = m.gaussians
    opt = torch.optim.Adam([dict(params=[getattr(g, k)], name=k) for k in GaussianSet.PARAMS])
    stats = DensifyStats.zeros(len(g), "cpu")
    stats.grad_accum[[1, 12, 15]] = 1.0
    stats.count[:] = 1
    before = g.parent.clone()
    info = densify_and_prune(g, opt, stats, DensifyConfig(grad_threshold=0.5, percent_dense=10.0, max_grow=1.0,
                                                          max_scale=100.0, min_opacity=0.0),
                             extent=1.0, gen=torch.Generator().manual_seed(0))
    assert info["clone"] == 3 and len(g) == 23
    assert g.parent.tolist() == before.tolist() + [before[1].item(), before[12].item(), before[15].item()]
    assert g.parent_scale.shape == (23,) and g.zone.shape == (23,)
    st = m.state_dict()
    m2 = MeshHead.from_state_dict(m.cfg, st)
    audio, au, e = torch.randn(2, 16, 12), torch.rand(2, 9, 17), torch.rand(2, 2)
    with torch.no_grad():
        assert torch.equal(m.deformed(audio, au, e)["means"], m2.deformed(audio, au, e)["means"])


def test_free_gaussians_are_refused_by_the_mesh_head():
    cfg = ModelConfig(audio_dim=12, token_dim=16, hidden=32, triplane_channels=4, triplane_res=8, citae_hidden=8)
    with pytest.raises(ValueError, match="bound"):
        MeshHead(cfg, GaussianSet(4), torch.zeros(3, 3), torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]]))


def test_mesh_head_renders_and_gives_gradients_to_the_local_parameters():
    m, _ = _mesh_head()
    w2c = torch.eye(4)[None].clone()
    w2c[0, :3, 3] = torch.tensor([-2.0, -0.5, 8.0])
    K = torch.tensor([[[60.0, 0, 24], [0, 60.0, 24], [0, 0, 1]]])
    out = m(w2c, K, torch.randn(1, 16, 12), torch.rand(1, 9, 17), 48, 48, None, backend="torch",
            expression=torch.tensor([[0.5, 0.5]]))
    assert out.rgb.shape == (1, 48, 48, 3) and float(out.alpha.detach().max()) > 0.1
    (out.rgb.mean() + out.alpha.mean()).backward()
    assert m.gaussians.means.grad.abs().sum() > 0 and m.gaussians.color_logit.grad.abs().sum() > 0
