#!/usr/bin/env bash
# One GPU call (device tool, <= 10 minutes): train two prepared clips at once on one GPU, then measure
# end-to-end render FPS of the first run and check our LPIPS against the reference package.
#
# Here, first (repository root; .gpu/ and .whl/ are git-ignored and travel with `carry`):
#   emogs prepare ../shared/data/video/macron_50s.mp4 -o datasets/macron   (and acosta_71s.mp4 -> datasets/acosta)
#   for n in macron acosta; do mkdir -p .gpu/ds_$n; cp datasets/$n/{manifest.json,frames.mp4,audio.wav,tracks.npz,\
#     labels.mkv,background.png,audio_mel.npy,audio_whisper.npy} .gpu/ds_$n/; done   # what training reads
#   python -m emogs.train.gpu pack-assets .gpu/train_assets
#   python scripts/gpu_lpips_parity.py --make-pairs; mkdir .gpu/lpips_alex; cp .gpu/lpips_pairs/pair0[0-5]_* \
#     .gpu/lpips_pairs/weights_alex.npz .gpu/lpips_alex/
# Device tool:
#   run(command="bash scripts/gpu_session.sh macron acosta", timeout_s=600,
#       carry=[".gpu/ds_macron", ".gpu/ds_acosta", ".gpu/train_assets", ".gpu/lpips_alex", ".whl"])
# Back here: tar files of each run (model + media) and session.log under files_at; `python -m emogs.train.gpu mux RUN`
# adds the test audio to test_render.mp4 (the GPU image has no PyAV).
set -uo pipefail
OUT="${OUT:-./gpu_out}"; mkdir -p "$OUT"
T0=$(date +%s); LIMIT="${EMOGS_GPU_LIMIT_S:-575}"
LOG="$OUT/session.log"
rm -rf /tmp/runs  # never resume a stale run left on a warm machine
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/gsplat-*.whl
export PYTHONPATH="$PWD:/tmp/site:${PYTHONPATH:-}" TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$LOG"
python3 - <<'PY' 2>&1 | tee -a "$LOG"
import time, torch
t = time.time()
from emogs.render import rasterize
n = 1000
K = torch.tensor([[500., 0, 256], [0, 500., 256], [0, 0, 1]], device="cuda")[None]
m = torch.randn(n, 3, device="cuda") + torch.tensor([0, 0, 10.0], device="cuda")
out = rasterize(m, torch.randn(n, 4, device="cuda"), torch.full((n, 3), 0.1, device="cuda"),
                torch.full((n,), 0.5, device="cuda"), torch.rand(n, 3, device="cuda"), torch.eye(4, device="cuda")[None],
                K, 512, 512, backend="gsplat")
torch.cuda.synchronize()
print(f"[gpu] gsplat compiled and ready in {time.time() - t:.1f}s")
PY
# training budget: EMOGS_TRAIN_BUDGET_S, or what is left minus ~150 s (clip loading, test-split evaluation) and
# ~70 s (benchmarks, packing). Logs go straight to $OUT so a timeout still brings them back; each training gets a
# hard timeout so the benchmarks and packing always run.
BUDGET=${EMOGS_TRAIN_BUDGET_S:-$(( (LIMIT - ($(date +%s) - T0) - 220) ))}
echo "[gpu] training budget ${BUDGET}s per run, runs in parallel: $*" | tee -a "$LOG"
for name in "$@"; do
  timeout $(( BUDGET + 190 )) python3 -m emogs.train.gpu ".gpu/ds_$name" "/tmp/runs/$name" --budget-s "$BUDGET" \
    > "$OUT/train_$name.log" 2>&1 &
done
wait
echo "[gpu] training done at $(( $(date +%s) - T0 ))s" | tee -a "$LOG"
first="$1"
timeout 60 python3 scripts/gpu_render_fps.py "/tmp/runs/$first" --audio ".gpu/ds_$first/audio.wav" --device cuda 2>&1 | tee -a "$LOG"
[ -d .gpu/lpips_alex ] && timeout 60 python3 scripts/gpu_lpips_parity.py --device cuda --pairs .gpu/lpips_alex --nets alex --out "$OUT" 2>&1 | tail -n 15 | tee -a "$LOG"
for name in "$@"; do
  r="/tmp/runs/$name"; [ -d "$r" ] || continue; cp "$OUT/train_$name.log" "$r/train.log"
  tar -C /tmp/runs -cf "$OUT/${name}_model.tar" "$name/model.safetensors" "$name/config.json" "$name/dataset.json" \
    "$name/background.png" "$name/train_cameras.npz" "$name/metrics.json" "$name/gpu_report.json" \
    "$name/train_log.jsonl" "$name/train.log" $( [ -f "$r/render_benchmark.json" ] && echo "$name/render_benchmark.json")
  last=$(ls "$r/previews"/*.png 2>/dev/null | tail -n 1)
  tar -C /tmp/runs -cf "$OUT/${name}_media.tar" "$name/test_render.mp4" "$name/test_audio.wav" \
    $( [ -n "$last" ] && echo "$name/previews/$(basename "$last")") $( [ -f "$r/gaussians.ply" ] && [ $(stat -c %s "$r/gaussians.ply") -lt 9000000 ] && echo "$name/gaussians.ply")
done
ls -la "$OUT" | tee -a "$LOG"
echo "[gpu] total $(( $(date +%s) - T0 ))s" | tee -a "$LOG"
