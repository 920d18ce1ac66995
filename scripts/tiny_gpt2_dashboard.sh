#!/usr/bin/env bash
# A GPT-2-shaped tiny causal LM (random weights, 3 blocks, d_model 32, built from a config: no
# download), a Probabilistic TopK SAE trained on its resid_pre.2 over random word text, and that
# run's dashboard with screenshots, into docs/results/dashboard/tiny-gpt2 (the committed copy was
# made by `bash scripts/tiny_gpt2_dashboard.sh`). The point is the page layout of a causal LM:
# logit effects (W_dec · W_U) are shown, which MiniLM (an encoder) cannot have. The latents of a
# random-weight model mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/tiny-gpt2}
OUT=${2:-docs/results/dashboard/tiny-gpt2}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python - "$WORK" <<'PY'
import random
import sys
from pathlib import Path

from probsae.cli.main import main
from probsae.data.tiny import TINY_WORDS, save_tiny_model

work = Path(sys.argv[1])
work.mkdir(parents=True, exist_ok=True)
if not (work / "model" / "config.json").is_file():
    save_tiny_model(work / "model", "gpt2", n_layers=3, d_model=32, max_positions=64)
rng = random.Random(0)
docs = (" ".join(rng.choice(TINY_WORDS) for _ in range(60)) for _ in range(400))
(work / "corpus.txt").write_text("\n\n".join(docs))
sys.exit(main(["train", "--arch", "prob_topk", "--k", "4", "--expansion", "4", "--model", str(work / "model"),
               "--hook", "resid_pre.2", "--corpus", str(work / "corpus.txt"), "--context-length", "48",
               "--eval-tokens", "1000", "--batch-size", "128", "--steps", "300", "--lr", "3e-3",
               "--warmup-steps", "20", "--no-progress", "--cache-dir", str(work / "cache"),
               "--out", str(work / "run")]))
PY
bash scripts/dashboard_screenshots.sh "$WORK/run" "$OUT" --n-windows 200
