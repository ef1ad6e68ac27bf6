"""Unit tests of the model pieces: CIT-AE channel independence, SZ-PAB bias, RAAR hinge values, variants."""
from __future__ import annotations

import pytest
import torch

from emogs.model.cit_ae import CITAE, PlainAUEncoder
from emogs.model.config import VARIANTS, ModelConfig
from emogs.model.gaussians import GaussianSet
from emogs.model.head import TalkingHead
from emogs.model.szpab import (SZPAB, TOKEN_AU, TOKEN_AUDIO, ZONE_AUDIO, ZONE_EXPRESSION, ZONE_MOUTH, ZONE_OTHER,
                               ZONE_SYNERGY, bias_table)
from emogs.train.losses import raar_loss


def test_citae_changing_one_channel_changes_only_its_token():
    torch.manual_seed(0)
    enc = CITAE(num_aus=17, window=9, dim=32, hidden=16)
    x = torch.rand(2, 9, 17)
    y = x.clone()
    y[:, :, 5] = torch.rand(2, 9)  # AU channel 5 only
    a, b = enc(x), enc(y)  # (2, 17, 32)
    diff = (a - b).abs().amax(dim=(0, 2))  # (17,)
    assert diff[5] > 1e-3
    assert torch.all(diff[torch.arange(17) != 5] == 0)


def test_plain_au_encoder_mixes_channels():
    """The '+AU' baseline is not channel independent (shows the test above can fail)."""
    torch.manual_seed(0)
    enc = PlainAUEncoder(num_aus=17, window=9, dim=32)
    x = torch.rand(1, 9, 17)
    y = x.clone()
    y[:, :, 5] += 0.5
    diff = (enc(x) - enc(y)).abs().amax(dim=(0, 2))
    assert (diff[torch.arange(17) != 5] > 0).sum() > 10


def _attention(bias_au_in_mouth: float):
    torch.manual_seed(0)
    att = SZPAB(query_dim=8, dim=16, heads=2, bias=bias_table(bias_au_in_mouth, -4.0))
    n_audio, n_au = 4, 17
    zone = torch.tensor([ZONE_AUDIO, ZONE_MOUTH, ZONE_EXPRESSION, ZONE_SYNERGY])
    ttype = torch.cat([torch.full((n_audio,), TOKEN_AUDIO), torch.full((n_au,), TOKEN_AU)])
    out, attn = att(torch.randn(4, 8), torch.randn(3, n_audio + n_au, 16), zone, ttype)
    return out, attn, ttype


def test_szpab_suppresses_au_tokens_in_mouth_zone():
    out, attn, ttype = _attention(-1e4)
    assert out.shape == (3, 4, 16) and attn.shape == (3, 4, 21)
    assert torch.allclose(attn.sum(-1), torch.ones(3, 4))
    au_mass = attn[..., ttype == TOKEN_AU].sum(-1)  # (B, N)
    assert au_mass[:, :2].max() < 1e-6  # lips + mouth interior: AU weight ~0
    assert au_mass[:, 3].min() > 0.05  # synergy: cooperative, AU tokens keep weight
    _, attn0, _ = _attention(0.0)
    assert attn0[..., ttype == TOKEN_AU].sum(-1)[:, :2].min() > 0.05  # without the bias they matter


def test_szpab_suppresses_audio_in_upper_face_and_can_be_disabled():
    torch.manual_seed(0)
    b = bias_table(-1e4, -1e4)
    ttype = torch.tensor([TOKEN_AUDIO] * 3 + [TOKEN_AU] * 5)
    zone = torch.tensor([ZONE_EXPRESSION] * 2)
    on = SZPAB(8, 16, 2, b, use_bias=True)
    _, attn = on(torch.randn(2, 8), torch.randn(1, 8, 16), zone, ttype)
    assert attn[..., ttype == TOKEN_AUDIO].sum(-1).max() < 1e-6
    off = SZPAB(8, 16, 2, b, use_bias=False)
    off.load_state_dict(on.state_dict())
    _, attn = off(torch.randn(2, 8), torch.randn(1, 8, 16), zone, ttype)
    assert attn[..., ttype == TOKEN_AUDIO].sum(-1).min() > 0.05


