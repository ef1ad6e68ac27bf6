#!/usr/bin/env bash
# The exact command run on the device machine (one NVIDIA GPU, torch 2.11+cu130, Python 3.12, no internet) from
# the repository root, with the gsplat 1.5.3 wheel carried in .whl/ (see docs/render.md):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl gsplat==1.5.3
# gsplat's dependencies (jaxtyping, rich, ninja, numpy) are already on that machine's image.
set -euo pipefail
OUT="${OUT:-.}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/gsplat-1.5.3-*.whl
export PYTHONPATH="$PWD:/tmp/site:${PYTHONPATH:-}" TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
python3 scripts/gpu_render_parity_bench.py --out "$OUT/gpu_render.json" 2>&1 | tee "$OUT/gpu_render.log"
