#!/usr/bin/env bash
# Build, on this (CPU) machine, everything a `scripts/gpu_session.sh` call carries to the device, from a fresh
# checkout (after `bash install.sh`); ~6 minutes on 2 cores. Everything lands in git-ignored folders:
#   DATASETS/{macron_50s,acosta_71s}   `emogs prepare` of the two clips (default DATASETS=../datasets)
#   .gpu/ds_macron (with Whisper rows)  .gpu/ds_acosta   packed training inputs (`python -m emogs.train.gpu pack-dataset`)
#   .gpu/train_assets                   ICT-FaceKit, experts, speech prior (`pack-assets`)
#   .gpu/drive/{obama_5s,RD_Radio31,RD_Radio34}.wav and .gpu/feature_cache (their Whisper rows: the GPU image has
#                                       no faster-whisper)
#   .whl/gsplat-1.5.3-*.whl
# Then e.g. (device tool; carry [".gpu/drive", ".gpu/ds_macron", ".gpu/feature_cache", ".gpu/train_assets", ".whl"]):
#   EMOGS_TRAIN_BUDGET_S=200 EMOGS_FPS=0 bash scripts/gpu_session.sh macron:full:base ...
# The working tree and the carried folders must stay under 64 MiB together (the repository is ~21 MB): carry one
# of ds_macron / ds_acosta with the drive audio, or both without .gpu/feature_cache.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASETS="${DATASETS:-../datasets}"
PY=.venv/bin/python
export OMP_NUM_THREADS=1
mkdir -p "$DATASETS" .gpu/drive .whl
for clip in macron_50s acosta_71s; do
  [ -f "$DATASETS/$clip/manifest.json" ] || .venv/bin/emogs prepare "../shared/data/video/$clip.mp4" -o "$DATASETS/$clip" &
done
ls .whl/gsplat-1.5.3-*.whl > /dev/null 2>&1 || $PY -m pip download -q --no-deps gsplat==1.5.3 -d .whl
$PY - <<'PY'
from emogs.io.media import load_audio, write_wav
for name, src in [("obama_5s", "obama_5s.wav"), ("RD_Radio31", "RD_Radio31_000.wav"), ("RD_Radio34", "RD_Radio34_002.wav")]:
    write_wav(f".gpu/drive/{name}.wav", load_audio(f"../shared/data/audio/{src}", 16000), 16000)
PY
$PY -m emogs.train.gpu pack-assets .gpu/train_assets
wait
$PY -m emogs.train.gpu pack-dataset "$DATASETS/macron_50s" .gpu/ds_macron --whisper
$PY -m emogs.train.gpu pack-dataset "$DATASETS/acosta_71s" .gpu/ds_acosta
EMOGS_FEATURE_CACHE=.gpu/feature_cache OMP_NUM_THREADS=2 $PY - <<'PY'
import emogs.audio
from emogs.io.media import load_audio
for w in ["obama_5s", "RD_Radio31", "RD_Radio34"]:
    emogs.audio.feature_rows(load_audio(f".gpu/drive/{w}.wav", 16000), "whisper")
PY
find .gpu -name .cache -type d -prune -exec rm -rf {} +
du -sh .gpu/* .whl
