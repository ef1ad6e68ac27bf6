"""Eyelid re-binding of a mesh head (issue 13): Gaussians that paint the lid margin on an eyeball triangle go to the
lid, and re-binding leaves the head unchanged at the default face. A synthetic eye: a UV-sphere eyeball and an upper
lid (a spherical cap in front of it, its margin at y = 0.3); expression 0 raises the lid."""
from __future__ import annotations

import numpy as np
import torch

from emogs.model.binding import triangle_frames
from emogs.model.config import ModelConfig
from emogs.model.gaussians import GaussianSet
from emogs.model.mesh_head import MeshHead, eyelid_rebind, rebind
from emogs.train.densify import quat_to_rotmat


def _grid(n_lat, n_lon, lat0, lat1, lon0, lon1, r):
    lat = np.linspace(lat0, lat1, n_lat)
    lon = np.linspace(lon0, lon1, n_lon)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    v = np.stack([r * np.cos(la) * np.sin(lo), r * np.sin(la), r * np.cos(la) * np.cos(lo)], -1).reshape(-1, 3)
    t = []
    for i in range(n_lat - 1):
        for j in range(n_lon - 1):
            a, b, c, d = i * n_lon + j, i * n_lon + j + 1, (i + 1) * n_lon + j, (i + 1) * n_lon + j + 1
            t += [[a, b, d], [a, d, c]]
    return v, np.array(t)


def _eye_head():
    ve, te = _grid(24, 32, -1.5, 1.5, -np.pi, np.pi, 1.2)  # eyeball, radius 1.2, centre 0
    vl, tl = _grid(8, 12, np.arcsin(0.3 / 1.3), 1.3, -0.9, 0.9, 1.3)  # upper lid, 1 mm in front, margin at y ~ 0.3
    verts = np.concatenate([vl, ve]).astype(np.float32)  # face (the lid) first, as in ICT
    tris = np.concatenate([tl, te + len(vl)])
    regions = {"face": (0, len(tl)), "eyeball_left": (len(tl), len(tris))}
    basis = np.zeros((1,) + verts.shape, np.float32)
    basis[0, :len(vl), 1] = 0.3  # expression 0: the lid rises 3 mm
    return verts, tris, regions, basis


def _head(parents, local, seed=0):
    verts, tris, regions, basis = _eye_head()
    n = len(parents)
    g = GaussianSet(n, bound=True)
    torch.manual_seed(seed)
    with torch.no_grad():
        g.parent.copy_(torch.as_tensor(parents))
        g.means.copy_(torch.as_tensor(local, dtype=torch.float32))
        g.quats.copy_(torch.randn(n, 4) * 0.7)
        g.log_scales.copy_(torch.randn(n, 3) * 0.3 - 1.5)
        g.opacity_logit.fill_(2.0)
    cfg = ModelConfig(audio_dim=12, token_dim=16, hidden=32, triplane_channels=4, triplane_res=8, citae_hidden=8)
    m = MeshHead(cfg, g, torch.as_tensor(verts), torch.as_tensor(basis), torch.as_tensor(tris))
    c, R, k = triangle_frames(torch.as_tensor(verts), torch.as_tensor(tris))
    g.parent_scale.copy_(k[g.parent])
    return m, regions


def _eyeball_tri(regions, verts_tris, y_lo, y_hi, z_min=0.5):
    """Eyeball triangles whose centroid has y in [y_lo, y_hi) on the front (z > z_min)."""
    verts, tris = verts_tris
    cen = verts[tris].mean(1)
    t = np.arange(*regions["eyeball_left"])
    sel = (cen[t, 1] >= y_lo) & (cen[t, 1] < y_hi) & (cen[t, 2] > z_min)
    return t[sel]


def test_rebinding_leaves_the_default_face_unchanged():
    verts, tris, regions, _ = _eye_head()
    rng = np.random.default_rng(0)
    n = 60
    parents = rng.integers(0, len(tris), n)
    m, _ = _head(parents, rng.normal(0, 0.3, (n, 3)))
    before = m.canonical_gaussians()
    idx = torch.arange(0, n, 2)
    rebind(m, idx, torch.as_tensor(rng.integers(0, len(tris), len(idx))))
    after = m.canonical_gaussians()
    assert (m.gaussians.parent[idx] != torch.as_tensor(parents)[idx]).any()
    assert torch.allclose(before["means"], after["means"], atol=1e-5)
    assert torch.allclose(quat_to_rotmat(before["quats"]), quat_to_rotmat(after["quats"]), atol=1e-5)
    assert torch.allclose(before["scales"], after["scales"], rtol=1e-5)
    k = triangle_frames(torch.as_tensor(verts), torch.as_tensor(tris))[2]
    assert torch.allclose(m.gaussians.parent_scale, k[m.gaussians.parent])


