#!/usr/bin/env bash
# Issue 11 on a GPU machine, from the repository root, in one command:
#   OUT=/some/dir bash benchmarks/gpu_step.sh [tests] [bench] [quality]     (default: all three)
# - tests:   the kernel tests on CUDA (tests/kernels, tests/training/test_step_overhead.py)
# - bench:   benchmarks/train_throughput.py --device cuda (vs sparsify 1.3.3, ablations, decoder table)
# - quality: benchmarks/quality_check.py, 2000 steps default path vs exact-fp32 plain path
# Environment: PYTHON (default python), QUICK=1 (benchmark --quick), ACTIVATIONS=file.safetensors
# (real activations for the quality check; default synthetic), EXTRA_PYTHONPATH (e.g. /tmp/site
# holding eai-sparsify and its wheels). Everything is written under $OUT (default ./gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export PYTHONPATH="$PWD/src${EXTRA_PYTHONPATH:+:$EXTRA_PYTHONPATH}${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(tests bench quality)
status=0
{ nvidia-smi || true; $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"; } 2>&1 | tee "$OUT/versions.txt"
for stage in "${stages[@]}"; do
  case "$stage" in
    tests)
      $PY -m pytest -q -p no:cacheprovider tests/kernels tests/training/test_step_overhead.py 2>&1 | tee "$OUT/tests-cuda.txt"
      status=$((status | PIPESTATUS[0])) ;;
    bench)
      $PY benchmarks/train_throughput.py --device cuda --out "$OUT/speed-gpu-step.md" ${QUICK:+--quick} 2>&1 | tee "$OUT/bench.log"
      status=$((status | PIPESTATUS[0])) ;;
    quality)
      $PY benchmarks/quality_check.py --device cuda --steps 2000 ${ACTIVATIONS:+--activations "$ACTIVATIONS"} \
        --out "$OUT/quality.md" 2>&1 | tee "$OUT/quality.log"
      status=$((status | PIPESTATUS[0])) ;;
    *) echo "unknown stage $stage (tests, bench, quality)" >&2; exit 2 ;;
  esac
done
exit $status
