"""Deformation network: per-Gaussian, per-frame offsets of position, rotation, scale, colour, opacity."""
from __future__ import annotations

import torch
import torch.nn as nn

OUT_DIM = 14  # dxyz 3 | dquat 4 | dlog_scale 3 | dcolor_logit 3 | dopacity_logit 1


class DeformNet(nn.Module):
    """[spatial feature (N, F), attention output (B, N, d)] -> offsets (B, N, 14).

    The last layer starts at zero, so training starts from the canonical Gaussians."""

    def __init__(self, feat_dim: int, token_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(feat_dim + token_dim, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, OUT_DIM),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def feature_part(self, feat: torch.Tensor) -> torch.Tensor:
        """The first layer's per-Gaussian term W_f f + b: (N, F) -> (N, hidden). Constant at inference."""
        lin = self.mlp[0]
        return feat @ lin.weight[:, : feat.shape[-1]].T + lin.bias

    def forward(self, feat: torch.Tensor, att: torch.Tensor, feat_h: torch.Tensor | None = None) -> torch.Tensor:
        """feat (N, F), att (B, N, d) -> (B, N, 14). The first layer is applied to the two parts separately
        (identical to a Linear on their concatenation, without building (B, N, F+d)); `feat_h` is a cached
        `feature_part(feat)`."""
        w = self.mlp[0].weight  # (hidden, F + d)
        nf = feat.shape[-1]
        fh = self.feature_part(feat) if feat_h is None else feat_h  # (N, hidden)
        h = fh[None] + att @ w[:, nf:].T  # (B, N, hidden)
        return self.mlp[1:](h)
