"""Real spherical harmonics (degree <= 4) in the 3DGS / gsplat convention."""
from __future__ import annotations

import torch
from torch import Tensor

C0 = 0.28209479177387814  # Y_0^0; the DC coefficient f_dc = (rgb - 0.5) / C0


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """RGB in [0, 1] (..., 3) -> DC SH coefficient (..., 3) so that sh_to_rgb at degree 0 gives rgb back."""
    return (rgb - 0.5) / C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    """Inverse of `rgb_to_sh0`."""
    return sh0 * C0 + 0.5


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """Real SH basis values at unit directions.

    dirs (..., 3) unit vectors -> (..., (degree+1)^2), ordered as in 3DGS (Sloan's fast evaluation).
    """
    if not 0 <= degree <= 4:
        raise ValueError(f"sh degree must be in [0, 4], got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        a = 0.48860251190292
        out += [-a * y, a * z, -a * x]
    if degree >= 2:
        z2 = z * z
        tb = -1.092548430592079 * z
        ta = 0.5462742152960395
        c1, s1 = x * x - y * y, 2 * x * y
        out += [ta * s1, tb * y, 0.9461746957575601 * z2 - 0.3153915652525201, tb * x, ta * c1]
    if degree >= 3:
        tc = -2.285228997322329 * z2 + 0.4570457994644658
        tb = 1.445305721320277 * z
        ta = -0.5900435899266435
        c2, s2 = x * c1 - y * s1, x * s1 + y * c1
        out += [ta * s2, tb * s1, tc * y, z * (1.865881662950577 * z2 - 1.119528997770346), tc * x, tb * c1, ta * c2]
    if degree >= 4:
        td = z * (-4.683325804901025 * z2 + 2.007139630671868)
        tc = 3.31161143515146 * z2 - 0.47308734787878
        tb = -1.770130769779931 * z
        ta = 0.6258357354491763
        c3, s3 = x * c2 - y * s2, x * s2 + y * c2
        p20 = 1.984313483298443 * z2 * (1.865881662950577 * z2 - 1.119528997770346) + \
            -1.006230589874905 * (0.9461746957575601 * z2 - 0.3153915652525201)
        out += [ta * s3, tb * s2, tc * s1, td * y, p20, td * x, tc * c1, tb * c2, ta * c3]
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """View-dependent colour as gsplat: sum_k Y_k(dir) c_k + 0.5, clamped at 0.

    dirs (..., 3) (need not be unit), coeffs (..., K, 3) with K >= (degree+1)^2 -> (..., 3).
    """
    nb = (degree + 1) ** 2
    if coeffs.shape[-2] < nb:
        raise ValueError(f"sh degree {degree} needs {nb} coefficients, got {coeffs.shape[-2]}")
    d = torch.nn.functional.normalize(dirs, dim=-1)
    basis = sh_bases(degree, d)  # (..., nb)
    rgb = (basis[..., None] * coeffs[..., :nb, :]).sum(dim=-2)
    return torch.clamp_min(rgb + 0.5, 0.0)
