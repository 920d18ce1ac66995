#!/usr/bin/env bash
# The dashboard of a run plus headless-Chromium screenshots of a few of its pages, into OUT
# (default docs/results/dashboard; the committed screenshots of the main job were made with
#   bash scripts/dashboard_screenshots.sh runs/minilm-prob_topk-k8
# after `bash scripts/main.sh`). Extra arguments go to `probsae dashboard`.
# Screenshots: the most frequent latent, the first latent flagged as a window-start latent (if
# any), a rarer latent, and a text search.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:?usage: scripts/dashboard_screenshots.sh RUN_DIR [OUT_DIR] [probsae dashboard options]}
OUT=${2:-docs/results/dashboard}
shift
if [ $# -gt 0 ]; then shift; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/probsae dashboard "$RUN" --out "$OUT" --n-latents 24 --order frequent "$@"
bash scripts/install_chromium.sh >/dev/null
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT
pages=$(.venv/bin/python - "$OUT/data.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
L = d["latents"]
pages = [("1-most-frequent", f"#latent-{L[0]['id']}")]
flag = next((l for l in L if l["start_flag"]), None)
if flag is not None:
    pages.append(("2-window-start", f"#latent-{flag['id']}"))
rare = min((l for l in L if not l["start_flag"]), key=lambda l: l["density"])
pages.append(("3-rarer", f"#latent-{rare['id']}"))
pages.append(("4-search", "?q=return"))
print("\n".join(f"{n} {u}" for n, u in pages))
PY
)
rm -f "$OUT"/*.png
while read -r name url; do
  HOME="$PROFILE" "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$PROFILE" \
    --virtual-time-budget=5000 --window-size=1400,1100 --screenshot="$OUT/$name.png" \
    "file://$(realpath "$OUT")/index.html$url" 2>/dev/null
  echo "wrote $OUT/$name.png"
done <<< "$pages"
