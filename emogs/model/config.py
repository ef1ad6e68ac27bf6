"""ModelConfig: the talking-head network's settings (nested inside TrainConfig, saved in RUN/config.json)."""
from __future__ import annotations

from dataclasses import dataclass

# ablation variants of the paper: which network components are on (the RAAR loss that goes with SZ-PAB is
# a loss setting: emogs.train.config.variant_losses)
VARIANTS: dict[str, dict[str, bool]] = {
    "audio": dict(use_au=False, use_citae=False, use_szpab=False),
    "au": dict(use_au=True, use_citae=False, use_szpab=False),
    "au_szpab": dict(use_au=True, use_citae=False, use_szpab=True),
    "au_citae": dict(use_au=True, use_citae=True, use_szpab=False),
    "full": dict(use_au=True, use_citae=True, use_szpab=True),
}


MODEL_KINDS = ("free", "mesh", "emotag")  # and "auto" in a training config: mesh when the dataset has a mesh fit
# emotag: the few-shot head (emogs.model.emotag): a mesh head shared across people (`emogs pretrain`), personalised
# by an identity code (`emogs adapt`); trainable per person too (`emogs train --model emotag`)


@dataclass
class ModelConfig:
    # free: canonical Gaussians deformed by the network alone (emogs.model.head); mesh: Gaussians bound to the
    # triangles of the person's fitted ICT-FaceKit mesh, the network adding residuals (emogs.model.mesh_head);
    # auto (training only, resolved before the run is written): mesh when the dataset has a mesh fit, else free.
    # The mesh head is the default by measurement (docs/training.md: sharper and AU edits beyond the clip).
    kind: str = "auto"
    variant: str = "full"  # audio | au | au_szpab | au_citae | full (see VARIANTS)
    # canonical Gaussians at initialisation
    num_face: int = 6000
    num_shell: int = 4000
    num_mouth: int = 800
    # mesh heads' eyeball samples at initialisation (issue 13): "sphere" = the whole eyeballs (as before); "front" =
    # the front caps only, the part the lids hide coloured as the visible sclera and kept on the eyeball by the
    # eyelid re-binding (opt-in: on the CPU it let the lid rise further but left dark strokes on the irises,
    # docs/control_proof.md "Session 6")
    eyeball_init: str = "sphere"
    # data-dependent sizes (filled from the dataset at training start)
    audio_feature: str = "mel"  # mel | whisper
    audio_dim: int = 80
    audio_window: int = 8  # dataset audio_window: 2*audio_window feature rows per frame
    au_window: int = 9  # T frames of AU intensities, centred
    num_aus: int = 17
    # networks
    token_dim: int = 64
    heads: int = 2
    triplane_channels: int = 16
    triplane_res: int = 32
    triplane_levels: int = 2
    hidden: int = 128
    # The head pose is no input of the deformation: a per-frame pose vector is unique to each training frame,
    # so the network could memorise every frame's expression from it (a frame-ID shortcut) instead of learning
    # it from the AU and audio tokens, leaving AU controls without effect. The head's rigid motion is the
    # camera; ER-NeRF / TalkingGaussian also keep pose out of the head field (docs/model.md).
    # AU basis: per-Gaussian learned displacement fields, one per AU (learned blendshapes), scaled by the
    # AU's deviation from its training mean and weighted by the Gaussian's SZ-PAB attention on that AU token.
    # A direct, linear, zone-gated path from an AU intensity to the geometry it moves (see docs/model.md).
    au_basis: bool = True
    # Where the AU basis acts: "face" = every zone but head-other (hair, ears, neck), "all" = everywhere (the
    # first runs; their AU edits also moved the ears and the hair outline, docs/control_proof.md).
    au_basis_zones: str = "face"
    citae_hidden: int = 32
    # SZ-PAB bias strengths (additive attention logits)
    bias_au_in_mouth: float = -4.0
    bias_audio_in_upper: float = -4.0
    bias_synergy: float = 0.0
    bias_other: float = 0.0
    bias_au_in_other: float = -4.0  # AU tokens in head-other (hair, ears, neck); 0 in the first runs
    # emotag heads only (emogs.model.emotag): identity codes, the motion network and its loss weight
    num_identities: int = 1  # rows of the identity-code table (pretraining: one per identity; adapted: 1)
    id_dim: int = 32
    grmn_hidden: int = 128
    motion_loss: float = 1.0  # weight of the GRMN's MSE against the fitted expression coefficients
    # semantic emotion guidance: an emotion latent z (emotion_dim; 0 = none, the heads made before it) in the
    # GRMN's residual branch, encoded from each frame's FER2013 scores and e = 1 - p(neutral) (DATASET/fer.npz,
    # emogs.data.fer_features) and pulled to N(0, I) by a KL term of weight emotion_kl (VAE-style)
    emotion_dim: int = 8
    emotion_kl: float = 1e-3
    # Mesh-rigged heads (mesh, emotag) at render time: the learned residual's AU input for a request beyond the
    # training clip's range (+ emogs.avatar.CLAMP_MARGIN; the mesh always gets the request as asked). "fade": it
    # goes back to the default expression's value over `residual_fade` of further request, so far beyond the clip
    # the mesh alone moves the face (emogs.avatar.residual_aus); "hold" (default): clamped at the range's edge.
    # "fade" measured within noise of "hold" on one head (docs/control_proof.md, session 5: lip shift -0.05 px,
    # AU09 +0.34 -> +0.30), so it stays opt-in. Free heads always clamp (they have no mesh to carry the rest).
    residual_beyond: str = "hold"
    residual_fade: float = 0.3

    def flags(self) -> dict[str, bool]:
        if self.kind not in (*MODEL_KINDS, "auto"):
            raise ValueError(f"unknown model kind '{self.kind}' (choose from {', '.join(MODEL_KINDS)})")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant '{self.variant}' (choose from {', '.join(VARIANTS)})")
        return dict(VARIANTS[self.variant])

    @property
    def use_au(self) -> bool:
        return self.flags()["use_au"]

    @property
    def use_citae(self) -> bool:
        return self.flags()["use_citae"]

    @property
    def use_szpab(self) -> bool:
        return self.flags()["use_szpab"]
