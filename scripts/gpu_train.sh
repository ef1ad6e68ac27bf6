#!/usr/bin/env bash
# Full training of a prepared dataset on the GPU machine in ONE command of at most 10 minutes.
#
# Here, once (repository root; .whl/ and .gpu/ are git-ignored and travel with `carry`):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl gsplat==1.5.3                      # (already there if the render work fetched it)
#   python -m emogs.train.gpu pack-assets .gpu/train_assets   # canonical mesh + LPIPS-alex weights (10 MB)
#   emogs prepare ../shared/data/video/macron_50s.mp4 -o .gpu/ds_macron     # 512 px, Whisper features
#   rm -rf .gpu/ds_macron/.cache .gpu/ds_macron/.prepare .gpu/ds_macron/report  # not needed there
# Device tool:  run(command="bash scripts/gpu_train.sh .gpu/ds_macron", carry=[".whl", ".gpu"], timeout_s=600)
# Afterwards, here:  python -m emogs.train.gpu mux <fetched folder>   (mux the test audio into test_render.mp4:
#   the GPU image has no PyAV, so frames are decoded with OpenCV and the video is written without audio).
#
# The image has torch 2.11+cu130, numpy, safetensors, opencv; gsplat compiles its CUDA kernels (JIT) first.
# Results in $OUT: model.safetensors, config.json, metrics.json, gpu_report.json (time, iterations, peak
# memory), test_render.mp4 + test_audio.wav, train_log.jsonl, dataset.json, the last preview, train.log.
set -euo pipefail
DS="${1:?usage: scripts/gpu_train.sh DATASET [python -m emogs.train.gpu options]}"
shift
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
T0=$(date +%s)
LIMIT="${EMOGS_GPU_LIMIT_S:-570}"  # seconds this whole command may take (device limit 600)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/gsplat-*.whl \
  $(ls .whl/av-*.whl 2>/dev/null || true)
export PYTHONPATH="$PWD:/tmp/site:${PYTHONPATH:-}" TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/train.log"
# compile gsplat's kernels now so the training budget below knows what is left
python3 - <<'PY' 2>&1 | tee -a "$OUT/train.log"
import time, torch
t = time.time()
from emogs.render import rasterize
n = 1000
K = torch.tensor([[500., 0, 256], [0, 500., 256], [0, 0, 1]], device="cuda")[None]
vm = torch.eye(4, device="cuda")[None]
m = torch.randn(n, 3, device="cuda") + torch.tensor([0, 0, 10.0], device="cuda")
out = rasterize(m, torch.randn(n, 4, device="cuda"), torch.full((n, 3), 0.1, device="cuda"),
                torch.full((n,), 0.5, device="cuda"), torch.rand(n, 3, device="cuda"), vm, K, 512, 512, backend="gsplat")
torch.cuda.synchronize()
print(f"[gpu] gsplat ready in {time.time() - t:.1f}s, alpha mean {out.alpha.mean().item():.3f}")
PY
# what is left after the compile, minus ~150 s for loading the clip, initialisation and the test-split evaluation
BUDGET=$(( LIMIT - ($(date +%s) - T0) - 150 ))
echo "[gpu] training budget ${BUDGET}s" | tee -a "$OUT/train.log"
python3 -m emogs.train.gpu "$DS" /tmp/emogs_run --budget-s "$BUDGET" --out "$OUT" "$@" 2>&1 | tee -a "$OUT/train.log"
echo "[gpu] total $(( $(date +%s) - T0 ))s" | tee -a "$OUT/train.log"