def test_raar_hinge_values_on_hand_made_attention():
    ttype = torch.tensor([TOKEN_AUDIO, TOKEN_AUDIO, TOKEN_AU, TOKEN_AU])
    zone = torch.tensor([ZONE_EXPRESSION, ZONE_EXPRESSION, ZONE_AUDIO, ZONE_MOUTH, ZONE_SYNERGY])
    attn = torch.tensor([[
        [0.1, 0.1, 0.4, 0.4],  # upper: AU 0.8, audio 0.2
        [0.2, 0.2, 0.3, 0.3],  # upper: AU 0.6, audio 0.4  -> mean AU 0.7, audio 0.3, diff 0.4
        [0.3, 0.2, 0.25, 0.25],  # lips: audio 0.5, AU 0.5
        [0.4, 0.3, 0.2, 0.1],  # mouth interior: audio 0.7, AU 0.3 -> mean audio 0.6, AU 0.4, diff 0.2
        [1.0, 0.0, 0.0, 0.0],  # synergy: ignored
    ]])
    up, mo = raar_loss(attn, zone, ttype, margin=0.3)
    assert up.item() == pytest.approx(0.0, abs=1e-6)  # 0.3 - 0.4 < 0
    assert mo.item() == pytest.approx(0.1, abs=1e-6)  # 0.3 - 0.2
    up, mo = raar_loss(attn, zone, ttype, margin=0.5)
    assert up.item() == pytest.approx(0.1, abs=1e-6)
    assert mo.item() == pytest.approx(0.3, abs=1e-6)
    # the wrong way round is penalised: swap token types
    up, mo = raar_loss(attn, zone, 1 - ttype, margin=0.0)
    assert up.item() == pytest.approx(0.4, abs=1e-6) and mo.item() == pytest.approx(0.2, abs=1e-6)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_build_and_give_gradients(variant):
    torch.manual_seed(0)
    cfg = ModelConfig(variant=variant, audio_dim=12, token_dim=16, hidden=32, triplane_channels=4,
                      triplane_res=8, citae_hidden=8)
    g = GaussianSet.from_arrays(torch.randn(50, 3).numpy(), torch.rand(50, 3).numpy(), torch.full((50,), 0.2).numpy(),
                                torch.randint(0, 5, (50,)).numpy())
    m = TalkingHead(cfg, g)
    flags = VARIANTS[variant]
    assert hasattr(m, "au_enc") == flags["use_au"]
    if flags["use_au"]:
        assert isinstance(m.au_enc, CITAE) == flags["use_citae"]
    assert m.szpab.use_bias == flags["use_szpab"]
    w2c = torch.eye(4)[None].clone()
    w2c[0, 2, 3] = 10.0
    d = m.deformed(torch.randn(1, 16, 12), torch.rand(1, 9, 17))
    toks = d["attn"].shape[-1]
    assert toks == 8 + (17 if flags["use_au"] else 0)
    # the last deform layer starts at zero: a fresh model renders the canonical Gaussians
    assert torch.equal(d["means"][0], g.means)
    loss = d["means"].sum() + d["colors"].sum()
    loss.backward()
    assert m.deform.mlp[-1].weight.grad.abs().sum() > 0


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="unknown variant"):
        ModelConfig(variant="nope").flags()


def _au_model(bias: float = -30.0) -> TalkingHead:
    torch.manual_seed(0)
    cfg = ModelConfig(audio_dim=12, token_dim=16, hidden=32, triplane_channels=4, triplane_res=8,
                      citae_hidden=8, bias_au_in_mouth=bias, bias_audio_in_upper=bias)
    zones = torch.tensor([ZONE_EXPRESSION] * 20 + [ZONE_AUDIO] * 20 + [ZONE_MOUTH] * 10)
    g = GaussianSet.from_arrays(torch.randn(50, 3).numpy(), torch.rand(50, 3).numpy(),
                                torch.full((50,), 0.2).numpy(), zones.numpy())
    m = TalkingHead(cfg, g)
    with torch.no_grad():  # a trained-looking model: non-zero AU basis and deformation head
        m.au_basis.weight.normal_(0, 0.5)
        m.deform.mlp[-1].weight.normal_(0, 0.1)
        m.au_mean.fill_(0.3)
    return m


def test_au_basis_moves_expression_zone_and_is_gated_out_of_the_mouth():
    m = _au_model()
    w2c = torch.eye(4)[None].clone()
    w2c[0, 2, 3] = 10.0
    audio = torch.randn(1, 16, 12)
    au = torch.full((1, 9, 17), 0.3)  # the training mean: the default face
    base = m.deformed(audio, au)["means"][0]
    d = m.deformed(audio, au)
    assert torch.allclose(m.au_offsets(m.static_features()["basis"], d["attn"], d["token_type"], au),
                          torch.zeros(1, 50, 14), atol=1e-6)
    au1 = au.clone()
    au1[:, :, 0] = 1.0  # AU01 -> 1
    moved = (m.deformed(audio, au1)["means"][0] - base).norm(dim=-1)  # (50,)
    expression, lips, mouth = moved[:20], moved[20:40], moved[40:]
    assert expression.mean() > 1e-2
    assert float(lips.max()) < 1e-5 and float(mouth.max()) < 1e-5  # AU tokens' attention there is ~0


