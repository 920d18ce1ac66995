"""Does the fast path train SAEs as well as the exact one? (issue 11's quality criterion)

Trains each architecture twice on the same data, batches and seed: on the default path (on a GPU:
bf16 tensor-core encoder, Triton kernels, Philox gate noise) and on the exact-fp32 plain path
(``KernelPolicy(fast=False)``, ``precision='fp32'``: dense pre-activations and autograd). Prints
the held-out FVU of each (both evaluated with exact fp32 inference) and the relative difference;
the criterion is |FVU_default − FVU_exact| / FVU_exact ≤ 1 %.

Data: ``--cache DIR`` (an activation cache written by ``probsae cache``), ``--activations FILE.safetensors`` (a cached (N, d_in) activation tensor; ``--key`` picks
the tensor, default the first) or, by default, ``probsae.synthetic`` toy activations. The last
``--holdout`` fraction of the tokens is held out.

    python benchmarks/quality_check.py --device cuda --steps 2000 --activations acts.safetensors
    python benchmarks/quality_check.py --steps 20 --batch 256 --d-in 32 --latents 256   # CPU smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import probsae
from probsae import kernels
from probsae.io import atomic_write_text
from probsae.saes.options import ForwardOptions
from probsae.synthetic import SyntheticActivations

EXACT_INFERENCE = ForwardOptions(policy=kernels.KernelPolicy(encoder_precision="fp32"))
"""Both SAEs are evaluated with exact fp32 inference."""


def load_activations(args) -> torch.Tensor:
    if args.cache:
        from probsae.data.cache import ActivationCache

        root = Path(args.cache)
        dirs = [root] if (root / "manifest.json").is_file() else sorted(d.parent for d in root.glob("*/manifest.json"))
        if len(dirs) != 1:
            sys.exit(f"--cache {root}: expected one activation cache, found {len(dirs)}")
        cache = ActivationCache(dirs[0])
        return torch.cat(list(cache.iter_batches(65_536, shuffle=False))).float()
    if args.activations:
        from safetensors.torch import load_file

        tensors = load_file(args.activations)
        key = args.key or next(iter(tensors))
        x = tensors[key].float()
        return x.reshape(-1, x.shape[-1])
    syn = SyntheticActivations(d_in=args.d_in, n_features=args.features, avg_active=args.avg_active, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    return torch.cat([syn.sample(min(16384, args.tokens - i), gen) for i in range(0, args.tokens, 16384)])


def train_one(arch: str, exact: bool, train_x: torch.Tensor, args) -> object:
    d_in = train_x.shape[1]
    latents = args.latents or args.expansion * d_in
    sae = probsae.build_sae(arch, d_in=d_in, d_sae=latents, k=args.k, seed=args.seed)
    cfg = probsae.TrainConfig(steps=args.steps, batch_size=args.batch, seed=args.seed, progress=False,
                              device=args.device, precision="fp32" if exact else "auto",
                              log_every=max(1, args.steps))
    probsae.train(sae, train_x, cfg, kernels=kernels.KernelPolicy(fast=not exact))
    return sae


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--activations", help="a .safetensors file holding an (N, d_in) activation tensor")
    p.add_argument("--key", help="tensor name inside --activations (default: the first)")
    p.add_argument("--cache", help="a probsae activation cache directory (or a folder holding exactly one), "
                                   "e.g. from `probsae cache --split train --cache-dir DIR`")
    p.add_argument("--archs", default="topk,prob_topk")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--expansion", type=int, default=16, help="latents = expansion × d_in (unless --latents)")
    p.add_argument("--latents", type=int)
    p.add_argument("--holdout", type=float, default=0.1, help="fraction of tokens held out for the FVU")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--d-in", type=int, default=256, help="synthetic data: width")
    p.add_argument("--features", type=int, default=4096, help="synthetic data: true features")
    p.add_argument("--avg-active", type=float, default=16.0, help="synthetic data: active features per token")
    p.add_argument("--tokens", type=int, default=1 << 19, help="synthetic data: tokens to draw")
    p.add_argument("--tolerance", type=float, default=0.01, help="allowed relative FVU difference")
    p.add_argument("--out", help="also write the markdown table to this file")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    x = load_activations(args)
    n_hold = max(1, int(len(x) * args.holdout))
    train_x, hold_x = x[:-n_hold], x[-n_hold:]
    source = args.activations or f"probsae.synthetic (d_in {args.d_in}, {args.features} features, {args.avg_active} active)"
    lines = [f"Quality check: {args.steps} steps, batch {args.batch}, k {args.k}, device {args.device}"
             f" ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'CPU'}); data: {source};"
             f" {len(train_x):,} training / {len(hold_x):,} held-out tokens.\n",
             "| architecture | held-out FVU, default path | held-out FVU, exact-fp32 plain path | relative difference | within "
             f"{args.tolerance:.0%} | train s default / exact |", "|---|---:|---:|---:|---|---:|"]
    print(lines[0])
    ok_all = True
    for arch in [a for a in args.archs.split(",") if a]:
        fvu, secs = {}, {}
        for exact in (False, True):
            t0 = time.perf_counter()
            sae = train_one(arch, exact, train_x, args)
            secs[exact] = time.perf_counter() - t0
            fvu[exact] = probsae.evaluate(sae, hold_x.to(sae.W_dec.device), options=EXACT_INFERENCE)["fvu"]
        rel = abs(fvu[False] - fvu[True]) / max(fvu[True], 1e-12)
        ok = rel <= args.tolerance
        ok_all &= ok
        lines.append(f"| {arch} | {fvu[False]:.5f} | {fvu[True]:.5f} | {rel:.2%} | {'yes' if ok else 'no'} | "
                     f"{secs[False]:.1f} / {secs[True]:.1f} |")
        print(lines[-1])
        sys.stdout.flush()
    lines.append(f"\nAll within {args.tolerance:.0%}: **{'yes' if ok_all else 'no'}**.")
    print("\n".join(lines[1:]))
    if args.out:
        atomic_write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
