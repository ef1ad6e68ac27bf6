"""TalkingHead: canonical Gaussians + audio/AU-driven deformation, rendered and composited over a plate.

`TalkingHead.deformed(audio, au_window)` gives the per-frame Gaussians from caller-supplied audio feature
windows and AU windows (so AU controls can be set explicitly); `forward` rasterises them and composites
over a plate (`splat`, shared with the inference path in `emogs.model.infer`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from emogs.model.audio_enc import AudioEncoder
from emogs.model.cit_ae import CITAE, PlainAUEncoder
from emogs.model.config import ModelConfig
from emogs.model.deform import OUT_DIM, DeformNet
from emogs.model.encodings import TriPlane
from emogs.model.gaussians import GaussianSet
from emogs.model.szpab import SZPAB, TOKEN_AU, TOKEN_AUDIO, ZONE_OTHER, bias_table


@dataclass
class HeadOutput:
    rgb: torch.Tensor  # (B, H, W, 3) composited over the background
    alpha: torch.Tensor  # (B, H, W, 1) rendered head coverage
    depth: torch.Tensor  # (B, H, W, 1)
    head_rgb: torch.Tensor  # (B, H, W, 3) premultiplied head colour before compositing
    attn: torch.Tensor  # (B, N, L) SZ-PAB attention (head mean)
    token_type: torch.Tensor  # (L,) TOKEN_AUDIO / TOKEN_AU
    means: torch.Tensor  # (B, N, 3) deformed centres (retain_grad for densification)
    offsets: torch.Tensor  # (B, N, 14) raw deformation outputs


class TalkingHead(nn.Module):
    def __init__(self, cfg: ModelConfig, gaussians: GaussianSet, box_lo: torch.Tensor | None = None,
                 box_hi: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        flags = cfg.flags()
        self.use_au = flags["use_au"]
        self.gaussians = gaussians
        m = gaussians.means.detach()
        if box_lo is None or box_hi is None:  # encoding box: the canonical cloud plus a 15% margin
            pad = 0.15 * (m.max(0).values - m.min(0).values)
            box_lo, box_hi = m.min(0).values - pad, m.max(0).values + pad
        d = cfg.token_dim
        self.encoding = TriPlane(box_lo, box_hi, cfg.triplane_channels, cfg.triplane_res, cfg.triplane_levels)
        self.audio_enc = AudioEncoder(cfg.audio_dim, 2 * cfg.audio_window, d)
        if self.use_au:
            self.au_enc = (CITAE(cfg.num_aus, cfg.au_window, d, cfg.citae_hidden) if flags["use_citae"]
                           else PlainAUEncoder(cfg.num_aus, cfg.au_window, d))
        bias = bias_table(cfg.bias_au_in_mouth, cfg.bias_audio_in_upper, cfg.bias_synergy, cfg.bias_other,
                          cfg.bias_au_in_other)
        if cfg.au_basis_zones not in ("face", "all"):
            raise ValueError(f"au_basis_zones must be 'face' or 'all', not '{cfg.au_basis_zones}'")
        self.szpab = SZPAB(self.encoding.out_dim, d, cfg.heads, bias, use_bias=flags["use_szpab"])
        self.deform = DeformNet(self.encoding.out_dim, d, cfg.hidden)
        self.register_buffer("au_mean", torch.zeros(cfg.num_aus))  # (K,) training-mean AUs (the default face)
        self.au_basis = None
        if self.use_au and cfg.au_basis:
            self.au_basis = nn.Linear(self.encoding.out_dim, cfg.num_aus * OUT_DIM)  # feat -> (K, 14) per Gaussian
            nn.init.zeros_(self.au_basis.weight)
            nn.init.zeros_(self.au_basis.bias)

    @staticmethod
    def feature_dim(cfg: ModelConfig) -> int:
        """Width of the per-Gaussian spatial feature (the tri-plane's output) for a config."""
        return cfg.triplane_channels * cfg.triplane_levels  # TriPlane.out_dim

    @classmethod
    def from_state_dict(cls, cfg: ModelConfig, state: dict[str, torch.Tensor]) -> "TalkingHead":
        """Rebuild with the Gaussian count stored in `state` (it changes with densification), then load."""
        g = GaussianSet(state["gaussians.means"].shape[0])
        model = cls(cfg, g, state["encoding.lo"], state["encoding.hi"])
        model.load_state_dict(state)
        return model

    def field_parameters(self) -> list[nn.Parameter]:
        """Spatial fields (tri-plane, AU basis): trained at the encoding learning rate."""
        extra = list(self.au_basis.parameters()) if self.au_basis is not None else []
        return list(self.encoding.parameters()) + extra

    def network_parameters(self) -> list[nn.Parameter]:
        """Everything but the Gaussians and the tri-plane (they get their own learning rates)."""
        skip = {id(p) for p in self.field_parameters()} | {id(p) for p in self.gaussians.parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def tokens(self, audio: torch.Tensor, au_window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, R, D), au_window (B, T, K) -> tokens (B, L, d), token_type (L,): the M audio tokens first,
        then the K AU tokens (`au_offsets` relies on that order)."""
        a = self.audio_enc(audio)  # (B, M, d)
        types = [torch.full((a.shape[1],), TOKEN_AUDIO, dtype=torch.long, device=a.device)]
        toks = [a]
        if self.use_au:
            u = self.au_enc(au_window)  # (B, K, d)
            toks.append(u)
            types.append(torch.full((u.shape[1],), TOKEN_AU, dtype=torch.long, device=a.device))
        return torch.cat(toks, 1), torch.cat(types)

    def au_offsets(self, basis: torch.Tensor, attn: torch.Tensor, ttype: torch.Tensor,
                   au_window: torch.Tensor) -> torch.Tensor:
        """Learned AU blendshapes: sum_k K * attn[n, k] * (a_k - mean_k) * basis[n, k] -> (B, N, 14).

        basis (N, K, 14) = `au_basis(feat)`; attn (B, N, L) SZ-PAB attention (head mean). AU token k's weight
        times K is 1 under uniform attention and ~0 where the zone bias suppresses AU tokens (the mouth), so
        the zones gate which AUs act where. With `au_basis_zones == "face"` head-other Gaussians (hair, ears,
        neck) get no AU offset at all."""
        k = self.cfg.num_aus
        w = attn[..., attn.shape[-1] - k:] * k  # (B, N, K): the AU tokens are the last K (see `tokens`)
        if self.cfg.au_basis_zones == "face":
            w = w * (self.gaussians.zone != ZONE_OTHER).to(w.dtype)[:, None]
        a = au_window[:, au_window.shape[1] // 2] - self.au_mean  # (B, K) centre frame vs default face
        return torch.einsum("bnk,bk,nko->bno", w, a, basis)

    def canonical_positions(self) -> torch.Tensor:
        """(N, 3) the Gaussians' positions in the canonical head (what the tri-plane encodes)."""
        return self.gaussians.means

    def canonical_gaussians(self) -> dict[str, torch.Tensor]:
        """The Gaussians without any deformation (the default face), in the head's world frame: means (N,3),
        quats (N,4), scales (N,3), opacities (N,), colors (N,3)."""
        g = self.gaussians
        return dict(means=g.means, quats=F.normalize(g.quats, dim=-1), scales=g.log_scales.exp(),
                    opacities=torch.sigmoid(g.opacity_logit), colors=torch.sigmoid(g.color_logit))

    def static_deps(self) -> list[torch.Tensor]:
        """The tensors `static_features` depends on (its cache key)."""
        g = self.gaussians
        deps = [g.means, *self.encoding.parameters(), self.szpab.q.weight, self.deform.mlp[0].weight]
        if self.au_basis is not None:
            deps.append(self.au_basis.weight)
        return deps

    def static_features(self) -> dict[str, torch.Tensor]:
        """Everything that depends only on the canonical Gaussians and the fields: tri-plane features
        (N, F), the attention queries (N, d), the deformation's first-layer feature term (N, hidden) and
        the AU basis (N, K, 14). Cached when no gradient is needed (inference: one computation per model,
        not per frame); the cache key holds the versions of every tensor involved, so an optimiser step
        or densification invalidates it."""
        key = tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in self.static_deps())
        if not torch.is_grad_enabled() and getattr(self, "_static_key", None) == key:
            return self._static_val
        feat = self.encoding(self.canonical_positions().detach())  # (N, F)
        out = dict(feat=feat, q=self.szpab.q(feat), feat_h=self.deform.feature_part(feat))
        if self.au_basis is not None:
            out["basis"] = self.au_basis(feat).reshape(feat.shape[0], self.cfg.num_aus, OUT_DIM)
        if not torch.is_grad_enabled():
            self._static_key, self._static_val = key, out
        return out

    def offsets(self, audio: torch.Tensor, au_window: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """audio (B,R,D), au_window (B,T,K) -> (per-Gaussian offsets (B,N,14), SZ-PAB attention (B,N,L),
        token types (L,)): the deformation network's output plus the AU basis."""
        g = self.gaussians
        st = self.static_features()
        toks, ttype = self.tokens(audio, au_window)
        att, attn = self.szpab(st["feat"], toks, g.zone, ttype, q=st["q"])  # (B, N, d), (B, N, L)
        off = self.deform(st["feat"], att, feat_h=st["feat_h"])  # (B, N, 14)
        if self.au_basis is not None:
            off = off + self.au_offsets(st["basis"], attn, ttype, au_window)
        return off, attn, ttype

    def deformed(self, audio: torch.Tensor, au_window: torch.Tensor, expression: torch.Tensor | None = None) -> dict:
        """audio (B,R,D), au_window (B,T,K) -> per-frame Gaussians: means (B,N,3), quats (B,N,4), scales
        (B,N,3), opacities (B,N), colors (B,N,3), plus attn, token_type, offsets. `expression` is for
        mesh-rigged heads (emogs.model.mesh_head) and ignored here."""
        g = self.gaussians
        off, attn, ttype = self.offsets(audio, au_window)
        return dict(
            means=g.means + off[..., 0:3],
            quats=F.normalize(g.quats + off[..., 3:7], dim=-1),
            scales=torch.exp(g.log_scales + off[..., 7:10]),
            colors=torch.sigmoid(g.color_logit + off[..., 10:13]),
            opacities=torch.sigmoid(g.opacity_logit + off[..., 13]),
            attn=attn, token_type=ttype, offsets=off)

    def forward(self, world_to_cam: torch.Tensor, K: torch.Tensor, audio: torch.Tensor, au_window: torch.Tensor,
                width: int, height: int, background: torch.Tensor | None = None,
                backend: str = "auto", expression: torch.Tensor | None = None,
                detach_appearance: bool = False) -> HeadOutput:
        """Render B frames. world_to_cam (B,4,4), K (B,3,3), audio (B,R,D), au_window (B,T,K),
        background (B,H,W,3) or (H,W,3) or None (black); expression (B,E) for mesh-rigged heads.
        `detach_appearance`: colours and opacities carry no gradient (losses of this render move geometry only)."""
        d = self.deformed(audio, au_window, expression)
        if detach_appearance:
            d = {**d, "colors": d["colors"].detach(), "opacities": d["opacities"].detach()}
        rgb, alpha, depth, head = splat(d, world_to_cam, K, width, height, background, backend)
        return HeadOutput(rgb, alpha, depth, head, d["attn"], d["token_type"], d["means"], d["offsets"])


def splat(d: dict[str, torch.Tensor], world_to_cam: torch.Tensor, K: torch.Tensor, width: int, height: int,
          background: torch.Tensor | None = None, backend: str = "auto"
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deformed Gaussians (`TalkingHead.deformed` keys means/quats/scales/opacities/colors) -> rasterised and
    composited over `background` (B,H,W,3), (H,W,3) or None (black): (rgb (B,H,W,3), alpha (B,H,W,1),
    depth (B,H,W,1), head rgb premultiplied by alpha (B,H,W,3))."""
    from emogs.render import rasterize

    out = rasterize(d["means"], d["quats"], d["scales"], d["opacities"], d["colors"], world_to_cam, K,
                    width, height, backend=backend)
    head = out.colors[..., :3]
    rgb = head if background is None else head + (1 - out.alpha) * background
    return rgb, out.alpha, out.depth, head
