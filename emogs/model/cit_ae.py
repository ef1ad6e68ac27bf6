"""AU token encoders.

`CITAE` (channel-independent temporal AU encoder): a centred window of T frames of K AU intensities
-> K AU tokens of dim d, one per AU channel. Each channel's 1-D time series is filtered on its own by
a temporal conv stack whose weights are shared across channels (channels never mix: the batch and
channel axes are folded together before the convs), then modulated by a per-AU FiLM scale and given a
learned per-AU identity embedding. Changing AU k's input changes token k only.

`PlainAUEncoder` (the "+AU" ablation without CIT-AE): the flattened window goes through one MLP that
mixes all channels and frames, then is split into K tokens.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class CITAE(nn.Module):
    def __init__(self, num_aus: int = 17, window: int = 9, dim: int = 64, hidden: int = 32) -> None:
        super().__init__()
        self.num_aus, self.window, self.dim = num_aus, window, dim
        self.temporal = nn.Sequential(  # applied to each (sample, channel) series separately
            nn.Conv1d(1, hidden, 3, padding=1), nn.GELU(),
            nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU(),
        )
        self.centre_w = nn.Parameter(torch.zeros(window))  # learned temporal pooling logits (T,)
        self.proj = nn.Linear(hidden + 1, dim)
        self.au_id = nn.Parameter(torch.randn(num_aus, dim) * 0.02)  # (K, d) per-AU identity embedding
        self.au_scale = nn.Parameter(torch.ones(num_aus, dim))  # (K, d) per-AU FiLM scale

    def forward(self, au_window: torch.Tensor) -> torch.Tensor:
        """au_window (B, T, K) in [0, 1] -> AU tokens (B, K, d)."""
        b, t, k = au_window.shape
        x = au_window.permute(0, 2, 1).reshape(b * k, 1, t)  # (B*K, 1, T): every channel its own series
        h = self.temporal(x)  # (B*K, hidden, T)
        w = torch.softmax(self.centre_w[:t], 0)  # (T,)
        pooled = (h * w).sum(-1)  # (B*K, hidden)
        centre = x[:, 0, t // 2: t // 2 + 1]  # (B*K, 1) the current frame's raw intensity
        tok = self.proj(torch.cat([pooled, centre], -1)).reshape(b, k, self.dim)  # (B, K, d)
        return tok * self.au_scale + self.au_id


class PlainAUEncoder(nn.Module):
    """Channel-mixing baseline: (B, T, K) -> MLP over the flattened window -> (B, K, d)."""

    def __init__(self, num_aus: int = 17, window: int = 9, dim: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.num_aus, self.dim = num_aus, dim
        self.mlp = nn.Sequential(nn.Linear(num_aus * window, hidden), nn.GELU(), nn.Linear(hidden, num_aus * dim))
        self.au_id = nn.Parameter(torch.randn(num_aus, dim) * 0.02)

    def forward(self, au_window: torch.Tensor) -> torch.Tensor:
        b = au_window.shape[0]
        return self.mlp(au_window.reshape(b, -1)).reshape(b, self.num_aus, self.dim) + self.au_id