def test_lid_margin_gaussians_leave_the_eyeball_and_then_follow_the_lid():
    verts, tris, regions, _ = _eye_head()
    margin_t = _eyeball_tri(regions, (verts, tris), 0.22, 0.32)  # just below the lid margin (y 0.3), on the front
    open_t = _eyeball_tri(regions, (verts, tris), -0.2, 0.05)  # the middle of the opening
    back_t = np.arange(*regions["eyeball_left"])[verts[tris[np.arange(*regions["eyeball_left"])]].mean(1)[:, 2] < -0.8]
    float_t = _eyeball_tri(regions, (verts, tris), -0.1, 0.0)  # in the opening, but floated 1 mm off the eyeball
    parents = np.concatenate([margin_t[:8], open_t[:8], back_t[:8], float_t[:4]])
    local = np.zeros((len(parents), 3))
    k = triangle_frames(torch.as_tensor(verts), torch.as_tensor(tris))[2].numpy()
    local[-4:, 2] = 0.1 / k[float_t[:4]]  # 1 mm along the eyeball's normal
    m, _ = _head(parents, local)
    eye = lambda p: (p >= regions["eyeball_left"][0]) & (p < regions["eyeball_left"][1])
    before = m.canonical_gaussians()["means"]
    n = eyelid_rebind(m, regions, margin=0.15)
    par = m.gaussians.parent.numpy()
    assert not eye(par[:8]).any()  # the margin ones are on the lid now
    assert eye(par[8:24]).all()  # the opening and the back of the eyeball keep their eyeball triangles
    assert not eye(par[24:]).any()  # floated in front of the eyeball: the lid's
    assert n == 12
    assert torch.allclose(m.canonical_gaussians()["means"], before, atol=1e-5)
    # a lid raise (expression 0 = 1) now carries them up by the lid's 3 mm; the eyeball ones stay
    with torch.no_grad():
        z = torch.zeros(1, 16, 12), torch.zeros(1, 9, 17)
        lo, hi = m.deformed(*z, torch.tensor([[0.0]]))["means"][0], m.deformed(*z, torch.tensor([[1.0]]))["means"][0]
    dy = (hi - lo)[:, 1].numpy()
    assert np.allclose(dy[:8], 0.3, atol=0.03) and np.allclose(dy[8:24], 0.0, atol=1e-5)
    assert eyelid_rebind(m, regions, margin=0.15) == 0  # nothing left to move


def test_old_runs_keep_their_binding_and_new_runs_rebind():
    from emogs.run.migrate import migrate_config
    from emogs.train.config import build_config, config_from_run
    from emogs import config as cfgio

    new = build_config("cpu")
    assert new.densify.eyelid_margin > 0
    d = cfgio.to_dict(new)
    d["densify"].pop("eyelid_margin")
    assert config_from_run(migrate_config(d, 2)).densify.eyelid_margin == 0.0


def test_the_eyeball_under_the_lid_stays_on_the_eyeball_when_a_camera_is_given():
    """What the lid hides is the eyeball a lid raise uncovers: with a camera, only what it sees at the margin moves."""
    verts, tris, regions, _ = _eye_head()
    margin_t = _eyeball_tri(regions, (verts, tris), 0.22, 0.3)
    hidden_t = _eyeball_tri(regions, (verts, tris), 0.45, 0.8)  # under the lid (1 mm behind it)
    parents = np.concatenate([margin_t[:6], hidden_t[:6]])
    m, _ = _head(parents, np.zeros((len(parents), 3)))
    w2c = np.diag([1.0, -1.0, -1.0, 1.0])
    w2c[2, 3] = 50.0  # camera at z = 50 looking down -z (OpenCV axes)
    K = np.array([[2000.0, 0, 256], [0, 2000.0, 256], [0, 0, 1]])
    eye = lambda p: (p >= regions["eyeball_left"][0]) & (p < regions["eyeball_left"][1])
    assert eyelid_rebind(m, regions, margin=0.15, camera=(K, w2c, 512)) == 6
    par = m.gaussians.parent.numpy()
    assert not eye(par[:6]).any() and eye(par[6:]).all()
    m2, _ = _head(parents, np.zeros((len(parents), 3)))
    assert eyelid_rebind(m2, regions, margin=0.15) > 6  # without a camera the hidden ones go too
