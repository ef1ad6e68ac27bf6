#!/usr/bin/env bash
# One GPU call (device tool, <= 10 minutes): EmoTaG few-shot (docs/fewshot.md). Pretrain a BASE on the packed
# identities (all GPUs of the machine through torchrun, one process per GPU), then, at the same time, for each
# test person: `emogs adapt` from the base on their first 5 s, and `emogs train` (the mesh head, per person,
# from scratch) on the same 5 s for the same wall-clock budget; both evaluated on the person's test split.
#
#   bash scripts/gpu_fewshot.sh
#
# Environment (defaults in brackets):
#   FS_PRETRAIN_S [300]   pretraining wall seconds (the base checkpoints when they run out)
#   FS_PRETRAIN_STEPS [8000] the pretraining schedule's length (the budget usually stops it first)
#   FS_ADAPT_S [100]      training-iteration seconds of each adaptation and of each from-scratch run
#   FS_SECONDS [5]        seconds of the test person's video used
#   FS_DEVICE [cuda]      cuda | cpu (cpu: the same pipeline at a tiny size, to check it end to end here)
#   FS_CONFIG_JSON        extra overrides for pretraining (e.g. the tiny CPU sizes)
#   FS_ADAPT_JSON         extra overrides (non-model) for adaptation and the from-scratch runs
#                         ['{"resolution": 512, "loss.sync": 0.0, "loss.au": 0.0}': the test packs carry no Whisper
#                         rows, which L_sync needs and the GPU image cannot compute]
#   FS_SCRATCH_JSON       overrides for the from-scratch runs only [FS_ADAPT_JSON] (the budget is added to it)
#   FS_ADAPT_ARGS         extra `emogs adapt` flags (e.g. "--net-lr-scale 1" or "--base-shell")
#   FS_EMOTION_DIM [8]    the emotion latent's size (semantic emotion guidance; 0: none, the heads of before). Its
#                         FER2013 scores travel in the packs (fer.npz: pack-fewshot computes them here; the GPU
#                         image has no ai_edge_litert): with it > 0 a pack without fer.npz stops the call at once
#   FS_RETURN_MODEL [0]   1: the adapted runs' model.safetensors come back too (in models.tar, 15 MiB parts)
#
# Here, first (repository root; .gpu_fewshot/, .gpu/ and .whl/ are git-ignored and travel with `carry`):
#   python scripts/fewshot_data.py -o /work/scratch-fewshot/ds
#   python -m emogs.train.gpu pack-fewshot /work/scratch-fewshot/ds/split.json .gpu_fewshot --seconds 4 --max-mb 14
#   python -m emogs.train.gpu pack-assets .gpu/train_assets ; pip download --no-deps gsplat==1.5.3 -d .whl
# Device tool (x4: pretraining on 4 GPUs, then the 6 jobs on 4 GPUs):
#   run(command="bash scripts/gpu_fewshot.sh", kind="nvidia-h200-x4", timeout_s=600,
#       carry=[".gpu_fewshot", ".gpu/train_assets", ".whl"])
# On the CPU here (tiny, end to end):
#   FS_DEVICE=cpu FS_PRETRAIN_S=20 FS_ADAPT_S=10 FS_CONFIG_JSON='{"resolution":48,...}' OUT=/tmp/fs bash scripts/gpu_fewshot.sh
# Back here: results.tar (every run's metrics, logs, test video + audio, run.json; the base's log and json),
# session.log; then `emogs eval RUN` here for LMD / AUE / sync (the GPU image has no MediaPipe).
set -uo pipefail
OUT="${OUT:-./gpu_out}"; mkdir -p "$OUT/logs"
T0=$(date +%s)
LOG="$OUT/session.log"; : > "$LOG"
DEV="${FS_DEVICE:-cuda}"; PRE_S="${FS_PRETRAIN_S:-300}"; PRE_STEPS="${FS_PRETRAIN_STEPS:-8000}"
AD_S="${FS_ADAPT_S:-100}"; SEC="${FS_SECONDS:-5}"
W=/tmp/fewshot; rm -rf "$W"; mkdir -p "$W"   # never resume a stale base or run left on a warm machine
export PYTHONPATH="$PWD:/tmp/site:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 EMOGS_ASSETS="$PWD/.gpu/train_assets"
PY=python3; command -v python3 >/dev/null || PY=python
[ -n "${FS_PYTHON:-}" ] && PY="$FS_PYTHON"
say() { echo "[fewshot] $* at $(( $(date +%s) - T0 ))s" | tee -a "$LOG"; }
if [ "$DEV" = cuda ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/gsplat-*.whl
  export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
  nvidia-smi --query-gpu=index,name,memory.total --format=csv | tee -a "$LOG"
  NGPU=$(nvidia-smi -L | wc -l)
  $PY - <<'PY' 2>&1 | tee -a "$LOG"
import time, torch
t = time.time()
from emogs.render import rasterize
n = 1000
K = torch.tensor([[500., 0, 256], [0, 500., 256], [0, 0, 1]], device="cuda")[None]
m = torch.randn(n, 3, device="cuda") + torch.tensor([0, 0, 10.0], device="cuda")
rasterize(m, torch.randn(n, 4, device="cuda"), torch.full((n, 3), 0.1, device="cuda"), torch.full((n,), 0.5, device="cuda"),
          torch.rand(n, 3, device="cuda"), torch.eye(4, device="cuda")[None], K, 512, 512, backend="gsplat")
torch.cuda.synchronize()
print(f"[fewshot] gsplat compiled and ready in {time.time() - t:.1f}s")
PY
else
  NGPU=1
  export EMOGS_DIST_BACKEND=gloo
fi
NCPU=$(nproc)
IDS=$(ls -d .gpu_fewshot/pretrain/*/ | sed 's:/$::' | tr '\n' ' ')
TESTS=$(ls -d .gpu_fewshot/test/*/ | sed 's:/$::' | tr '\n' ' ')
say "$NGPU GPU(s), $NCPU CPUs, $(echo $IDS | wc -w) pretraining identities, tests: $(echo $TESTS | xargs -n1 basename | tr '\n' ' ')"

EMO_DIM=${FS_EMOTION_DIM:-8}
if [ "$EMO_DIM" -gt 0 ]; then
  for d in $IDS $TESTS; do
    if [ ! -f "$d/fer.npz" ]; then
      say "$d has no fer.npz (FER2013 scores for the emotion guidance): repack here with this emogs's pack-fewshot, or FS_EMOTION_DIM=0"
      exit 2
    fi
  done
fi

# 1. pretraining (one process per GPU; gradients averaged across them)
PRE_JSON=$($PY -c "import json,os; d={'resolution':256,'checkpoint_every':1000}; d.update(json.loads(os.environ.get('FS_CONFIG_JSON') or '{}')); m=d.setdefault('model', {}); m.setdefault('emotion_dim', int(os.environ.get('FS_EMOTION_DIM') or 8)); print(json.dumps(d))")
PER=$(( NCPU / NGPU )); [ "$PER" -gt 8 ] && PER=8; [ "$PER" -lt 1 ] && PER=1
if [ "$NGPU" -gt 1 ]; then
  LAUNCH=($PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" -m emogs.cli)
else
  LAUNCH=($PY -m emogs.cli)
fi
OMP_NUM_THREADS=$PER timeout $(( PRE_S + 150 )) "${LAUNCH[@]}" pretrain $IDS -o "$W/base" --steps "$PRE_STEPS" \
  --budget-s "$PRE_S" --device "$DEV" --config-json "$PRE_JSON" > "$OUT/logs/pretrain.log" 2>&1
say "pretrain rc=$? ($(grep -c . "$W/base/pretrain_log.jsonl" 2>/dev/null || echo 0) log lines)"

# 2. adapt + from-scratch, all at once, round robin over the GPUs
AD_JSON="${FS_ADAPT_JSON:-}"; [ -z "$AD_JSON" ] && AD_JSON='{"resolution": 512, "loss.sync": 0.0, "loss.au": 0.0}'
NJOB=$(( 2 * $(echo $TESTS | wc -w) )); PER=$(( NCPU / NJOB )); [ "$PER" -lt 1 ] && PER=1; [ "$PER" -gt 8 ] && PER=8
i=0
for t in $TESTS; do
  name=$(basename "$t")
  for mode in adapt scratch; do
    gpu=$(( i % NGPU )); i=$(( i + 1 ))
    (
      export CUDA_VISIBLE_DEVICES=$([ "$DEV" = cuda ] && echo $gpu || echo "") OMP_NUM_THREADS=$PER MKL_NUM_THREADS=$PER
      s=$(date +%s)
      if [ "$mode" = adapt ]; then
        timeout $(( AD_S + 240 )) $PY -m emogs.cli adapt "$W/base" "$t" -o "$W/runs/${name}_adapt" --seconds "$SEC" \
          --budget-s "$AD_S" --device "$DEV" --config-json "$AD_JSON" ${FS_ADAPT_ARGS:-} > "$OUT/logs/${name}_adapt.log" 2>&1
      else  # the same frames: the view's train split is the first 5 s; the mesh head from scratch, same budget
        over=$($PY -c "import json,sys; d=json.loads(sys.argv[1]); d['time_budget_s']=float(sys.argv[2]); print(json.dumps(d))" "${FS_SCRATCH_JSON:-$AD_JSON}" "$AD_S")
        echo "$over" > "$W/${name}_scratch.json"  # a file: `emogs train` takes long JSON text badly
        timeout $(( AD_S + 240 )) $PY -m emogs.cli train "$t" -o "$W/runs/${name}_scratch" --device "$DEV" --model mesh \
          --config-json "$W/${name}_scratch.json" > "$OUT/logs/${name}_scratch.log" 2>&1
      fi
      rc=$?
      echo "{\"job\": \"${name}_$mode\", \"rc\": $rc, \"wall_s\": $(( $(date +%s) - s )), \"gpu\": \"$gpu\"}" > "$OUT/logs/${name}_$mode.job.json"
      say "${name}_$mode (GPU $gpu) rc=$rc in $(( $(date +%s) - s ))s"
    ) &
  done
done
wait
say "all jobs done"

# 3. results: one tar of the small files (+ the adapted models when asked)
files=()
for f in base.json config.json pretrain_log.jsonl; do [ -f "$W/base/$f" ] && files+=("base/$f"); done
for r in "$W"/runs/*/; do
  n=$(basename "$r")
  for f in metrics.json run.json config.json dataset.json train_log.jsonl test_render.mp4 test_render.wav; do
    [ -f "$r/$f" ] && files+=("runs/$n/$f")
  done
  last=$(ls "$r/previews"/*.png 2>/dev/null | tail -n 1); [ -n "$last" ] && files+=("runs/$n/previews/$(basename "$last")")
done
cp "$OUT"/logs/* "$W/" 2>/dev/null; for f in "$OUT"/logs/*; do files+=("$(basename "$f")"); done
tar -C "$W" -cf "$OUT/results.tar" "${files[@]}"
if [ "${FS_RETURN_MODEL:-0}" = 1 ]; then
  m=(); for r in "$W"/runs/*_adapt/; do n=$(basename "$r"); for f in model.safetensors speech_aus.safetensors background.png train_cameras.npz; do
    [ -f "$r/$f" ] && m+=("runs/$n/$f"); done; done
  [ ${#m[@]} -gt 0 ] && tar -C "$W" -cf "$OUT/models.tar" "${m[@]}"
fi
for t in "$OUT"/*.tar; do
  [ -f "$t" ] && [ "$(stat -c %s "$t")" -gt 15728640 ] && split -b 15M -d "$t" "$t.part" && rm "$t"
done
rm -rf "$OUT/logs"
$PY - "$W" <<'PY' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
w = Path(sys.argv[1])
for r in sorted((w / "runs").glob("*")):
    m = json.loads((r / "metrics.json").read_text()) if (r / "metrics.json").is_file() else {}
    ri = json.loads((r / "run.json").read_text()) if (r / "run.json").is_file() else {}
    f, fc, fd = m.get("full", {}), m.get("face", {}), m.get("field", {})
    print(f"[fewshot] {r.name:32s} PSNR {f.get('psnr')} face {fc.get('psnr')} field {fd.get('psnr')} "
          f"LPIPS {f.get('lpips')} iters {ri.get('iterations')} adapt {ri.get('adapt', {}).get('wall_s')}")
PY
ls -la "$OUT" | tee -a "$LOG"
say "total"