def test_au_offset_is_linear_in_intensity():
    m = _au_model()
    w2c = torch.eye(4)[None].clone()
    w2c[0, 2, 3] = 10.0
    audio = torch.randn(1, 16, 12)
    basis = m.static_features()["basis"]
    # the attention itself depends on the AU tokens, so compare the basis term with attention held fixed
    d = m.deformed(audio, torch.full((1, 9, 17), 0.3))
    fixed = [m.au_offsets(basis, d["attn"], d["token_type"], torch.full((1, 9, 17), 0.3).index_fill(2, torch.tensor([3]), v))
             for v in (0.3, 0.65, 1.0)]
    assert torch.allclose(fixed[0], torch.zeros_like(fixed[0]), atol=1e-6)
    assert torch.allclose(fixed[2], 2 * fixed[1], atol=1e-5)
    assert fixed[2].abs().sum() > 0


def test_weights_of_runs_with_the_zeroed_pose_input_load_with_the_same_output():
    """Format-1 weights carry a pose encoder and pose columns in the deformation's first layer that
    multiplied a zero input; emogs.run.migrate drops them and the head computes exactly the same."""
    from emogs.run.migrate import migrate_model_state

    m = _au_model()
    with torch.no_grad():
        m.deform.mlp[-1].weight.normal_(0, 0.1)
    audio, au = torch.randn(1, 16, 12), torch.rand(1, 9, 17)
    ref = m.deformed(audio, au)["offsets"]
    old = dict(m.state_dict())
    w = old["deform.mlp.0.weight"]
    old["deform.mlp.0.weight"] = torch.cat([w, torch.randn(w.shape[0], 4)], 1)  # 4 pose columns
    old["pose.mlp.0.weight"], old["pose.mlp.0.bias"] = torch.randn(4, 12), torch.randn(4)
    st = migrate_model_state(old, TalkingHead.feature_dim(m.cfg), m.cfg.token_dim)
    m2 = TalkingHead.from_state_dict(m.cfg, st)
    assert torch.equal(m2.deformed(audio, au)["offsets"], ref)


def test_inference_cache_matches_and_follows_parameter_updates():
    m = _au_model()
    w2c = torch.eye(4)[None].clone()
    w2c[0, 2, 3] = 10.0
    audio, au = torch.randn(2, 16, 12), torch.rand(2, 9, 17)
    w2c = w2c.expand(2, 4, 4)
    fresh = m.deformed(audio, au)["offsets"]  # grad enabled: no cache
    with torch.no_grad():
        first = m.deformed(audio, au)["offsets"]
        cached = m.deformed(audio, au)["offsets"]
        assert torch.allclose(first, fresh, atol=1e-6) and torch.equal(first, cached)
        m.au_basis.weight.add_(0.1)  # an in-place update (an optimiser step) must invalidate the cache
        after = m.deformed(audio, au)["offsets"]
    assert not torch.allclose(after, first)
    assert torch.allclose(after, m.deformed(audio, au)["offsets"], atol=1e-6)


def _other_zone_model(au_basis_zones: str, bias_au_in_other: float) -> TalkingHead:
    torch.manual_seed(0)
    cfg = ModelConfig(audio_dim=12, token_dim=16, hidden=32, triplane_channels=4, triplane_res=8,
                      citae_hidden=8, au_basis_zones=au_basis_zones, bias_au_in_other=bias_au_in_other)
    zones = torch.tensor([ZONE_EXPRESSION] * 20 + [ZONE_OTHER] * 20)
    g = GaussianSet.from_arrays(torch.randn(40, 3).numpy(), torch.rand(40, 3).numpy(),
                                torch.full((40,), 0.2).numpy(), zones.numpy())
    m = TalkingHead(cfg, g)
    with torch.no_grad():
        m.au_basis.weight.normal_(0, 0.5)
        m.au_mean.fill_(0.3)
    return m


@pytest.mark.parametrize("zones,bias,other_moves", [("face", -4.0, False), ("all", 0.0, True)])
def test_au_basis_leaves_hair_ears_neck_alone(zones, bias, other_moves):
    """The AU basis acts in the face zones only (new runs); the first runs ("all") also moved head-other
    Gaussians: the rim along the head outline in docs/control_proof.md."""
    m = _other_zone_model(zones, bias)
    w2c = torch.eye(4)[None].clone()
    w2c[0, 2, 3] = 10.0
    audio, au = torch.randn(1, 16, 12), torch.full((1, 9, 17), 0.3)
    au1 = au.clone()
    au1[:, :, 0] = 1.0
    d = m.deformed(audio, au)
    basis = m.static_features()["basis"]
    off = m.au_offsets(basis, d["attn"], d["token_type"], au1)[0].norm(dim=-1)  # (40,)
    assert off[:20].min() > 1e-3  # expression zone moves
    assert (off[20:].max() > 1e-3) == other_moves
    assert float(m.szpab.bias[ZONE_OTHER, TOKEN_AU]) == bias


