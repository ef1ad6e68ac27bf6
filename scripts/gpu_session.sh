#!/usr/bin/env bash
# One GPU call (device tool, <= 10 minutes): train prepared clips, one training per GPU (round robin over the
# GPUs the machine has), then measure end-to-end render FPS of the first run.
#
#   bash scripts/gpu_session.sh JOB [JOB ...]     JOB = DATASET[:VARIANT[:TAG[:ITERS[:SEED]]]]
#                                                 e.g. macron macron:audio acosta:full macron:au:::2
#
# Each JOB trains .gpu/ds_DATASET into /tmp/runs/DATASET[_VARIANT][_TAG][_sSEED]; VARIANT is a model variant
# (audio | au | au_szpab | au_citae | full, default full; the paper's L_sync and L_AU are off by default: a TAG with
# EMOGS_CONFIG_JSON_<TAG>='{"loss.sync": 0.1, "loss.au": 0.05}' adds them; they read the dataset's
# audio_whisper.npy: pack it with `pack-dataset ... --whisper`); ITERS fixes that job's iteration count; SEED
# the training seed (config `seed`, default 0). The ablation table of such runs: scripts/ablation_table.py. Environment:
#   EMOGS_TRAIN_ITERS=N      fixed iteration count for every job (ablations: same iterations for all)
#   EMOGS_TRAIN_BUDGET_S=S   wall-clock training budget per job (default: what the 10 minutes leave)
#   EMOGS_CONFIG_JSON=JSON   config overrides for every job (e.g. '{"model.audio_feature": "whisper"}')
#   EMOGS_CONFIG_JSON_<TAG>  overrides for the jobs with that TAG only
#   EMOGS_FPS=0              skip the render benchmark (default: the first job, alone, once every job is done)
#   EMOGS_CONTROLS_AUDIO=WAV after each job: `emogs eval-controls RUN --audio WAV --standard --render-only` (16 kHz
#                            mono WAV: no PyAV there); the videos come back in the run's tar, measured here with
#                            `emogs eval-controls RUN --audio WAV --standard --measure-only -o RUN/eval_controls`
#   EMOGS_CONTROLS_NOISE=SD  with EMOGS_CONTROLS_AUDIO: also the AU-noise stress test (`--au-noise SD`; measure here
#                            with the same `--standard --au-noise SD --measure-only`)
#   EMOGS_SPEECH_AUDIOS="A.wav B.wav"  after each job: `emogs eval-speech RUN --audio ... --render-only` (16 kHz mono
#                            WAVs; their Whisper rows in .gpu/feature_cache, EMOGS_FEATURE_CACHE), measured here with
#                            `emogs eval-speech RUN --audio <the same files> --dataset datasets/NAME -o RUN/eval_speech`
#   EMOGS_RETURN_MODEL=0     leave model.safetensors out of the tars ("NAME1 NAME2": only those runs' weights come back; run names drop the variant full: macron:full:px -> macron_px; an unknown name stops the call before any work) (64 MiB come back at most; tars over 15 MiB
#                            come back in parts: cat NAME.tar.part* > NAME.tar)
#   EMOGS_STUDIO_AUDIO=WAV   after the FPS benchmark: scripts/studio_measure.py on the first run (python client;
#                            carry the aiohttp wheels in .whl/studio)
#
# Here, first (repository root; .gpu/ and .whl/ are git-ignored and travel with `carry`):
#   emogs prepare ../shared/data/video/macron_50s.mp4 -o datasets/macron   (and acosta_71s.mp4 -> datasets/acosta)
#   for n in macron acosta; do mkdir -p .gpu/ds_$n; cp datasets/$n/{manifest.json,frames.mp4,audio.wav,tracks.npz,\
#     labels.mkv,background.png,audio_mel.npy,audio_whisper.npy} .gpu/ds_$n/; done   # what training reads
#   python -m emogs.train.gpu pack-assets .gpu/train_assets
#   gsplat wheel: pip download --no-deps gsplat==1.5.3 -d .whl
# Device tool (kind nvidia-h200-x4 runs four jobs at once; one GPU runs them one after another's GPU share):
#   run(command="EMOGS_TRAIN_ITERS=4500 bash scripts/gpu_session.sh macron:full macron:audio macron:au macron:au_szpab",
#       kind="nvidia-h200-x4", timeout_s=600, carry=[".gpu/ds_macron", ".gpu/train_assets", ".whl"])
# Back here: one tar per run (model, config, metrics, gpu_report, logs, test video + audio, last preview, FPS json)
# and session.log under files_at; `python -m emogs.io.media mux RUN/test_render.mp4` adds the test audio
# (the GPU image has no PyAV). At most 8 files come back: at most 7 jobs per call.
set -uo pipefail
OUT="${OUT:-./gpu_out}"; mkdir -p "$OUT/logs"
T0=$(date +%s); LIMIT="${EMOGS_GPU_LIMIT_S:-575}"
# seconds left before LIMIT; the steps after training run only while enough is left for them and the packing
# (a call that runs past the device's 600 s returns nothing at all)
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
LOG="$OUT/session.log"
# a job's run name: DATASET[_VARIANT unless full][_TAG][_sSEED]
job_name() {
  local ds variant tag iters seed name; IFS=: read -r ds variant tag iters seed <<< "$1"; variant=${variant:-full}
  name="$ds"; [ "$variant" != full ] && name="${name}_$variant"; [ -n "$tag" ] && name="${name}_$tag"
  [ -n "$seed" ] && name="${name}_s$seed"; echo "$name"
}
# EMOGS_RETURN_MODEL names runs: a name no job has would silently bring no weights back, so stop before any work
all_names=" "; for job in "$@"; do all_names+="$(job_name "$job") "; done
for want in ${EMOGS_RETURN_MODEL:-1}; do
  case "$want" in 0|1) ;; *) case "$all_names" in *" $want "*) ;; *)
    echo "error: EMOGS_RETURN_MODEL names '$want', which is no job's run name (these are:$all_names)" >&2; exit 2 ;; esac ;; esac
