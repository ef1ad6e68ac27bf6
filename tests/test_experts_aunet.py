"""emogs.experts.aunet: the AU predictor behind the AU-consistency loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from emogs.experts.aunet import AUNet, AUNetConfig, au_consistency_loss, face_crops, load_aunet


def test_shipped_weights_load_small_and_described():
    from emogs.experts.weights import load_info, weights_path
    from emogs.face.aus import AU_NAMES

    p = weights_path("aunet")
    assert p.stat().st_size < 8e6
    info = load_info(p)
    assert info["au_names"] == list(AU_NAMES)
    for k in ("config", "train_clips", "held_out_identities", "validation", "seed"):
        assert k in info, k
    assert {"acosta", "macron", "W011"} <= set(info["held_out_identities"])
    assert not any(c.startswith(("acosta", "macron", "W011")) for c in info["train_clips"])
    net = load_aunet()
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_tiny_net_loss_is_l1_and_reaches_pixels():
    torch.manual_seed(0)
    net = AUNet(AUNetConfig(width=4)).eval()
    frames = torch.rand(2, 160, 150, 3, requires_grad=True)
    aff = torch.tensor([[1.2, 0.0, 5.0], [0.0, 1.2, 10.0]]).expand(2, 2, 3)
    crops = face_crops(frames, aff)
    assert crops.shape == (2, 112, 112, 3)
    target = torch.rand(2, 17)
    loss = au_consistency_loss(net, crops, target)
    assert float(loss.detach()) == pytest.approx(float((net(crops) - target).abs().mean().detach()), rel=1e-6)
    loss.backward()
    assert frames.grad is not None and frames.grad.abs().sum() > 0
    w = torch.zeros(17)
    w[3] = 1.0
    with torch.no_grad():
        assert float(au_consistency_loss(net, crops, target, w)) == pytest.approx(
            float((net(crops) - target)[:, 3].abs().mean()), rel=1e-5)


def test_shipped_net_follows_the_mouth_on_a_held_out_clip(shared_data):
    """On acosta (held out), AUNet's jaw / lips-part AUs follow the tracks measured on the same frames."""
    from emogs.experts.crops import FACE, crop_affines
    from emogs.face.analyze import analyze_frames
    from emogs.face.aus import AU_NAMES
    from emogs.io.media import read_frames

    frames = np.stack(list(read_frames(shared_data / "video" / "acosta_71s.mp4", fps=25, max_seconds=6)))
    res = analyze_frames(frames, 25.0, total=len(frames))
    ok = res["success"]
    net = load_aunet()
    aff = crop_affines(res["landmarks"][ok], FACE)
    with torch.no_grad():
        pred = net(face_crops(torch.from_numpy(frames[ok]).float() / 255.0, aff)).numpy()
    tgt = res["aus"][ok]
    for au in ("AU25", "AU26"):
        j = AU_NAMES.index(au)
        r = np.corrcoef(pred[:, j], tgt[:, j])[0, 1]
        assert r > 0.5, (au, r)
    assert np.abs(pred - tgt).mean() < 0.15
