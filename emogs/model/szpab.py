"""SZ-PAB: semantic-zone prior attention bias.

Cross-attention from Gaussians (queries from their spatial encoding) to the frame's tokens
[audio tokens (M), AU tokens (K)]: softmax(Q K^T / sqrt(d_h) + B) V, with an additive bias B[zone(i),
type(j)] from a fixed table: AU tokens suppressed in the mouth zones (lips, mouth interior), audio
tokens suppressed in the upper-face (expression) zone, AU tokens also suppressed in head-other (hair,
ears, neck; `bias_au_in_other`; 0 in the first runs), synergy (cheeks, chin) left cooperative. With `use_bias=False` it is plain cross-attention (the ablations without SZ-PAB).
"""
from __future__ import annotations

import torch
import torch.nn as nn

# Gaussian zones (from the dataset's label maps: label - 2, background/torso fold into OTHER)
ZONE_OTHER, ZONE_SYNERGY, ZONE_EXPRESSION, ZONE_AUDIO, ZONE_MOUTH = 0, 1, 2, 3, 4
NUM_ZONES = 5
ZONE_NAMES = ("head_other", "synergy", "expression", "audio", "mouth_interior")
TOKEN_AUDIO, TOKEN_AU = 0, 1


def label_to_zone(labels: torch.Tensor) -> torch.Tensor:
    """Dataset label ids (0 bg, 1 torso, 2 head-other, 3 synergy, 4 expression, 5 lips, 6 mouth) -> zones."""
    return (labels.long() - 2).clamp(min=0, max=NUM_ZONES - 1)


def bias_table(au_in_mouth: float, audio_in_upper: float, synergy: float = 0.0,
               other: float = 0.0, au_in_other: float = 0.0) -> torch.Tensor:
    """(NUM_ZONES, 2) additive logit bias per zone and token type (audio, AU). `au_in_other` is added to the
    AU tokens of head-other Gaussians (hair, ears, neck: no facial AU moves them)."""
    b = torch.zeros(NUM_ZONES, 2)
    b[ZONE_AUDIO, TOKEN_AU] = au_in_mouth
    b[ZONE_MOUTH, TOKEN_AU] = au_in_mouth
    b[ZONE_EXPRESSION, TOKEN_AUDIO] = audio_in_upper
    b[ZONE_SYNERGY] = synergy
    b[ZONE_OTHER] = other
    b[ZONE_OTHER, TOKEN_AU] += au_in_other
    return b


class SZPAB(nn.Module):
    """Zone-biased multi-head cross-attention, Gaussians -> tokens."""

    def __init__(self, query_dim: int, dim: int = 64, heads: int = 2, bias: torch.Tensor | None = None,
                 use_bias: bool = True) -> None:
        super().__init__()
        assert dim % heads == 0
        self.dim, self.heads, self.use_bias = dim, heads, use_bias
        self.q = nn.Linear(query_dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.register_buffer("bias", bias if bias is not None else torch.zeros(NUM_ZONES, 2))  # (Z, 2)

    def token_bias(self, zone: torch.Tensor, token_type: torch.Tensor) -> torch.Tensor:
        """zone (N,) long, token_type (L,) long -> (N, L) additive bias."""
        if not self.use_bias:
            return torch.zeros(zone.shape[0], token_type.shape[0], device=zone.device)
        return self.bias[zone][:, token_type]

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor, zone: torch.Tensor,
                token_type: torch.Tensor, q: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (N, Fq) per Gaussian, tokens (B, L, d), zone (N,), token_type (L,); `q` a cached
        `self.q(queries)` (N, d) -> out (B, N, d), attention (B, N, L) averaged over heads (rows sum to 1)."""
        n, (b, l, _) = queries.shape[0], tokens.shape
        h, dh = self.heads, self.dim // self.heads
        q = (self.q(queries) if q is None else q).reshape(n, h, dh).permute(1, 0, 2)  # (H, N, dh)
        k = self.k(tokens).reshape(b, l, h, dh).permute(0, 2, 3, 1)  # (B, H, dh, L)
        v = self.v(tokens).reshape(b, l, h, dh).permute(0, 2, 1, 3)  # (B, H, L, dh)
        logits = (q[None] @ k) / dh ** 0.5 + self.token_bias(zone, token_type)  # (B, H, N, L)
        attn = torch.softmax(logits, -1)
        o = (attn @ v).permute(0, 2, 1, 3).reshape(b, n, self.dim)  # (B, N, d)
        return self.out(o), attn.mean(1)
