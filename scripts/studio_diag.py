#!/usr/bin/env python
"""Why the studio's frame is slower as `emogs studio` than `LiveStream.render` in a script: the studio's
start-up benchmark (render + JPEG, `Studio._benchmark`) in fresh subprocesses that differ only in what runs
before the avatar loads. The parent process never touches the GPU.

    python scripts/studio_diag.py RUN [--device cuda]
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ("from emogs.studio.server import Studio, StudioConfig, load_avatar\n"
         "import torch, time\n"
         "cfg = StudioConfig(device=DEV)\nav = load_avatar(RUN, cfg)\nst = Studio(av, cfg)\n"
         "print(f'[bench] {st.render_ms:.1f} ms first, then', ' '.join(f'{st._benchmark():.1f}' for _ in range(3)),"
         " f'ms; torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={__import__(\"os\").environ.get(\"OMP_NUM_THREADS\")}', flush=True)\n"
         "st.close()\n")
CASES = {
    "torch first": "import torch\n",
    "configure_threads first (as emogs.cli main)": "from emogs.runtime import configure_threads\nconfigure_threads()\n",
    "cv2 first": "import cv2\n",
    "OMP_NUM_THREADS=16 env, torch first": "import torch\n",
}


def main() -> int:
    run = sys.argv[1]
    dev = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda"
    for name, pre in CASES.items():
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
        if name.startswith("OMP"):
            env["OMP_NUM_THREADS"] = "16"
        code = pre + f"RUN, DEV = {run!r}, {dev!r}\n" + BENCH
        t = time.time()
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        lines = [ln for ln in (r.stdout + r.stderr).splitlines() if "[bench]" in ln or "Error" in ln]
        print(f"[diag] {name}: {' | '.join(lines[-2:]) or r.stderr[-300:]} ({time.time() - t:.0f}s)", flush=True)
    p = subprocess.Popen([sys.executable, "-m", "emogs.cli", "studio", run, "--port", "0", "--device", dev],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                         env={**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"})
    for ln in p.stderr:
        if "ms a frame" in ln or "rror" in ln:
            print(f"[diag] emogs studio: {ln.strip()}", flush=True)
            break
    p.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
