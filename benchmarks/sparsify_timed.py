"""Run eai-sparsify's command line unchanged, recording when its training steps end.

    python benchmarks/sparsify_timed.py STAMPS.json -- MODEL DATASET [sparsify options]
    # runs exactly what `python -m sparsify MODEL DATASET [options]` runs

The only addition is a timestamp after each training step: sparsify advances its "Training"
progress bar (tqdm) once per step, and this script wraps ``tqdm.update`` to record
``time.perf_counter()`` there, after a ``torch.cuda.synchronize()`` at the two steps the rate is
measured between (20% of the steps, and the last). ``benchmarks/pipeline_throughput.py`` reads
the JSON written at exit ({"total": steps, "stamps": [[step, seconds], …]}) for a steady-state
rate that leaves out imports, model loading, tokenisation and warm-up.

``SPARSIFY_CPU_SHIM=1`` (tests on a machine without a GPU only): sparsify 1.3.3 loads the model
with ``device_map={"": "cuda:0"}``, which needs CUDA; the shim drops ``device_map`` so the model
stays on the CPU, and disables sparsify's Triton decoder. Never used for reported numbers.
"""

from __future__ import annotations

import atexit
import math
import os
import runpy
import sys
import time


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        sys.exit(__doc__)
    out, args = sys.argv[1], sys.argv[3:]
    import torch
    from tqdm.auto import tqdm

    stamps: list[list[float]] = []
    total = {"n": 0}
    original = tqdm.update

    def update(self, n=1):
        done = original(self, n)
        if getattr(self, "desc", "") == "Training":
            total["n"] = int(self.total or 0)
            mark = {max(1, math.ceil(0.2 * total["n"])), total["n"]}
            if self.n in mark and torch.cuda.is_available():
                torch.cuda.synchronize()
            stamps.append([int(self.n), time.perf_counter()])
        return done

    tqdm.update = update

    def write() -> None:
        from probsae.io import atomic_write_json  # the checkout's src/ is on PYTHONPATH

        atomic_write_json(out, {"total": total["n"], "stamps": stamps})

    atexit.register(write)
    if os.environ.get("SPARSIFY_CPU_SHIM") == "1":
        os.environ["SPARSIFY_DISABLE_TRITON"] = "1"
        import transformers

        for cls in (transformers.AutoModel, transformers.AutoModelForCausalLM):
            def cpu_only(*a, _load=cls.from_pretrained, **k):
                k.pop("device_map", None)
                return _load(*a, **k)
            cls.from_pretrained = cpu_only
    sys.argv = ["sparsify", *args]
    runpy.run_module("sparsify", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
