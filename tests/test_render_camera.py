"""Camera helpers."""
from __future__ import annotations

import math

import torch

from emogs.render.camera import intrinsics_from_fov, look_at, orbit_cameras


def test_look_at_is_opencv_and_rigid():
    eye, target = torch.tensor([1.0, -2.0, -5.0]), torch.tensor([0.5, 0.3, 1.0])
    M = look_at(eye, target)
    R = M[:3, :3]
    torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.det(R) > 0
    cam = lambda p: (M @ torch.cat([p, torch.ones(1)]))[:3]  # noqa: E731
    torch.testing.assert_close(cam(eye), torch.zeros(3), atol=1e-5, rtol=0)
    t = cam(target)
    assert abs(t[0]) < 1e-5 and abs(t[1]) < 1e-5 and t[2] > 0  # target straight ahead (+z)
    # world "up" is -y: a point above the target projects to negative image y
    assert cam(target + torch.tensor([0.0, -1.0, 0.0]))[1] < 0


def test_intrinsics_and_orbit():
    K = intrinsics_from_fov(200, 100, 60.0)
    assert math.isclose(K[1, 1].item(), 50 / math.tan(math.radians(30)), rel_tol=1e-6)
    assert K[0, 2] == 100 and K[1, 2] == 50 and K[0, 0] == K[1, 1]
    cams = orbit_cameras(5, 10.0, arc_deg=90)
    assert cams.shape == (5, 4, 4)
    # every camera sees the origin on its optical axis at distance 10
    o = cams[:, :3, 3]
    torch.testing.assert_close(o, torch.tensor([0.0, 0.0, 10.0]).expand(5, 3), atol=1e-5, rtol=0)
