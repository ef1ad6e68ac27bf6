"""3DGS PLY export / import."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from emogs.errors import InputError
from emogs.render.ply import load_ply, save_ply


def _gaussians(n: int, k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    return (torch.randn(n, 3, generator=g), quats, torch.rand(n, 3, generator=g) * 0.1 + 1e-3,
            torch.rand(n, generator=g) * 0.98 + 0.01, torch.randn(n, k, 3, generator=g))


@pytest.mark.parametrize("k", [1, 16])
def test_ply_round_trip(tmp_path, k):
    means, quats, scales, opac, sh = _gaussians(100, k)
    path = tmp_path / "head.ply"
    save_ply(path, means, quats, scales, opac, sh)
    out = load_ply(path)
    torch.testing.assert_close(out["means"], means)
    torch.testing.assert_close(out["quats"], quats)
    torch.testing.assert_close(out["scales"], scales, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out["opacities"], opac, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["sh"], sh)
    assert [p.name for p in tmp_path.iterdir()] == ["head.ply"]  # atomic write left no temp file


def test_ply_layout_is_standard_3dgs(tmp_path):
    """Header names/order, float32 little endian, f_rest channel-major, logit opacity, log scale."""
    means, quats, scales, opac, sh = _gaussians(3, 4)
    path = tmp_path / "g.ply"
    save_ply(path, means, quats, scales, opac, sh)
    raw = path.read_bytes()
    head, body = raw.split(b"end_header\n", 1)
    lines = head.decode().splitlines()
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 3"]
    names = [ln.split()[2] for ln in lines if ln.startswith("property float")]
    assert names == (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] +
                     [f"f_rest_{i}" for i in range(9)] + ["opacity", "scale_0", "scale_1", "scale_2",
                                                          "rot_0", "rot_1", "rot_2", "rot_3"])
    data = np.frombuffer(body, dtype="<f4").reshape(3, len(names))
    col = {n: data[:, i] for i, n in enumerate(names)}
    np.testing.assert_allclose(col["f_rest_0"], sh[:, 1, 0].numpy())  # red of band-1 coefficient 1
    np.testing.assert_allclose(col["f_rest_3"], sh[:, 1, 1].numpy())  # then green
    np.testing.assert_allclose(col["f_rest_8"], sh[:, 3, 2].numpy())
    np.testing.assert_allclose(col["opacity"], torch.log(opac / (1 - opac)).numpy(), rtol=1e-5)
    np.testing.assert_allclose(col["scale_2"], torch.log(scales[:, 2]).numpy(), rtol=1e-5)
    np.testing.assert_allclose(col["rot_0"], quats[:, 0].numpy())


def test_ply_rejects_non_gaussian_files(tmp_path):
    p = tmp_path / "mesh.ply"
    p.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n"
                  b"property float y\nproperty float z\nend_header\n" + np.zeros(3, "<f4").tobytes())
    with pytest.raises(InputError):
        load_ply(p)
    with pytest.raises(InputError):
        load_ply(tmp_path / "missing.ply")
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"not a ply")
    with pytest.raises(InputError):
        load_ply(bad)