done
rm -rf /tmp/runs  # never resume a stale run left on a warm machine
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/gsplat-*.whl
export PYTHONPATH="$PWD:/tmp/site:${PYTHONPATH:-}" TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 PYTHONUNBUFFERED=1 EMOGS_ASSETS="$PWD/.gpu/train_assets"
# Whisper rows of the driving audio, computed here beforehand (the GPU image has no faster-whisper): emogs.audio.cache
[ -d .gpu/feature_cache ] && export EMOGS_FEATURE_CACHE="$PWD/.gpu/feature_cache"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv | tee "$LOG"
NGPU=$(nvidia-smi -L | wc -l); NCPU=$(nproc); NJOB=$#
# one compile for all jobs (the JIT cache is shared), before the trainings start
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
# per-job CPU threads: the step is host-bound, oversubscribed threads slow every job down
PER=$(( NCPU / (NJOB > 0 ? NJOB : 1) )); [ "$PER" -lt 1 ] && PER=1; [ "$PER" -gt 8 ] && PER=8
BUDGET=${EMOGS_TRAIN_BUDGET_S:-$(( (LIMIT - ($(date +%s) - T0) - 240) ))}
ITERS_ARG=(); [ -n "${EMOGS_TRAIN_ITERS:-}" ] && ITERS_ARG=(--iters "$EMOGS_TRAIN_ITERS")
echo "[gpu] $NGPU GPUs, $NCPU CPUs, $NJOB jobs ($PER threads each), budget ${BUDGET}s, iters ${EMOGS_TRAIN_ITERS:-auto}" | tee -a "$LOG"
names=(); i=0
for job in "$@"; do
  IFS=: read -r ds variant tag iters seed <<< "$job"; variant=${variant:-full}
  it_arg=("${ITERS_ARG[@]}"); [ -n "$iters" ] && it_arg=(--iters "$iters")
  seed_arg=(); [ -n "$seed" ] && seed_arg=(--seed "$seed")
  name=$(job_name "$job")
  names+=("$name"); gpu=$(( i % NGPU ))
  cfgvar="EMOGS_CONFIG_JSON_${tag}"; cfg="${!cfgvar:-${EMOGS_CONFIG_JSON:-}}"
  (
    export CUDA_VISIBLE_DEVICES=$gpu OMP_NUM_THREADS=$PER MKL_NUM_THREADS=$PER
    timeout $(( BUDGET + 200 )) python3 -m emogs.train.gpu ".gpu/ds_$ds" "/tmp/runs/$name" --budget-s "$BUDGET" \
      --variant "$variant" "${it_arg[@]}" "${seed_arg[@]}" ${cfg:+--config-json "$cfg"} > "$OUT/logs/train_$name.log" 2>&1
    echo "[gpu] $name (GPU $gpu) finished rc=$? at $(( $(date +%s) - T0 ))s" | tee -a "$LOG"
    if [ -n "${EMOGS_CONTROLS_AUDIO:-}" ] && [ -f "/tmp/runs/$name/model.safetensors" ] && [ "$(left)" -gt 90 ]; then
      timeout 240 python3 -m emogs.cli eval-controls "/tmp/runs/$name" --audio "$EMOGS_CONTROLS_AUDIO" --standard \
        ${EMOGS_CONTROLS_NOISE:+--au-noise "$EMOGS_CONTROLS_NOISE"} --render-only --device cuda -o "/tmp/runs/$name/eval_controls" > "$OUT/logs/controls_$name.log" 2>&1
      echo "[gpu] $name controls renders rc=$? at $(( $(date +%s) - T0 ))s" | tee -a "$LOG"
    fi
    if [ -n "${EMOGS_SPEECH_AUDIOS:-}" ] && [ -f "/tmp/runs/$name/model.safetensors" ] && [ "$(left)" -gt 70 ]; then
      # shellcheck disable=SC2086
      timeout 200 python3 -m emogs.cli eval-speech "/tmp/runs/$name" --audio $EMOGS_SPEECH_AUDIOS --dataset ".gpu/ds_$ds" \
        --render-only --device cuda -o "/tmp/runs/$name/eval_speech" > "$OUT/logs/speech_$name.log" 2>&1
      echo "[gpu] $name speech renders rc=$? at $(( $(date +%s) - T0 ))s" | tee -a "$LOG"
    fi
  ) &
  i=$(( i + 1 ))
