"""Is bfloat16 extraction good enough for SAE training? Trains the same SAE (same seed, batches and
schedule) on activations extracted by a float32 model and by a bfloat16 model, and compares their
held-out FVU on the float32 held-out activations (and each on its own dtype's).

    python scripts/smollm2_dtype_check.py --out docs/results/smollm2-dtype

The criterion (issue 23): bfloat16 becomes the CPU default only if its SAE's held-out FVU is within
1 % of the float32 SAE's. Writes ``dtype_check.json`` and ``dtype_check.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--hook", default="resid_pre.20")
    ap.add_argument("--corpus", default="pydoc")
    ap.add_argument("--train-tokens", type=int, default=150_000)
    ap.add_argument("--eval-tokens", type=int, default=20_000)
    ap.add_argument("--context-length", type=int, default=256)
    ap.add_argument("--arch", default="topk")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--expansion", type=int, default=16)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--cache-dir", default="cache")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import probsae
    from probsae.data.prepare import DataSpec, prepare_caches
    from probsae.io import atomic_write_json, atomic_write_text, ensure_dir

    out = ensure_dir(args.out)
    caches, seconds = {}, {}
    for dtype in ("float32", "bfloat16"):
        spec = DataSpec(model=args.model, hook=args.hook, corpus=args.corpus, context_length=args.context_length,
                        max_tokens=args.train_tokens, eval_tokens=args.eval_tokens, model_dtype=dtype, device="cpu")
        t0 = time.perf_counter()
        caches[dtype] = prepare_caches(spec, args.cache_dir)
        seconds[dtype] = time.perf_counter() - t0
    d_in = caches["float32"][0].d_in
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for dtype in ("float32", "bfloat16"):
            torch.manual_seed(seed)
            sae = probsae.build_sae(args.arch, d_in=d_in, d_sae=d_in * args.expansion, k=args.k, seed=seed)
            cfg = probsae.TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=1e-3,
                                      warmup_steps=max(1, args.steps // 10), seed=seed, device="cpu", progress=False)
            probsae.train(sae, caches[dtype][0], cfg)
            row = {"seed": seed, "trained_on": dtype,
                   "fvu_on_float32_heldout": probsae.evaluate(sae, caches["float32"][1])["fvu"],
                   "fvu_on_own_heldout": probsae.evaluate(sae, caches[dtype][1])["fvu"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    f32 = [r["fvu_on_float32_heldout"] for r in rows if r["trained_on"] == "float32"]
    b16 = [r["fvu_on_float32_heldout"] for r in rows if r["trained_on"] == "bfloat16"]
    rel = [(b - f) / f for f, b in zip(f32, b16)]
    result = {"command": " ".join(["python"] + sys.argv), "args": vars(args), "rows": rows,
              "extraction_seconds": seconds, "relative_fvu_change_per_seed": rel,
              "mean_relative_fvu_change": statistics.mean(rel), "within_1_percent": max(abs(r) for r in rel) <= 0.01,
              "torch": torch.__version__}
    atomic_write_json(out / "dtype_check.json", result)
    lines = [f"# bfloat16 vs float32 extraction: {args.model} {args.hook}", "",
             f"Made by `{result['command']}` ({time.strftime('%Y-%m-%d')}).", "",
             f"{args.arch} K = {args.k}, {args.expansion}x, {args.steps} steps x {args.batch_size} tokens over "
             f"{caches['float32'][0].n_tokens:,} training tokens of {args.corpus}; held-out "
             f"{caches['float32'][1].n_tokens:,} tokens. Same seed, batches and schedule for both.", "",
             "| seed | trained on | FVU on float32 held-out | FVU on its own dtype's held-out |", "|---|---|---:|---:|"]
    lines += [f"| {r['seed']} | {r['trained_on']} | {r['fvu_on_float32_heldout']:.4f} | {r['fvu_on_own_heldout']:.4f} |"
              for r in rows]
    lines += ["", "Relative change of the held-out FVU (float32 held-out), bfloat16 − float32, per seed: "
              + ", ".join(f"{100 * r:+.2f} %" for r in rel)
              + f". Within 1 %: **{'yes' if result['within_1_percent'] else 'no'}**."]
    atomic_write_text(out / "dtype_check.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
