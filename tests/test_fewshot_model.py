"""EmoTaG's head (emogs.model.emotag) on small synthetic meshes: the shared triangle-local layout lands on
another person's mesh, the motion gate stays in [0, 1], the identity code changes the output."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from emogs.model.config import ModelConfig
from emogs.model.emotag import EmoTagHead, layout_on_mesh, transfer_layout
from emogs.model.gaussians import GaussianSet
from emogs.model.szpab import ZONE_EXPRESSION


def _grid_mesh(n: int = 6, bump: float = 0.0, scale: float = 1.0):
    """A bumpy (n x n) grid in z = 10 cm: vertices (V, 3), triangles (T, 3), and 3 expression shapes."""
    ys, xs = np.meshgrid(np.linspace(-3, 3, n), np.linspace(-3, 3, n), indexing="ij")
    v = np.stack([xs * scale, ys * scale, 10 + bump * np.sin(xs) * np.cos(ys)], -1).reshape(-1, 3)
    tris = []
    for i in range(n - 1):
        for j in range(n - 1):
            a = i * n + j
            tris += [(a, a + 1, a + n), (a + 1, a + n + 1, a + n)]
    rng = np.random.default_rng(1)
    basis = rng.normal(0, 0.2, (3, len(v), 3))
    return (torch.tensor(v, dtype=torch.float32), torch.tensor(tris), torch.tensor(basis, dtype=torch.float32))


def _layout(tris: torch.Tensor, n: int = 64, seed: int = 0) -> GaussianSet:
    g = GaussianSet(n, bound=True)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        g.parent.copy_(torch.randint(len(tris), (n,), generator=gen))
        g.means.copy_(torch.rand(n, 3, generator=gen) * 0.4 - 0.2)
        g.color_logit.copy_(torch.randn(n, 3, generator=gen))
        g.zone.fill_(ZONE_EXPRESSION)
    return g


def _cfg(**kw) -> ModelConfig:
    base = dict(kind="emotag", num_face=10, num_shell=0, num_mouth=0, token_dim=16, heads=2, triplane_channels=4,
                triplane_res=8, hidden=16, citae_hidden=8, audio_dim=8, audio_window=2, au_window=3, num_aus=17,
                id_dim=4, grmn_hidden=16)
    base.update(kw)
    return ModelConfig(**base)


def test_layout_lands_on_another_persons_mesh():
    v_a, tris, basis = _grid_mesh()
    v_b, _, _ = _grid_mesh(bump=1.5, scale=1.3)  # another identity: same topology, other shape
    g = _layout(tris)
    e = torch.zeros(3)
    gb = transfer_layout(g, v_b, basis, tris, e)
    x_a, x_b = layout_on_mesh(g, v_a, basis, tris, e), layout_on_mesh(gb, v_b, basis, tris, e)
    # each Gaussian stays by its parent triangle on the new mesh: its distance to the new parent's centroid,
    # in units of that triangle's size, is what it was on the old mesh
    def rel(x, v):
        t = v[tris[g.parent]]
        c = t.mean(1)
        k = torch.linalg.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]).norm(dim=-1).sqrt()
        return (x - c).norm(dim=-1) / k
    assert torch.allclose(rel(x_a, v_a), rel(x_b, v_b), atol=1e-4)
    assert (x_a - x_b).norm(dim=-1).mean() > 0.3  # it did move with the mesh (not left where it was)
    assert torch.equal(gb.parent, g.parent) and torch.equal(gb.means, g.means)
    # parent sizes are the new mesh's
    assert not torch.allclose(gb.parent_scale, g.parent_scale)


def _head(num_identities: int = 1) -> EmoTagHead:
    v, tris, basis = _grid_mesh()
    torch.manual_seed(0)
    return EmoTagHead(_cfg(num_identities=num_identities), _layout(tris), v, basis, tris)


def _inputs(B: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, 4, 8, generator=gen), torch.rand(B, 3, 17, generator=gen)


def test_motion_gate_in_unit_interval_and_trained_by_the_motion_loss():
    m = _head()
    audio, au = _inputs(4)
    with torch.no_grad():  # push the gate's logits far both ways
        m.grmn.gate.weight.normal_(0, 50.0)
        m.grmn.residual[-1].weight.normal_(0, 1.0)
    out = m.motion(audio, au)
    g = out["gate"].detach()
    assert g.shape == (4, 3) and float(g.min()) >= 0.0 and float(g.max()) <= 1.0
    assert float(g.min()) < 0.05 and float(g.max()) > 0.95  # saturates, never leaves [0, 1]
    assert torch.allclose(out["expression"], m.expr_mean + out["base"] + g * out["residual"])
    target = torch.full((4, 3), 0.5)
    fer = torch.tensor([[0, 0, 0, 0.8, 0, 0, 0.2, 0.8]] * 4)
    loss, terms = m.auxiliary_loss(dict(audio=audio, au_window=au, expression=target, fer=fer))
    loss.backward()
    assert terms["motion"] > 0 and m.grmn.base[-1].weight.grad.abs().sum() > 0
    assert np.isfinite(terms["kl"]) and m.grmn.emotion[0].weight.grad.abs().sum() > 0  # the KL reaches the encoder
    with pytest.raises(ValueError):  # the emotion latent needs the frames' FER2013 conditioning
        m.auxiliary_loss(dict(audio=audio, au_window=au, expression=target))


def test_identity_code_changes_the_output_through_adain():
    m = _head(num_identities=2)
    audio, au = _inputs()
    with torch.no_grad():
        m.deform.mlp[-1].weight.normal_(0, 0.5)
        m.adain.weight.normal_(0, 1.0)
        m.id_code[1].add_(1.0)
    m.set_identity(0)
    a = m.deformed(audio, au)["means"]
    m.set_identity(1)
    b = m.deformed(audio, au)["means"]
    assert (a - b).abs().max() > 1e-3
    with torch.no_grad():  # with the AdaIN map at zero (as initialised) the code has no effect
        m.adain.weight.zero_()
        m.adain.bias.zero_()
    m.set_identity(0)
    c = m.deformed(audio, au)["means"]
    m.set_identity(1)
    d = m.deformed(audio, au)["means"]
    assert torch.allclose(c, d, atol=1e-6)
    with pytest.raises(ValueError):
        m.set_identity(2)


def test_per_identity_colours_and_state_round_trip():
    m = _head(num_identities=3)
    with torch.no_grad():
        m.id_color[2].fill_(2.0)
    m.set_identity(2)
    audio, au = _inputs(1)
    c2 = m.deformed(audio, au)["colors"]
    m2 = EmoTagHead.from_state_dict(m.cfg, m.state_dict())
    assert int(m2.identity) == 2
    assert torch.allclose(m2.deformed(audio, au)["colors"], c2)
    m2.set_identity(0)
    assert not torch.allclose(m2.deformed(audio, au)["colors"], c2)


def test_emotion_intensity_is_one_minus_p_neutral():
    from emogs.face.fer import FER_LABELS, emotion_condition, emotion_intensity, preset_condition

    p = np.array([[0.05, 0.0, 0.05, 0.6, 0.0, 0.1, 0.2], [0, 0, 0, 0, 0, 0, 1.0]], np.float32)  # a known FER output
    assert FER_LABELS[6] == "neutral"
    assert np.allclose(emotion_intensity(p), [0.8, 0.0])
    c = emotion_condition(p)
    assert c.shape == (2, 8) and np.allclose(c[:, :7], p) and np.allclose(c[:, 7], [0.8, 0.0])
    # a user's request: the preset's FER2013 class scaled by the intensity, e = intensity
    c, cls = preset_condition("happy", 0.7)
    assert cls == "happy" and np.isclose(c[FER_LABELS.index("happy")], 0.7) and np.isclose(c[6], 0.3)
    assert np.isclose(c[7], 0.7) and np.isclose(emotion_intensity(c[:7]), 0.7)
    assert preset_condition("surprised", 1.0)[1] == "surprise"
    c, cls = preset_condition("contempt", 1.0)  # no FER2013 class: neutral
    assert cls is None and c[6] == 1.0 and c[7] == 0.0
    with pytest.raises(ValueError):
        emotion_intensity(np.zeros(5))


def test_kl_term_is_finite_and_pulls_the_latent_to_the_prior():
    m = _head()
    m.train()
    cond = torch.tensor([[0, 0, 0, 1.0, 0, 0, 0, 1.0], [0, 0, 0, 0, 1.0, 0, 0, 1.0], [0, 0, 0, 0, 0, 0, 1.0, 0]])
    with torch.no_grad():  # a latent far from N(0, I)
        m.grmn.emotion[-1].bias.fill_(2.0)
    enc = m.grmn.emotion
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    kls = []
    for _ in range(30):
        kl = m.grmn.kl(*m.grmn.emotion_posterior(cond)).mean()
        assert torch.isfinite(kl)
        kls.append(float(kl.detach()))
        opt.zero_grad()
        kl.backward()
        opt.step()
    assert kls[-1] < 0.5 * kls[0]
    # KL(N(0, I) || N(0, I)) = 0
    assert float(m.grmn.kl(torch.zeros(1, 4), torch.zeros(1, 4))) == 0.0


def test_emotion_moves_the_residual_branch_and_heads_without_it_still_load():
    from emogs.run.migrate import migrate_config

    m = _head()
    m.eval()
    audio, au = _inputs(2)
    happy = torch.tensor([[0, 0, 0, 1.0, 0, 0, 0, 1.0]] * 2)
    # at initialisation the branch is silent (zero output layer); trained, the emotion changes what it adds
    assert torch.allclose(m.residual_motion(audio, au, happy), torch.zeros(2, 3))
    with torch.no_grad():
        m.grmn.residual[-1].weight.normal_(0, 1.0)
        m.grmn.gate.bias.fill_(2.0)
    r = m.residual_motion(audio, au, happy)
    assert r.abs().max() > 1e-3
    # nothing asked (the person's mean AUs and emotion): no change
    mean_au = m.au_mean.expand(2, 3, 17).clone()
    assert torch.allclose(m.residual_motion(audio, mean_au, None), torch.zeros(2, 3), atol=1e-6)
    # a head made before the emotion latent (emotion_dim 0; its config has no such key) loads and runs
    v, tris, basis = _grid_mesh()
    old = EmoTagHead(_cfg(emotion_dim=0), _layout(tris), v, basis, tris)
    d = {"model": {k: v for k, v in old.cfg.__dict__.items() if k != "emotion_dim"}}
    cfg = ModelConfig(**migrate_config(d, 2)["model"])
    assert cfg.emotion_dim == 0
    back = EmoTagHead.from_state_dict(cfg, old.state_dict())
    assert not back.has_emotion and not any(k.startswith("grmn.emotion") for k in back.state_dict())
    assert back.motion(audio, au)["expression"].shape == (2, 3)
    assert back.residual_motion(audio, au, None).shape == (2, 3)
