"""AUNet: a small CNN that reads the 17 AU intensities (`emogs.face.aus.AU_NAMES`) from a face crop.

Trained here (scripts/train_aunet.py) to reproduce emogs' own AU tracks (MediaPipe blendshapes + landmark
geometry, `tracks.npz` `aus`) on real frames, so that an AU-consistency loss can reach rendered pixels,
which MediaPipe cannot (it is not differentiable).

    net = load_aunet()                                   # shipped weights, eval mode, frozen
    crops = face_crops(frames, affines)                  # (B, H, W, 3) [0, 1] -> (B, 112, 112, 3)
    aus = net(crops)                                     # (B, 17) in [0, 1]
    loss = au_consistency_loss(net, crops, target_aus)   # mean |AUNet(crops) - target|

`affines` come from `emogs.experts.crops.crop_affines(gt_landmarks, FACE)`. Pure: tensors in and out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from emogs.experts.crops import FACE, CropRegion, sample_crops

NUM_AUS = 17


@dataclass
class AUNetConfig:
    size: int = FACE.height  # square RGB crop side
    width: int = 24
    num_aus: int = NUM_AUS
    crop_region: dict = field(default_factory=lambda: {"x0": FACE.x0, "x1": FACE.x1, "y0": FACE.y0, "y1": FACE.y1})

    @property
    def region(self) -> CropRegion:
        r = self.crop_region
        return CropRegion(r["x0"], r["x1"], r["y0"], r["y1"], self.size, self.size)


class _Res(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                               nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if cin == cout and stride == 1 else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.a(x) + self.skip(x))


class AUNet(nn.Module):
    """(B, S, S, 3) RGB face crops in [0, 1] (channels last) -> (B, 17) AU intensities in [0, 1]."""

    def __init__(self, cfg: AUNetConfig | None = None):
        super().__init__()
        self.cfg = c = cfg or AUNetConfig()
        w = c.width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),  # 56
            _Res(w, 2 * w, 2),  # 28
            _Res(2 * w, 4 * w, 2),  # 14
            _Res(4 * w, 8 * w, 2),  # 7
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * w, c.num_aus))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = (crops.permute(0, 3, 1, 2) - 0.45) / 0.25
        return torch.sigmoid(self.net(x))


def face_crops(frames: torch.Tensor, affines: torch.Tensor, region: CropRegion = FACE) -> torch.Tensor:
    """(B, H, W, 3) frames in [0, 1] + (B, 2, 3) crop affines -> (B, S, S, 3), differentiable."""
    return sample_crops(frames, affines, region)


def au_consistency_loss(aunet: AUNet, face_crops_rgb: torch.Tensor, target_aus: torch.Tensor,
                        weights: torch.Tensor | None = None) -> torch.Tensor:
    """L_AU = mean |AUNet(crops) - target| over the batch and the 17 AUs (optional per-AU `weights` (17,)).
    face_crops_rgb (B, S, S, 3) float [0, 1] (`face_crops` of the renders); target_aus (B, 17)."""
    pred = aunet(face_crops_rgb)
    err = (pred - target_aus.to(pred.dtype)).abs()
    if weights is not None:
        w = weights.to(err)
        return (err * w).sum(-1).mean() / w.sum()
    return err.mean()


AUNET_WEIGHTS = "aunet"


def load_aunet(path=None, device: str | torch.device = "cpu") -> AUNet:
    """The shipped AUNet (or the weight file `path`), in eval mode with frozen parameters."""
    import dataclasses

    from emogs.config import from_dict
    from emogs.experts.weights import load_info, load_state, weights_path

    p = weights_path(AUNET_WEIGHTS) if path is None else path
    info = load_info(p)
    names = {f.name for f in dataclasses.fields(AUNetConfig)}
    model = AUNet(from_dict(AUNetConfig, {k: v for k, v in info["config"].items() if k in names}))
    model.load_state_dict(load_state(p))
    return model.to(device).eval().requires_grad_(False)
