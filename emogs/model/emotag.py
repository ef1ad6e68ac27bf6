"""EmoTagHead: the few-shot head (EmoTaG) on the mesh-rigged head, shared across people, personalised by a code.

What is shared by every person (the BASE, `emogs pretrain`) and what is the person's own:
- shared: the Gaussian layout in triangle-local frames of the ICT-FaceKit topology (parent triangle, local
  position, rotation, scale, opacity, zone: `emogs.model.binding`), so it lands on any person's fitted mesh;
  the tri-plane field and the SZ-PAB / CIT-AE / deformation networks of the mesh head; the motion network.
- the person's: the mesh (`mesh_neutral`, their identity baked in), their mean expression and AUs, the
  Gaussians' colours, and an identity code (`id_code`, one row per pretraining identity; one row in an
  adapted head) that modulates the deformation network by AdaIN.

AdaIN (identity modulation): the deformation network's first hidden layer h (B, N, H) is re-normalised per
frame and channel over the Gaussians, its mean shifted by beta(code) and its spread around the mean scaled by
1 + gamma(code): h' = mu + beta + (1 + gamma) (h - mu). gamma, beta = Linear(code), zero at initialisation
(h' = h: a fresh head is the mesh head).

Gated Residual Motion Network (GRMN), in the mesh's expression-coefficient space (E ICT shapes):
    e_hat = expr_mean + delta_base(audio) + g * delta_residual(upper-face AUs, code),  g = sigmoid(...) in [0, 1]
per coefficient. It is trained against the fitted expressions (`auxiliary_loss`); `deformed(..., expression=None)`
poses the mesh with e_hat, so the head runs from audio and AUs alone; with an expression given (training, and
`Avatar`, which builds the expression from the controls) the mesh takes that one. `speech_expression` gives the
audio-driven default face (the base branch at the person's mean AUs) for rendering new speech.

Colours: `gaussians.color_logit` (N, 3) plus, in a pretraining head (num_identities > 1), a per-identity
residual `id_color` (I, N, 3). `set_identity(k)` selects row k. Pure: arrays and modules, no files.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from emogs.model.binding import quat_mul, rotmat_to_quat, to_world, triangle_frames
from emogs.model.config import ModelConfig
from emogs.model.gaussians import GaussianSet
from emogs.model.mesh_head import MeshHead

UPPER_AU_INDEX = (0, 1, 2, 3, 4, 5, 6, 16)  # AU01 AU02 AU04 AU05 AU06 AU07 AU09 AU45 (emogs.face.aus.UPPER_AUS)


class GRMN(nn.Module):
    """Gated residual motion: audio window (B, R, D), upper-face AU deviation (B, U), identity code (B, C) ->
    (delta (B, E), gate (B, E), base (B, E), residual (B, E)). The output layers start at zero."""

    def __init__(self, audio_dim: int, rows: int, num_upper: int, code_dim: int, num_expr: int, hidden: int = 128):
        super().__init__()
        self.norm = nn.LayerNorm(audio_dim)
        self.audio = nn.Sequential(nn.Conv1d(audio_dim, hidden, 3, padding=1), nn.GELU(),
                                   nn.Conv1d(hidden, hidden, 3, stride=2, padding=1), nn.GELU())
        self.base = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, num_expr))
        self.residual = nn.Sequential(nn.Linear(num_upper + code_dim, hidden), nn.GELU(), nn.Linear(hidden, num_expr))
        self.gate = nn.Linear(num_upper + hidden, num_expr)
        for lin in (self.base[-1], self.residual[-1]):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def audio_feature(self, audio: torch.Tensor) -> torch.Tensor:
        return self.audio(self.norm(audio).transpose(1, 2)).mean(-1)  # (B, hidden)

    def forward(self, audio: torch.Tensor, upper: torch.Tensor, code: torch.Tensor):
        a = self.audio_feature(audio)
        base = self.base(a)
        res = self.residual(torch.cat([upper, code], -1))
        g = torch.sigmoid(self.gate(torch.cat([upper, a], -1)))
        return base + g * res, g, base, res


class EmoTagHead(MeshHead):
    def __init__(self, cfg: ModelConfig, gaussians: GaussianSet, neutral: torch.Tensor, basis: torch.Tensor,
                 triangles: torch.Tensor, expr_mean: torch.Tensor | None = None,
                 box_lo: torch.Tensor | None = None, box_hi: torch.Tensor | None = None) -> None:
        super().__init__(cfg, gaussians, neutral, basis, triangles, expr_mean, box_lo, box_hi)
        I, C = max(1, cfg.num_identities), cfg.id_dim
        self.id_code = nn.Parameter(torch.randn(I, C) * 0.01)
        self.register_buffer("identity", torch.zeros((), dtype=torch.long))
        self.id_color = nn.Parameter(torch.zeros(I, len(gaussians), 3)) if I > 1 else None
        self.adain = nn.Linear(C, 2 * cfg.hidden)
        nn.init.zeros_(self.adain.weight)
        nn.init.zeros_(self.adain.bias)
        self.grmn = GRMN(cfg.audio_dim, 2 * cfg.audio_window, len(UPPER_AU_INDEX), C, self.num_expressions,
                         cfg.grmn_hidden)

    # -- identity ---------------------------------------------------------------------------------------
    def set_identity(self, k: int) -> None:
        if not 0 <= k < self.id_code.shape[0]:
            raise ValueError(f"identity {k} out of range (the head has {self.id_code.shape[0]})")
        self.identity.fill_(int(k))

    def code(self) -> torch.Tensor:
        """(C,) the current identity's code."""
        return self.id_code[self.identity]

    def color_logits(self) -> torch.Tensor:
        """(N, 3) the current identity's colour logits."""
        c = self.gaussians.color_logit
        return c if self.id_color is None else c + self.id_color[self.identity]

    def field_parameters(self) -> list[nn.Parameter]:
        """The spatial fields and the identity codes (both at the encoding learning rate)."""
        return super().field_parameters() + [self.id_code]

    def network_parameters(self) -> list[nn.Parameter]:
        skip = {id(p) for p in self.field_parameters()} | {id(p) for p in self.gaussians.parameters()}
        if self.id_color is not None:
            skip.add(id(self.id_color))
        return [p for p in self.parameters() if id(p) not in skip]

    def static_deps(self) -> list[torch.Tensor]:
        return super().static_deps() + [self.identity, self.id_code, self.adain.weight]

    # -- motion -----------------------------------------------------------------------------------------
    def upper_deviation(self, au_window: torch.Tensor) -> torch.Tensor:
        """(B, T, K) AU windows -> (B, U) the centre frame's upper-face AUs minus the person's mean."""
        idx = list(UPPER_AU_INDEX)
        return au_window[:, au_window.shape[1] // 2, idx] - self.au_mean[idx]

    def motion(self, audio: torch.Tensor, au_window: torch.Tensor) -> dict[str, torch.Tensor]:
        """GRMN: -> expression (B, E) = expr_mean + delta, gate (B, E), base (B, E), residual (B, E)."""
        B = audio.shape[0]
        delta, g, base, res = self.grmn(audio, self.upper_deviation(au_window), self.code().expand(B, -1))
        return dict(expression=self.expr_mean + delta, gate=g, base=base, residual=res)

    def speech_expression(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, R, D) audio windows -> (B, E) the audio-driven default face: expr_mean + the base branch."""
        return self.expr_mean + self.grmn.base(self.grmn.audio_feature(audio))

    def auxiliary_loss(self, batch: dict[str, torch.Tensor], weight: float | None = None):
        """The GRMN's loss against the batch's fitted expressions: weight * MSE(e_hat, e) (the training loop
        adds it to the image losses). -> (loss, {"motion": value, "gate": mean gate})."""
        w = self.cfg.motion_loss if weight is None else weight
        if batch.get("expression") is None or w <= 0:
            z = self.id_code.sum() * 0
            return z, {}
        m = self.motion(batch["audio"], batch["au_window"])
        mse = F.mse_loss(m["expression"], batch["expression"])
        return w * mse, {"motion": float(mse.detach()), "gate": float(m["gate"].detach().mean())}

    # -- deformation ------------------------------------------------------------------------------------
    def _adain(self, h: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.adain(self.code()).chunk(2, -1)  # (H,), (H,)
        mu = h.mean(1, keepdim=True)
        return mu + beta + (1 + gamma) * (h - mu)

    def offsets(self, audio: torch.Tensor, au_window: torch.Tensor):
        g = self.gaussians
        st = self.static_features()
        toks, ttype = self.tokens(audio, au_window)
        att, attn = self.szpab(st["feat"], toks, g.zone, ttype, q=st["q"])
        w = self.deform.mlp[0].weight
        h = st["feat_h"][None] + att @ w[:, st["feat"].shape[-1]:].T  # (B, N, hidden)
        off = self.deform.mlp[1:](self._adain(h))
        if self.au_basis is not None:
            off = off + self.au_offsets(st["basis"], attn, ttype, au_window)
        return off, attn, ttype

    def deformed(self, audio: torch.Tensor, au_window: torch.Tensor, expression: torch.Tensor | None = None) -> dict:
        """As `MeshHead.deformed`; without `expression` the mesh is posed by the GRMN's prediction."""
        g = self.gaussians
        off, attn, ttype = self.offsets(audio, au_window)
        if expression is None:
            expression = self.motion(audio, au_window)["expression"]
        c, R, k = triangle_frames(self.mesh_vertices(expression), self.mesh_triangles)
        p = g.parent
        Rp, kp = R[:, p], k[:, p]
        local = g.means + off[..., 0:3]
        means = c[:, p] + kp[..., None] * (Rp @ local[..., None])[..., 0]
        quats = quat_mul(rotmat_to_quat(Rp), F.normalize(g.quats + off[..., 3:7], dim=-1))
        return dict(
            means=means, quats=quats, scales=kp[..., None] * torch.exp(g.log_scales + off[..., 7:10]),
            colors=torch.sigmoid(self.color_logits() + off[..., 10:13]),
            opacities=torch.sigmoid(g.opacity_logit + off[..., 13]),
            attn=attn, token_type=ttype, offsets=off)

    def canonical_gaussians(self) -> dict[str, torch.Tensor]:
        d = super().canonical_gaussians()
        d["colors"] = torch.sigmoid(self.color_logits())
        return d


# -- layout transfer and colours ---------------------------------------------------------------------------
def layout_on_mesh(g: GaussianSet, neutral: torch.Tensor, basis: torch.Tensor, triangles: torch.Tensor,
                   expr: torch.Tensor) -> torch.Tensor:
    """(N, 3) world positions of a triangle-local layout on a mesh (neutral (V,3), basis (E,V,3)) at `expr` (E,)."""
    v = neutral + torch.einsum("e,evc->vc", expr.float(), basis.float())
    c, R, k = triangle_frames(v, triangles)
    return to_world(g.means, g.parent, c, R, k)


def transfer_layout(src: GaussianSet, neutral, basis, triangles, expr_mean) -> GaussianSet:
    """A copy of the layout `src` (triangle-local: shared across people) for another person's mesh: same
    parents and local parameters, `parent_scale` of the new mesh."""
    g = GaussianSet(len(src), bound=True)
    with torch.no_grad():
        for name, t in src.state_dict().items():
            g.state_dict()[name].copy_(t)
        v = torch.as_tensor(neutral).float() + torch.einsum("e,evc->vc", torch.as_tensor(expr_mean).float(),
                                                            torch.as_tensor(basis).float())
        _, _, k = triangle_frames(v, torch.as_tensor(triangles))
        g.parent_scale.copy_(k[g.parent])
    return g


def concat_layouts(a: GaussianSet, b: GaussianSet) -> GaussianSet:
    """One bound GaussianSet holding the Gaussians of `a`, then those of `b`."""
    g = GaussianSet(len(a) + len(b), bound=True)
    with torch.no_grad():
        for name, t in g.state_dict().items():
            t.copy_(torch.cat([a.state_dict()[name], b.state_dict()[name]]))
    return g


def take_layout(src: GaussianSet, idx: torch.Tensor) -> GaussianSet:
    """The Gaussians `idx` of a bound GaussianSet."""
    g = GaussianSet(len(idx), bound=True)
    with torch.no_grad():
        for name, t in g.state_dict().items():
            t.copy_(src.state_dict()[name][idx])
    return g


def vote_colors(g: GaussianSet, neutral, basis, triangles, views: list, exprs: np.ndarray,
                default: float = 0.5) -> np.ndarray:
    """(N, 3) mean image colour under each Gaussian of the layout, each view seeing it on its own posed mesh
    (as `init_mesh_gaussians`): views are `emogs.model.gaussians.View`s, `exprs` (n, E) their expressions."""
    from emogs.model.gaussians import sample_colors

    if not len(exprs):
        return np.full((len(g), 3), default)
    nt, bt, tt = (torch.as_tensor(neutral).float(), torch.as_tensor(basis).float(), torch.as_tensor(triangles))
    with torch.no_grad():
        pts = [layout_on_mesh(g, nt, bt, tt, torch.as_tensor(e)).numpy().astype(np.float64) for e in exprs]
    return sample_colors(pts, views, default)
