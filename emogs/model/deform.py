"""Deformation network: per-Gaussian, per-frame offsets of position, rotation, scale, colour, opacity."""
from __future__ import annotations

import torch
import torch.nn as nn

OUT_DIM = 14  # dxyz 3 | dquat 4 | dlog_scale 3 | dcolor_logit 3 | dopacity_logit 1


class PoseEncoder(nn.Module):
    """world_to_cam (B, 4, 4) -> (B, P): rotation entries and translation (cm / 50)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(12, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, w2c: torch.Tensor) -> torch.Tensor:
        x = torch.cat([w2c[:, :3, :3].reshape(-1, 9), w2c[:, :3, 3] / 50.0], -1)  # (B, 12)
        return self.mlp(x)


class DeformNet(nn.Module):
    """[spatial feature (N, F), attention output (B, N, d), pose (B, P)] -> offsets (B, N, 14).

    The last layer starts at zero, so training starts from the canonical Gaussians."""

    def __init__(self, feat_dim: int, token_dim: int, pose_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(feat_dim + token_dim + pose_dim, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, OUT_DIM),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, feat: torch.Tensor, att: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        b, n = att.shape[:2]
        x = torch.cat([feat[None].expand(b, -1, -1), att, pose[:, None].expand(-1, n, -1)], -1)  # (B, N, F+d+P)
        return self.mlp(x)