def test_old_run_configs_load_with_the_settings_they_were_trained_with():
    from emogs import config as cfgio
    from emogs.run.migrate import migrate_config
    from emogs.train.config import config_from_run, cpu_config

    d = cfgio.to_dict(cpu_config())
    for k in ("au_basis_zones", "bias_au_in_other"):
        del d["model"][k]
    d["model"].update(pose_dim=8, pose_in_deform=False, variant="au")
    d["loss"].update(lip_sync=0.0, au_consistency=0.0, raar=0.01)
    old = config_from_run(migrate_config(d, format_version=1))
    assert (old.model.au_basis_zones, old.model.bias_au_in_other) == ("all", 0.0)
    assert old.loss.raar == 0.0  # format 1 applied RAAR by variant: "au" had none
    assert (ModelConfig().au_basis_zones, ModelConfig().bias_au_in_other) == ("face", -4.0)
    d["model"]["variant"] = "full"
    assert config_from_run(migrate_config(d, format_version=1)).loss.raar == 0.01
    from emogs.errors import InputError

    d["model"]["pose_in_deform"] = True
    with pytest.raises(InputError, match="no longer supports"):
        migrate_config(d, format_version=1)


def test_deform_engine_eager_matches_model_and_rejects_bad_modes():
    from emogs.model.infer import DeformEngine

    m = _au_model()
    w2c = torch.eye(4)[None].expand(3, 4, 4).clone()
    w2c[:, 2, 3] = 10.0
    audio, au = torch.randn(3, 16, 12), torch.rand(3, 9, 17)
    eng = DeformEngine(m)  # auto on CPU -> eager
    assert eng.mode == "eager"
    with torch.no_grad():
        ref = m.deformed(audio, au)
    out = eng(audio, au)
    for k in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.equal(out[k], ref[k])
    with pytest.raises(ValueError, match="needs the model on CUDA"):
        DeformEngine(m, "graph")
    with pytest.raises(ValueError, match="unknown inference mode"):
        DeformEngine(m, "fast")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["graph", "graph-bf16"])
def test_deform_engine_graph_replay_matches_eager_on_cuda(mode):
    from emogs.model.infer import DeformEngine

    m = _au_model().cuda().eval()
    w2c = torch.eye(4, device="cuda")[None].expand(2, 4, 4).clone()
    w2c[:, 2, 3] = 10.0
    eng, ref = DeformEngine(m, mode), DeformEngine(m, "eager")
    for _ in range(3):  # replays with new inputs, not the captured ones
        audio, au = torch.randn(2, 16, 12, device="cuda"), torch.rand(2, 9, 17, device="cuda")
        out, exp = eng(audio, au), ref(audio, au)
        assert eng.mode == mode
        tol = 1e-5 if mode == "graph" else 5e-2
        for k in ("means", "quats", "scales", "opacities", "colors"):
            assert torch.allclose(out[k], exp[k], atol=tol), k


def _engine_batches(dev: str, n: int = 4):
    torch.manual_seed(1)
    K = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]], device=dev)
    out = []
    for _ in range(n):
        w2c = torch.eye(4, device=dev)[None].expand(2, 4, 4).clone()
        w2c[:, 2, 3] = 10.0
        out.append((w2c, K.expand(2, 3, 3), torch.randn(2, 16, 12, device=dev), torch.rand(2, 9, 17, device=dev),
                    torch.rand(2, 32, 32, 3, device=dev)))
    return out


def _pipelined_matches_sequential(dev: str, mode: str) -> None:
    from emogs.model.infer import DeformEngine, PipelinedRenderer, render_with_engine

    m = _au_model().to(dev).eval()
    batches = _engine_batches(dev)
    seq = [render_with_engine(DeformEngine(m, "eager"), *b[:2], *b[2:4], 32, 32, b[4]) for b in batches]
    pipe = list(PipelinedRenderer(m, mode).run(iter(batches), 32, 32))
    assert len(pipe) == len(seq)
    for a, b in zip(pipe, seq):
        assert a.dtype == torch.uint8 and a.shape == (2, 32, 32, 3)
        assert (a.int() - b.int()).abs().max() <= (0 if mode != "graph-bf16" else 8)
    assert sum(int(s.float().std() > 0) for s in seq) == len(seq)  # not blank frames


def test_pipelined_renderer_matches_one_call_at_a_time_on_cpu():
    _pipelined_matches_sequential("cpu", "auto")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["eager", "graph", "graph-bf16"])
def test_pipelined_renderer_matches_one_call_at_a_time_on_cuda(mode):
    _pipelined_matches_sequential("cuda", mode)
