"""Spatial encodings of canonical Gaussian centres, in pure PyTorch.

`TriPlane`: three axis-aligned feature planes (xy, xz, yz) sampled bilinearly at the normalised point
and summed per level (multi-resolution: a coarse and a fine plane set), giving a smooth, learnable
per-point feature that the deformation network and the SZ-PAB queries read.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class TriPlane(nn.Module):
    """Multi-resolution tri-plane: points (N, 3) in the box [lo, hi] -> features (N, out_dim).

    out_dim = levels * channels (the three planes of one level are summed, levels concatenated)."""

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor, channels: int = 16, base_res: int = 32,
                 levels: int = 2, init_std: float = 0.1) -> None:
        super().__init__()
        self.register_buffer("lo", torch.as_tensor(lo, dtype=torch.float32).reshape(3).clone())
        self.register_buffer("hi", torch.as_tensor(hi, dtype=torch.float32).reshape(3).clone())
        self.channels, self.levels = channels, levels
        self.planes = nn.ParameterList([
            nn.Parameter(torch.randn(3, channels, base_res * 2 ** l, base_res * 2 ** l) * init_std)  # (3, C, R, R)
            for l in range(levels)])

    @property
    def out_dim(self) -> int:
        return self.channels * self.levels

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) world -> (N, 3) in [-1, 1] (clamped) inside the encoding box."""
        return (2 * (x - self.lo) / (self.hi - self.lo).clamp_min(1e-6) - 1).clamp(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.normalise(x)  # (N, 3)
        coords = torch.stack([u[:, [0, 1]], u[:, [0, 2]], u[:, [1, 2]]], 0)  # (3, N, 2)
        feats = []
        for planes in self.planes:
            s = F.grid_sample(planes, coords[:, :, None, :], mode="bilinear", align_corners=True)  # (3, C, N, 1)
            feats.append(s[..., 0].sum(0).t())  # (N, C)
        return torch.cat(feats, -1)  # (N, levels*C)


def fourier_features(x: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """Sin/cos positional encoding of (..., D) in [-1, 1] -> (..., D * 2 * num_freqs)."""
    freqs = (2.0 ** torch.arange(num_freqs, device=x.device, dtype=x.dtype)) * torch.pi  # (F,)
    a = x[..., None] * freqs  # (..., D, F)
    return torch.cat([a.sin(), a.cos()], -1).flatten(-2)
