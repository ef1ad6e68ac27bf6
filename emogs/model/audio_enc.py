"""Audio tokens: a window of audio feature rows (log-mel 80-d or Whisper 512-d) -> M tokens of dim d."""
from __future__ import annotations

import torch
import torch.nn as nn


class AudioEncoder(nn.Module):
    """(B, R, D) feature rows centred on the frame -> (B, M, d) tokens, M = ceil(R / 2).

    A 1-D conv stack over time (stride 2 halves the rows) plus a learned positional embedding."""

    def __init__(self, feat_dim: int, rows: int, dim: int = 64) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(feat_dim)
        self.conv = nn.Sequential(
            nn.Conv1d(feat_dim, dim, 3, padding=1), nn.GELU(),
            nn.Conv1d(dim, dim, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv1d(dim, dim, 3, padding=1),
        )
        self.num_tokens = (rows + 1) // 2
        self.pos = nn.Parameter(torch.randn(self.num_tokens, dim) * 0.02)  # (M, d)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.norm(feats).transpose(1, 2)  # (B, D, R)
        return self.conv(x).transpose(1, 2) + self.pos  # (B, M, d)
