#!/usr/bin/env bash
# The README's main job: sets everything up, then trains a Probabilistic TopK SAE (K = 8, 16x
# expansion) on all-MiniLM-L6-v2's residual stream (entering block 4) over the offline pydoc corpus,
# on CPU, and prints held-out explained variance, L0 and alive latents plus where the plot is.
# Re-running resumes (or, when finished, re-reports) the same run directory.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/probsae train \
  --arch prob_topk --k 8 --expansion 16 \
  --model minilm --hook resid_pre.4 --corpus pydoc --context-length 256 --eval-tokens 20000 \
  --steps 600 --batch-size 4096 --lr 1e-3 --warmup-steps 50 --log-every 20 --checkpoint-every 100 \
  --out runs/minilm-prob_topk-k8 "$@"