done
wait
# the first run's render speed, alone on the machine once every job is done (a clean measurement)
first="${names[0]:-}"; fds="${1%%:*}"
if [ -n "$first" ] && [ "${EMOGS_FPS:-1}" != 0 ] && [ -f "/tmp/runs/$first/model.safetensors" ] && [ "$(left)" -gt 170 ]; then
  timeout $(( $(left) - 40 )) python3 scripts/gpu_render_fps.py "/tmp/runs/$first" --audio ".gpu/ds_$fds/audio.wav" \
    --device cuda --batches 1,8 > "$OUT/logs/fps_$first.log" 2>&1
  echo "[gpu] FPS benchmark rc=$? at $(( $(date +%s) - T0 ))s" | tee -a "$LOG"
fi
# the studio's latency and frame rate on the first run (python client; aiohttp wheels in .whl/studio)
if [ -n "$first" ] && [ -n "${EMOGS_STUDIO_AUDIO:-}" ] && [ -f "/tmp/runs/$first/model.safetensors" ] && [ "$(left)" -gt 60 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/studio/*.whl
  timeout $(( $(left) / 2 - 10 )) python3 scripts/studio_profile.py "/tmp/runs/$first" "$EMOGS_STUDIO_AUDIO" --device cuda \
    -o "/tmp/runs/$first/studio/profile.json" > "$OUT/logs/studio_profile_$first.log" 2>&1
  echo "[gpu] studio profile rc=$? at $(( $(date +%s) - T0 ))s" | tee -a "$LOG"
  [ "$(left)" -gt 45 ] && timeout $(( $(left) - 30 )) python3 scripts/studio_measure.py "/tmp/runs/$first" "$EMOGS_STUDIO_AUDIO" -o "/tmp/runs/$first/studio" \
    --device cuda --client python > "$OUT/logs/studio_$first.log" 2>&1
  echo "[gpu] studio measure rc=$? at $(( $(date +%s) - T0 ))s" | tee -a "$LOG"
fi
echo "[gpu] all done at $(( $(date +%s) - T0 ))s" | tee -a "$LOG"
for name in "${names[@]}"; do
  r="/tmp/runs/$name"; [ -d "$r" ] || continue
  mv "$OUT/logs/train_$name.log" "$r/train.log"; [ -f "$OUT/logs/fps_$name.log" ] && mv "$OUT/logs/fps_$name.log" "$r/fps.log"
  [ -f "$OUT/logs/controls_$name.log" ] && mv "$OUT/logs/controls_$name.log" "$r/controls.log"
  [ -f "$OUT/logs/speech_$name.log" ] && mv "$OUT/logs/speech_$name.log" "$r/speech.log"
  [ -f "$OUT/logs/studio_$name.log" ] && mv "$OUT/logs/studio_$name.log" "$r/studio.log"
  [ -f "$OUT/logs/studio_profile_$name.log" ] && mv "$OUT/logs/studio_profile_$name.log" "$r/studio_profile.log"
  files=()
  models=(model.safetensors)  # EMOGS_RETURN_MODEL: 1 (all), 0 (none) or the run names whose weights come back
  case " ${EMOGS_RETURN_MODEL:-1} " in *" 1 "*|*" $name "*) ;; *) models=() ;; esac
  for f in "${models[@]}" speech_aus.safetensors speech_motion.safetensors config.json dataset.json background.png train_cameras.npz metrics.json \
           gpu_report.json train_log.jsonl train.log fps.log controls.log speech.log studio.log studio_profile.log render_benchmark.json test_render.mp4 \
           test_render.wav test_alpha.npz train_refine.safetensors run.json; do
    [ -f "$r/$f" ] && files+=("$name/$f")
  done
  for f in "$r"/eval_controls/videos/*.mp4 "$r"/eval_controls/videos/specs.json; do
    [ -f "$f" ] && files+=("$name/eval_controls/videos/$(basename "$f")")
  done
  for f in "$r"/eval_speech/videos/*.mp4 "$r"/eval_speech/videos/specs.json; do
    [ -f "$f" ] && files+=("$name/eval_speech/videos/$(basename "$f")")
  done
  for f in "$r"/studio/*.json; do [ -f "$f" ] && files+=("$name/studio/$(basename "$f")"); done
  last=$(ls "$r/previews"/*.png 2>/dev/null | tail -n 1); [ -n "$last" ] && files+=("$name/previews/$(basename "$last")")
  tar -C /tmp/runs -cf "$OUT/$name.tar" "${files[@]}"
  # at most 16 MiB a file comes back: larger tars in 15 MiB parts (cat NAME.tar.part* > NAME.tar here)
  if [ "$(stat -c %s "$OUT/$name.tar")" -gt 15728640 ]; then
    split -b 15M -d "$OUT/$name.tar" "$OUT/$name.tar.part" && rm "$OUT/$name.tar"
  fi
done
rmdir "$OUT/logs" 2>/dev/null
ls -la "$OUT" | tee -a "$LOG"
echo "[gpu] total $(( $(date +%s) - T0 ))s" | tee -a "$LOG"
