#!/usr/bin/env bash
# The README's test command: sets everything up (venv, CPU torch, probsae, headless Chromium for the
# dashboard test) and runs the whole test suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_chromium.sh || echo "[test] chromium unavailable: the dashboard browser test will be skipped" >&2
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q "$@"
