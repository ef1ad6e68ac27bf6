"""Training losses: photometric (L1, D-SSIM, LPIPS), lip region, head alpha, RAAR, mouth depth; the expert
losses (L_sync, L_AU) come in as extra terms from `emogs.train.experts`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from emogs.eval.image import ssim
from emogs.model.szpab import TOKEN_AU, TOKEN_AUDIO, ZONE_AUDIO, ZONE_EXPRESSION, ZONE_MOUTH
from emogs.train.config import LossConfig


@dataclass
class LossContext:
    """What a loss term may look at for one training step."""
    pred: torch.Tensor  # (B, H, W, 3) composited render
    target: torch.Tensor  # (B, H, W, 3) ground truth
    batch: dict[str, torch.Tensor]  # the step's batch (labels, lip_mask, head_mask, audio, au_window, ...)
    out: Any  # emogs.model.head.HeadOutput
    model: Any  # emogs.model.head.TalkingHead
    stage: str  # "coarse" | "fine"


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |a - b| over pixels where mask (B, H, W, 1) > 0; 0 when the mask is empty."""
    w = mask.expand_as(a)
    return ((a - b).abs() * w).sum() / w.sum().clamp_min(1.0)


def dssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 on (B, H, W, 3) images."""
    return (1 - ssim(a, b)) / 2


def raar_loss(attn: torch.Tensor, zone: torch.Tensor, token_type: torch.Tensor,
              margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Region-aware attention regularisation on mean attention mass.

    attn (B, N, L) rows summing to 1, zone (N,), token_type (L,). Upper face (expression zone):
    relu(margin - (m_AU - m_audio)); mouth (lips + interior): relu(margin - (m_audio - m_AU)), with m the
    attention mass on that token type averaged over the zone's Gaussians and the batch.
    Returns (L_upper, L_mouth); a zone without Gaussians contributes 0."""
    m_audio = attn[..., token_type == TOKEN_AUDIO].sum(-1)  # (B, N)
    m_au = attn[..., token_type == TOKEN_AU].sum(-1)  # (B, N)
    zero = attn.new_zeros(())
    upper = zone == ZONE_EXPRESSION
    mouth = (zone == ZONE_AUDIO) | (zone == ZONE_MOUTH)
    l_up = F.relu(margin - (m_au[:, upper].mean() - m_audio[:, upper].mean())) if upper.any() else zero
    l_mo = F.relu(margin - (m_audio[:, mouth].mean() - m_au[:, mouth].mean())) if mouth.any() else zero
    return l_up, l_mo


def mouth_depth_loss(means: torch.Tensor, zone: torch.Tensor, gap: float = 0.3) -> torch.Tensor:
    """Keep mouth-interior Gaussians behind the lips along the canonical forward axis (+z, cm):
    mean relu(z_interior - (mean z_lips - gap)). means (B, N, 3)."""
    inner, lips = zone == ZONE_MOUTH, zone == ZONE_AUDIO
    if not inner.any() or not lips.any():
        return means.new_zeros(())
    z_lip = means[:, lips, 2].mean(1, keepdim=True)  # (B, 1)
    return F.relu(means[:, inner, 2] - (z_lip - gap)).mean()


def lpips_loss(a: torch.Tensor, b: torch.Tensor, net: str = "alex") -> torch.Tensor:
    from emogs.eval.lpips import get_lpips

    return get_lpips(net, a.device)(a, b).mean()


def compute_losses(ctx: LossContext, cfg: LossConfig,
                   extra: dict[str, tuple[float, torch.Tensor]] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the active terms for this stage -> (total, {term: value}). RAAR applies when its
    weight is > 0 and the model has AU tokens. `extra`: further {term: (weight, value)} computed elsewhere
    (the expert losses L_sync / L_AU, `emogs.train.experts.expert_terms`)."""
    pred, gt, batch = ctx.pred, ctx.target, ctx.batch
    fine = ctx.stage == "fine"
    terms: dict[str, tuple[float, torch.Tensor]] = {
        "l1": (cfg.l1, (pred - gt).abs().mean()),
        "dssim": (cfg.dssim, dssim(pred, gt)),
        "lip": (cfg.lip * (cfg.fine_lip_boost if fine else 1.0), masked_l1(pred, gt, batch["lip_mask"])),
        "alpha": (cfg.alpha, (ctx.out.alpha - batch["head_mask"]).abs().mean()),
        "offset": (cfg.offset_reg, (ctx.out.offsets[..., :3] ** 2).mean()),
    }
    if cfg.raar > 0 and ctx.model.use_au:
        up, mo = raar_loss(ctx.out.attn, ctx.model.gaussians.zone, ctx.out.token_type, cfg.raar_margin)
        terms["raar"] = (cfg.raar, up + mo)
    if fine and cfg.lpips > 0:
        terms["lpips"] = (cfg.lpips, lpips_loss(pred, gt, cfg.lpips_net))
    if fine and cfg.mouth_depth > 0 and not ctx.model.gaussians.bound:  # a mesh head's mouth is the mesh's
        terms["mouth_depth"] = (cfg.mouth_depth, mouth_depth_loss(ctx.out.means, ctx.model.gaussians.zone))
    terms.update(extra or {})
    total = sum(w * v for w, v in terms.values())
    return total, {k: float(v.detach()) for k, (_, v) in terms.items()}
