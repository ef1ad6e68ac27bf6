"""Per-training-frame refinements that only training sees (issue 15's two levers, `TrainConfig.pose_refine`
and `TrainConfig.appearance`, both off by default):

- pose: a rigid SE(3) delta per training frame, `(rotation vector (3) rad, translation (3) world units)`,
  zero-initialised. The head moves by `x -> R (x - pivot) + pivot + t` in its own (world) frame, i.e. the frame
  renders with `world_to_cam @ T(delta)`: the same camera matrices go to the torch rasteriser and to gsplat,
  and the gradient reaches the delta through them (both backends differentiate the view matrix). The pivot
  is the head's centre (mean of the initial canonical Gaussians), so a rotation turns the head about itself,
  not about the world origin.
- appearance: a latent code per training frame, zero-initialised, decoded linearly (no bias) into a colour
  affine `c -> c + A c + b` of every Gaussian's colour. Rendering is linear in the colours (head = sum w_i c_i,
  alpha = sum w_i), so this is applied exactly to the premultiplied head render: `head + A head + b alpha`.
  Code 0 is the identity, so test frames and new audio (which render through the model alone, without this
  module) are the code-0 render.

Pure: tensors and modules; the training loop owns the optimiser groups, checkpoints them (`state_tensors`)
and the run room writes the final values (`RunFolder.write_refinements`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from emogs.mesh.fit import skew


def se3_matrix(delta: torch.Tensor, pivot: torch.Tensor) -> torch.Tensor:
    """(B, 6) deltas (rotation vector, translation) and (3,) pivot -> (B, 4, 4) rigid transforms of the head:
    x -> exp([w]) (x - pivot) + pivot + t."""
    R = torch.linalg.matrix_exp(skew(delta[:, :3]))
    t = pivot - (R @ pivot[:, None])[..., 0] + delta[:, 3:]
    T = torch.zeros(delta.shape[0], 4, 4, dtype=delta.dtype, device=delta.device)
    T[:, :3, :3] = R
    T[:, :3, 3] = t
    T[:, 3, 3] = 1.0
    return T


class FrameRefiner(nn.Module):
    """Per-training-frame pose deltas (`pose_rot`, `pose_trans`, (F, 3) each) and/or appearance codes (`code`,
    (F, D)) with their decoder; `None` where that lever is off."""

    @property
    def pose(self) -> torch.Tensor | None:
        """(F, 6) the deltas (rotation vector, translation), or None."""
        return None if self.pose_rot is None else torch.cat([self.pose_rot, self.pose_trans], -1)

    def __init__(self, num_frames: int, pivot: torch.Tensor, pose: bool = False, appearance_dim: int = 0,
                 decoder_init: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        self.num_frames = int(num_frames)
        self.register_buffer("pivot", torch.as_tensor(pivot, dtype=torch.float32).reshape(3))
        # rotation vectors (F, 3) rad and translations (F, 3) world units: two tensors, two learning rates
        self.pose_rot = nn.Parameter(torch.zeros(num_frames, 3)) if pose else None
        self.pose_trans = nn.Parameter(torch.zeros(num_frames, 3)) if pose else None
        self.code = self.decoder = None
        if appearance_dim > 0:
            self.code = nn.Parameter(torch.zeros(num_frames, appearance_dim))
            g = torch.Generator().manual_seed(seed)
            self.decoder = nn.Parameter(torch.randn(appearance_dim, 12, generator=g) * decoder_init)

    @classmethod
    def from_config(cls, cfg, num_frames: int, pivot: torch.Tensor) -> "FrameRefiner | None":
        """The refiner a TrainConfig asks for, or None when both levers are off."""
        pr, ap = cfg.pose_refine, cfg.appearance
        if not (pr.enabled or ap.enabled):
            return None
        return cls(num_frames, pivot, pose=pr.enabled, appearance_dim=ap.dim if ap.enabled else 0,
                   decoder_init=ap.decoder_init, seed=cfg.seed)

    # -- pose ---------------------------------------------------------------------------------------
    def cameras(self, world_to_cam: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(B, 4, 4) tracked world_to_cam of frames `ids` (B,) -> the refined ones (differentiable)."""
        if self.pose_rot is None:
            return world_to_cam
        T = se3_matrix(torch.cat([self.pose_rot[ids], self.pose_trans[ids]], -1), self.pivot)
        return world_to_cam.to(T.dtype) @ T

    def refined_cameras(self, world_to_cam: torch.Tensor) -> torch.Tensor:
        """(F, 4, 4) every training frame's refined world_to_cam (no gradient)."""
        with torch.no_grad():
            return self.cameras(world_to_cam, torch.arange(self.num_frames, device=world_to_cam.device))

    # -- appearance ---------------------------------------------------------------------------------
    def affine(self, ids: torch.Tensor, detach: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames `ids` (B,) -> (A (B, 3, 3), b (B, 3)): the colour map c -> c + A c + b (0, 0 at code 0);
        `detach`: without gradient to the codes and the decoder."""
        code, dec = (self.code.detach(), self.decoder.detach()) if detach else (self.code, self.decoder)
        p = code[ids] @ dec  # (B, 12)
        return p[:, :9].reshape(-1, 3, 3), p[:, 9:]

    def recolor(self, head_rgb: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor,
                ids: torch.Tensor, detach: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Premultiplied head render (B, H, W, 3), its alpha (B, H, W, 1) and the compositing background ->
        (composited rgb, recoloured head), every Gaussian's colour c mapped to c + A c + b."""
        if self.code is not None:
            A, b = self.affine(ids, detach)
            head_rgb = head_rgb + torch.einsum("bij,bhwj->bhwi", A, head_rgb) + b[:, None, None, :] * alpha
        bg = background if background.dim() == 4 else background[None]
        return head_rgb + (1 - alpha) * bg, head_rgb

    # -- regularisation, optimiser, state -----------------------------------------------------------
    def reg_terms(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Squared magnitudes of the batch's deltas / codes (the loop weights them): pose_rot (rad^2),
        pose_trans (world units^2), appearance (code^2), each a mean over the batch's frames."""
        out = {}
        if self.pose_rot is not None:
            out["pose_rot"] = (self.pose_rot[ids] ** 2).sum(-1).mean()
            out["pose_trans"] = (self.pose_trans[ids] ** 2).sum(-1).mean()
        if self.code is not None:
            out["appearance"] = (self.code[ids] ** 2).sum(-1).mean()
        return out

    def param_groups(self, cfg) -> list[tuple[str, list[nn.Parameter], float, float]]:
        """(name, params, lr, final lr) for the training optimiser (constant learning rates)."""
        out = []
        if self.pose_rot is not None:
            p = cfg.pose_refine
            out += [("pose_rot", [self.pose_rot], p.lr_rotation, p.lr_rotation),
                    ("pose_trans", [self.pose_trans], p.lr_translation, p.lr_translation)]
        if self.code is not None:
            a = cfg.appearance
            out += [("appearance_code", [self.code], a.lr, a.lr), ("appearance_decoder", [self.decoder], a.lr_decoder, a.lr_decoder)]
        return out

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"refine.{k}": v.detach() for k, v in self.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        st = {k[len("refine."):]: v for k, v in tensors.items() if k.startswith("refine.")}
        self.load_state_dict(st)

    def summary(self) -> dict[str, float]:
        """Sizes of what was learned (for the log): mean |rotation| (deg), mean |translation| (world units), the
        common part (|mean delta|: a drift all frames share, which the model could equally absorb), mean |code|."""
        out = {}
        with torch.no_grad():
            if self.pose_rot is not None:
                p = self.pose
                out.update(pose_rot_deg=float(p[:, :3].norm(dim=-1).mean() * 57.29578),
                           pose_trans=float(p[:, 3:].norm(dim=-1).mean()),
                           pose_rot_common_deg=float(p[:, :3].mean(0).norm() * 57.29578),
                           pose_trans_common=float(p[:, 3:].mean(0).norm()))
            if self.code is not None:
                out["appearance_code"] = float(self.code.norm(dim=-1).mean())
        return out
