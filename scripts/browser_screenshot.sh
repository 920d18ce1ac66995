#!/usr/bin/env bash
# The committed screenshots of the live browser on SmolLM2 (docs/results/browser/): `probsae serve`
# on a copy of a SmolLM2 run (nothing is written into RUN: its latent cache, if the dashboard built
# one, is copied and reused), then headless Chromium on the steering page of LATENT at STRENGTH for
# PROMPT, and on that latent's page. Prints both continuations. Made with
#   OMP_NUM_THREADS=1 bash scripts/browser_screenshot.sh /work/runs/smollm2-cpu/runs/prob_topk-k=8
# (PROBSAE_CORPORA pointing at the built offline-en corpus; 1 thread because the machine had 2 busy cores).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:?usage: scripts/browser_screenshot.sh RUN_DIR [OUT_DIR]}
OUT=${2:-docs/results/browser}
LATENT=${LATENT:-6127}
STRENGTH=${STRENGTH:-2}
PROMPT=${PROMPT:-Once upon a time, there was a}
TOKENS=${TOKENS:-20}
N_WINDOWS=${N_WINDOWS:-300}
PYTHON=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORK=$(mktemp -d)
SERVER=
cleanup() { if [ -n "$SERVER" ]; then kill -INT "$SERVER" 2>/dev/null || true; wait "$SERVER" || true; fi; rm -rf "$WORK"; }
trap cleanup EXIT
COPY="$WORK/$(basename "$RUN")"
mkdir -p "$COPY" "$OUT"
cp "$RUN/config.json" "$RUN/sae.safetensors" "$COPY/"
for f in metrics.json log.jsonl run.json; do [ -f "$RUN/$f" ] && cp "$RUN/$f" "$COPY/"; done
[ -d "$RUN/interp" ] && cp -r "$RUN/interp" "$COPY/"
"$PYTHON" -m probsae serve "$COPY" --port 0 --n-windows "$N_WINDOWS" > "$WORK/serve.log" &
SERVER=$!
for _ in $(seq 1 1200); do
  URL=$(grep -o 'http://127.0.0.1:[0-9]*/' "$WORK/serve.log" || true)
  [ -n "$URL" ] && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log"; exit 1; }
  sleep 0.5
done
[ -n "$URL" ] || { echo "probsae serve did not start"; exit 1; }
QUERY=$("$PYTHON" -c 'import sys, urllib.parse as u; print(u.urlencode({"latent": sys.argv[1], "strength": sys.argv[2], "prompt": sys.argv[3], "max_new_tokens": sys.argv[4]}))' \
  "$LATENT" "$STRENGTH" "$PROMPT" "$TOKENS")
for _ in $(seq 1 100); do curl -sf "${URL}" >/dev/null && break; sleep 0.2; done
curl -sf --max-time 900 "${URL}steer?$QUERY" > "$WORK/steer.html"     # generates once; the server keeps the answer
bash scripts/install_chromium.sh >/dev/null
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
shot() {
  HOME="$WORK" "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$WORK/profile" \
    --virtual-time-budget=5000 --window-size="$3" --screenshot="$OUT/$1" "$2" 2>/dev/null
  echo "wrote $OUT/$1"
}
shot smollm2-steering.png "${URL}steer?$QUERY" 1400,560
shot smollm2-latent.png "${URL}latent/$LATENT" 1400,1300
"$PYTHON" - "$WORK/steer.html" <<'PY'
import html, re, sys
page = open(sys.argv[1]).read()
for title, text in zip(re.findall(r"<section id='(?:baseline|steered)'><h2>([^<]*)</h2>", page),
                       re.findall(r"<b class='continuation'>([^<]*)</b>", page)):
    print(f"{html.unescape(title)}: {html.unescape(text)!r}")
PY
