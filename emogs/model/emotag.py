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
    e_hat = expr_mean + delta_base(audio) + g * delta_residual(upper-face AUs, code, z, e),  g = sigmoid(...) in [0, 1]
per coefficient; z: the emotion latent (semantic emotion guidance, `cfg.emotion_dim` > 0), encoded from the
frame's FER2013 scores and e = 1 - p(neutral), KL-regularised to N(0, I); e also feeds the gate. It is trained against the fitted expressions (`auxiliary_loss`); `deformed(..., expression=None)`
poses the mesh with e_hat, so the head runs from audio and AUs alone; with an expression given (training, and
`Avatar`, which builds the expression from the controls and adds `residual_motion`, the residual branch's
change under the requested emotion and upper-face AUs) the mesh takes that one. `speech_expression` gives the
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


EMOTION_COND_DIM = 8  # the 7 FER2013 scores and e = 1 - p(neutral) (emogs.face.fer.emotion_condition)
NEUTRAL_CONDITION = (0, 0, 0, 0, 0, 0, 1, 0)  # neutral: p(neutral) = 1, e = 0


class GRMN(nn.Module):
    """Gated residual motion: audio window (B, R, D), upper-face AU deviation (B, U), identity code (B, C) and,
    with `emotion_dim` > 0, the emotion conditioning (B, 8) (FER2013 scores and e) -> dict(delta, gate, base,
    residual (B, E); mu, logvar (B, Z) of the emotion latent). The output layers start at zero.

    Emotion latent (semantic emotion guidance, VAE-style): q(z | c) = N(mu(c), exp(logvar(c))), z sampled
    (reparameterised) in training, z = mu at inference; the residual branch reads [AUs, code, z, e], the gate
    [AUs, audio feature, e]; `kl` is KL(q || N(0, I)) per frame, summed over the latent."""

    def __init__(self, audio_dim: int, rows: int, num_upper: int, code_dim: int, num_expr: int, hidden: int = 128,
                 emotion_dim: int = 0):
        super().__init__()
        self.emotion_dim = int(emotion_dim)
        zin = (self.emotion_dim + 1) if self.emotion_dim > 0 else 0
        gin = 1 if self.emotion_dim > 0 else 0
        self.norm = nn.LayerNorm(audio_dim)
        self.audio = nn.Sequential(nn.Conv1d(audio_dim, hidden, 3, padding=1), nn.GELU(),
                                   nn.Conv1d(hidden, hidden, 3, stride=2, padding=1), nn.GELU())
        self.base = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, num_expr))
        self.residual = nn.Sequential(nn.Linear(num_upper + code_dim + zin, hidden), nn.GELU(),
                                      nn.Linear(hidden, num_expr))
        self.gate = nn.Linear(num_upper + hidden + gin, num_expr)
        if self.emotion_dim > 0:
            self.emotion = nn.Sequential(nn.Linear(EMOTION_COND_DIM, hidden), nn.GELU(),
                                         nn.Linear(hidden, 2 * self.emotion_dim))
        for lin in (self.base[-1], self.residual[-1]):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def audio_feature(self, audio: torch.Tensor) -> torch.Tensor:
        return self.audio(self.norm(audio).transpose(1, 2)).mean(-1)  # (B, hidden)

    def emotion_posterior(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 8) conditioning -> mu, logvar (B, Z) (logvar clamped to [-8, 4])."""
        mu, lv = self.emotion(cond).chunk(2, -1)
        return mu, lv.clamp(-8.0, 4.0)

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """(B,) KL(N(mu, exp(logvar)) || N(0, I)), summed over the latent."""
        return 0.5 * (mu ** 2 + logvar.exp() - logvar - 1.0).sum(-1)

    def forward(self, audio: torch.Tensor, upper: torch.Tensor, code: torch.Tensor,
                emotion: torch.Tensor | None = None, a: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        a = self.audio_feature(audio) if a is None else a
        base = self.base(a)
        out = {}
        if self.emotion_dim > 0:
            if emotion is None:
                raise ValueError("this motion network reads an emotion conditioning (B, 8)")
            mu, lv = self.emotion_posterior(emotion)
            z = mu + torch.randn_like(mu) * (0.5 * lv).exp() if self.training else mu
            e = emotion[:, -1:]
            res = self.residual(torch.cat([upper, code, z, e], -1))
            g = torch.sigmoid(self.gate(torch.cat([upper, a, e], -1)))
            out.update(mu=mu, logvar=lv)
        else:
            res = self.residual(torch.cat([upper, code], -1))
            g = torch.sigmoid(self.gate(torch.cat([upper, a], -1)))
        return dict(delta=base + g * res, gate=g, base=base, residual=res, **out)


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
        E = int(getattr(cfg, "emotion_dim", 0))
        self.grmn = GRMN(cfg.audio_dim, 2 * cfg.audio_window, len(UPPER_AU_INDEX), C, self.num_expressions,
                         cfg.grmn_hidden, E)
        if E > 0:  # the person's mean emotion conditioning: the default when no emotion is asked for
            self.register_buffer("fer_mean", torch.tensor(NEUTRAL_CONDITION, dtype=torch.float32))

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

    @property
    def has_emotion(self) -> bool:
        return self.grmn.emotion_dim > 0

    def emotion_input(self, emotion: torch.Tensor | None, B: int) -> torch.Tensor | None:
        """(B, 8) the emotion conditioning: `emotion` or the person's mean (None for a head without the latent)."""
        if not self.has_emotion:
            return None
        return self.fer_mean.expand(B, -1) if emotion is None else emotion.to(self.fer_mean.dtype)

    def motion(self, audio: torch.Tensor, au_window: torch.Tensor, emotion: torch.Tensor | None = None
               ) -> dict[str, torch.Tensor]:
        """GRMN: -> expression (B, E) = expr_mean + delta, gate (B, E), base (B, E), residual (B, E) (and mu,
        logvar with the emotion latent). `emotion` (B, 8): FER2013 scores + e (None: the person's mean)."""
        B = audio.shape[0]
        m = self.grmn(audio, self.upper_deviation(au_window), self.code().expand(B, -1), self.emotion_input(emotion, B))
        m["expression"] = self.expr_mean + m["delta"]
        return m

    def residual_motion(self, audio: torch.Tensor, au_window: torch.Tensor, emotion: torch.Tensor | None = None
                        ) -> torch.Tensor:
        """(B, E) the gated residual g * delta_residual under these upper-face AUs and emotion, minus the same at
        the person's default (their mean AUs and mean emotion conditioning, the same audio): what a request
        changes in the face through the residual branch (zero when nothing is asked). `Avatar` adds it to the
        expression it builds from the controls."""
        B = audio.shape[0]
        a = self.grmn.audio_feature(audio)
        code = self.code().expand(B, -1)
        up = self.upper_deviation(au_window)
        m1 = self.grmn(audio, up, code, self.emotion_input(emotion, B), a)
        m0 = self.grmn(audio, torch.zeros_like(up), code, self.emotion_input(None, B), a)
        return m1["delta"] - m0["delta"]

    def speech_expression(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, R, D) audio windows -> (B, E) the audio-driven default face: expr_mean + the base branch."""
        return self.expr_mean + self.grmn.base(self.grmn.audio_feature(audio))

    def auxiliary_loss(self, batch: dict[str, torch.Tensor], weight: float | None = None):
        """The GRMN's loss against the batch's fitted expressions: weight * MSE(e_hat, e), plus with the emotion
        latent emotion_kl * KL(q(z | FER2013 scores, e) || N(0, I)) (the batch's `fer` (B, 8)) (the training loop
        adds it to the image losses). -> (loss, {"motion": value, "gate": mean gate[, "kl": mean KL]})."""
        w = self.cfg.motion_loss if weight is None else weight
        if batch.get("expression") is None or w <= 0:
            z = self.id_code.sum() * 0
            return z, {}
        emo = batch.get("fer")
        if self.has_emotion and emo is None:
            raise ValueError("the EmoTaG head's emotion latent needs the batch's FER2013 conditioning ('fer')")
        m = self.motion(batch["audio"], batch["au_window"], emo)
        mse = F.mse_loss(m["expression"], batch["expression"])
        terms = {"motion": float(mse.detach()), "gate": float(m["gate"].detach().mean())}
        loss = w * mse
        if self.has_emotion:
            kl = self.grmn.kl(m["mu"], m["logvar"]).mean()
            loss = loss + float(getattr(self.cfg, "emotion_kl", 0.0)) * kl
            terms["kl"] = float(kl.detach())
        return loss, terms

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
