"""Training-step and encode throughput of probsae's SAEs next to sparsify's and SAELens's TopK.

One training step = forward, backward, gradient clipping, Adam, post-step constraints: for probsae
exactly ``Member.step`` (the code ``probsae.train`` runs per step); for sparsify its trainer's step
(fvu loss, backward, remove the decoder-parallel gradient, Adam, renormalise the decoder); for
SAELens ``training_forward_pass`` + backward + Adam. All on the same random activations in memory,
fp32, in one process. The variants are timed in interleaved rounds (round r times one block of
``--steps`` steps of every variant) so that load from other processes hits them alike; the table
shows the median block. ``bound`` is a bare (B, d_in) @ (d_in, d_sae) matmul timed in the same
rounds: no design that computes the dense pre-activations can beat it.

Peak memory (``--memory``, on by default for one workload): each variant runs in a fresh
subprocess with glibc told to serve every allocation ≥ 64 KiB by mmap (MALLOC_MMAP_THRESHOLD_), so
freed memory goes back to the OS and RSS tracks live memory. After two warm-up steps the kernel's
peak-RSS counter is reset (/proc/self/clear_refs ← 5) and two more steps run; "peak MiB" is
VmHWM − RSS before the SAE was built: parameters, gradients, optimiser state and the step's
transient tensors (the data batch is allocated before the baseline).

    .venv-bench/bin/python benchmarks/train_throughput.py                 # default workload
    .venv-bench/bin/python benchmarks/train_throughput.py --workload wide # d_in 768, 32× latents
    .venv-bench/bin/python benchmarks/train_throughput.py --workload sweep [--quick]
    .venv-bench/bin/python benchmarks/train_throughput.py --encode        # encode-only table

Install the baselines with benchmarks/requirements.txt into a separate venv (see that file).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

import probsae
from probsae import kernels
from probsae.training.config import TrainConfig
from probsae.training.member import Member

PROBSAE_ARCHS = ("topk", "prob_topk", "abstopk", "batchtopk", "relu", "gated", "jumprelu", "vsae_topk")


@dataclass
class Variant:
    name: str
    make: Callable[[], Callable[[torch.Tensor], object]]  # builds the model, returns step(batch)
    note: str = ""


# ---- probsae -------------------------------------------------------------------------------------
def probsae_variant(arch: str, d_in: int, m: int, k: int, fast: bool = True, precision: str = "fp32",
                    chunk=..., label: str | None = None, settings: dict | None = None,
                    fused_adam: bool = True) -> Variant:
    def make():
        kwargs = {"k": k} if arch not in ("relu", "gated", "jumprelu") else {}
        sae = probsae.build_sae(arch, d_in=d_in, d_sae=m, **kwargs)
        fields = TrainConfig.__dataclass_fields__
        extra = {"precision": precision} if "precision" in fields else {}
        cfg = TrainConfig(steps=1000, batch_size=1, progress=False, device="cpu", **extra)
        member = Member(sae, cfg, torch.device("cpu"), None, None)
        if not fused_adam:
            member.optimizer = torch.optim.Adam(member.params, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)
        sae.train()
        autocast = precision == "bf16" and "precision" not in fields
        state = {"i": 0}

        def step(batch):
            saved = {key: getattr(kernels.settings, key) for key in (settings or {})}
            for key, val in (settings or {}).items():
                setattr(kernels.settings, key, val)
            try:
                with kernels.use_fast(fast, chunk), (torch.autocast("cpu", torch.bfloat16) if autocast else contextlib.nullcontext()):
                    member.step(batch, state["i"], 1000)
            finally:
                for key, val in saved.items():
                    setattr(kernels.settings, key, val)
            state["i"] += 1
        return step
    name = label or f"probsae {arch}" + ("" if fast else " (plain)") + ("" if precision == "fp32" else f" {precision}")
    return Variant(name, make)


# ---- baselines -----------------------------------------------------------------------------------
def sparsify_variant(d_in: int, m: int, k: int) -> Variant | None:
    try:
        from sparsify import SparseCoder, SparseCoderConfig
    except Exception:
        return None

    def make():
        sae = SparseCoder(d_in, SparseCoderConfig(num_latents=m, k=k), device="cpu")
        opt = torch.optim.Adam(sae.parameters(), lr=5e-4)

        def step(batch):
            out = sae(batch, dead_mask=None)
            out.fvu.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sae.set_decoder_norm_to_unit_norm()
        return step
    return Variant("sparsify TopK", make)


def saelens_variant(d_in: int, m: int, k: int, sparse: bool) -> Variant | None:
    try:
        from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
        from sae_lens.saes.sae import TrainStepInput
    except Exception:
        return None

    def make():
        cfg = TopKTrainingSAEConfig(d_in=d_in, d_sae=m, k=k, use_sparse_activations=sparse, device="cpu")
        sae = TopKTrainingSAE(cfg)
        opt = torch.optim.Adam(sae.parameters(), lr=5e-4)
        state = {"i": 0}

        def step(batch):
            out = sae.training_forward_pass(TrainStepInput(sae_in=batch, coefficients={}, dead_neuron_mask=None,
                                                           n_training_steps=state["i"], is_logging_step=False))
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            state["i"] += 1
        return step
    return Variant("SAELens TopK" + (" (sparse)" if sparse else ""), make)


def matmul_variant(d_in: int, m: int) -> Variant:
    def make():
        W = torch.randn(d_in, m) / d_in**0.5

        def step(batch):
            return batch @ W
        return step
    return Variant("bound: x @ W_enc", make)


# ---- encode-only ---------------------------------------------------------------------------------
def encode_variants(d_in: int, m: int, k: int) -> list[Variant]:
    out = []
    for arch in ("topk", "prob_topk"):
        for sparse in (True, False):
            def make(arch=arch, sparse=sparse):
                sae = probsae.build_sae(arch, d_in=d_in, d_sae=m, k=k).eval()

                @torch.no_grad()
                def step(batch):
                    return sae.encode_sparse(batch) if sparse else sae.encode(batch)
                return step
            out.append(Variant(f"probsae {arch} encode" + (" (values, indices)" if sparse else " (dense codes)"), make))
    try:
        from sparsify import SparseCoder, SparseCoderConfig

        def make_sp():
            sae = SparseCoder(d_in, SparseCoderConfig(num_latents=m, k=k), device="cpu")

            @torch.no_grad()
            def step(batch):
                return sae.encode(batch)
            return step
        out.append(Variant("sparsify encode", make_sp))
    except Exception:
        pass
    try:
        from sae_lens import TopKSAE, TopKSAEConfig

        def make_sl():
            sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=m, k=k, device="cpu"))

            @torch.no_grad()
            def step(batch):
                return sae.encode(batch)
            return step
        out.append(Variant("SAELens encode (dense)", make_sl))
    except Exception:
        pass
    out.append(matmul_variant(d_in, m))
    return out


# ---- timing --------------------------------------------------------------------------------------
def time_variants(variants: list[Variant], data: torch.Tensor, batch: int, steps: int, rounds: int,
                  warmup: int, clock=time.perf_counter) -> dict[str, float]:
    """Median over ``rounds`` of the tokens/s of a block of ``steps`` steps, rounds interleaved."""
    n_batches = data.shape[0] // batch
    batches = [data[i * batch:(i + 1) * batch] for i in range(n_batches)]
    steppers = {}
    failed: dict[str, str] = {}
    for v in variants:
        torch.manual_seed(0)
        try:
            steppers[v.name] = v.make()
            for i in range(warmup):
                steppers[v.name](batches[i % n_batches])
        except Exception as e:  # a baseline that does not run on this torch/CPU is reported, not fatal
            failed[v.name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            steppers.pop(v.name, None)
            print(f"[skip] {v.name} failed: {failed[v.name]}", file=sys.stderr)
    samples: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(rounds):
        for v in variants:
            if v.name in failed:
                continue
            fn = steppers[v.name]
            gc.collect()
            t0 = clock()
            for i in range(steps):
                fn(batches[(r * steps + i) % n_batches])
            samples[v.name].append(steps * batch / (clock() - t0))
    return {name: statistics.median(s) if s else float("nan") for name, s in samples.items()}


def rss_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def memory_child(spec: dict) -> None:
    """Runs inside a fresh subprocess: prints the peak RSS growth (MiB) of one variant's steps."""
    torch.manual_seed(0)
    data = torch.randn(spec["batch"], spec["d_in"])
    variant = build_variants(spec, only=spec["variant"])[0]
    gc.collect()
    base = rss_kib("VmRSS")
    step = variant.make()
    for _ in range(2):
        step(data)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    for _ in range(2):
        step(data)
    print(json.dumps({"peak_mib": (rss_kib("VmHWM") - base) / 1024}))


def measure_memory(spec: dict, name: str) -> float | None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    child = dict(spec, variant=name)
    res = subprocess.run([sys.executable, __file__, "--_memory-child", json.dumps(child)], env=env,
                         capture_output=True, text=True)
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"]
    except Exception:
        sys.stderr.write(f"memory measurement of {name!r} failed:\n{res.stderr[-2000:]}\n")
        return None


def build_variants(spec: dict, only: str | None = None) -> list[Variant]:
    d_in, m, k = spec["d_in"], spec["latents"], spec["k"]
    chunk = spec["chunk"] if spec.get("chunk") is not None else ...
    vs: list[Variant] = []
    if spec.get("encode"):
        vs = encode_variants(d_in, m, k)
    else:
        for arch in spec["archs"]:
            vs.append(probsae_variant(arch, d_in, m, k, chunk=chunk))
            if spec.get("plain") and arch in ("topk", "prob_topk", "abstopk"):
                vs.append(probsae_variant(arch, d_in, m, k, fast=False))
            if spec.get("bf16") and arch in ("topk", "prob_topk"):
                vs.append(probsae_variant(arch, d_in, m, k, precision="bf16", chunk=chunk))
        if spec.get("ablate"):
            vs += [probsae_variant("topk", d_in, m, k, label="ablate topk: 'bags' decoder backward",
                                   settings={"decoder_backward": "bags"}),
                   probsae_variant("topk", d_in, m, k, label="ablate topk: torch.topk", settings={"group_topk": False}),
                   probsae_variant("topk", d_in, m, k, label="ablate topk: unfused Adam", fused_adam=False),
                   probsae_variant("topk", d_in, m, k, chunk=None, label="ablate topk: no chunking"),
                   probsae_variant("prob_topk", d_in, m, k, chunk=None, label="ablate prob_topk: no chunking"),
                   probsae_variant("prob_topk", d_in, m, k, label="ablate prob_topk: torch.topk",
                                   settings={"group_topk": False}),
                   probsae_variant("prob_topk", d_in, m, k, label="ablate prob_topk: noise prefetch thread",
                                   settings={"noise_prefetch": True})]
        if not spec.get("no_baselines"):
            vs += [v for v in (sparsify_variant(d_in, m, k), saelens_variant(d_in, m, k, False),
                               saelens_variant(d_in, m, k, True)) if v is not None]
        vs.append(matmul_variant(d_in, m))
    if only is not None:
        vs = [v for v in vs if v.name == only]
    return vs


def run_workload(spec: dict, args) -> list[dict]:
    torch.manual_seed(0)
    data = torch.randn(spec["batch"] * args.n_batches, spec["d_in"])
    variants = build_variants(spec)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    tps = time_variants(variants, data, spec["batch"], args.steps, args.rounds, args.warmup, clock)
    ref_name = "sparsify encode" if spec.get("encode") else "sparsify TopK"
    ref = tps.get(ref_name)
    bound = tps.get("bound: x @ W_enc")
    rows = []
    for v in variants:
        row = {"variant": v.name, "tokens_s": tps[v.name],
               "vs_sparsify": tps[v.name] / ref if ref else None,
               "of_bound": tps[v.name] / bound if bound and not v.name.startswith("bound") else None,
               "peak_mib": None}
        if spec.get("memory") and not v.name.startswith("bound") and tps[v.name] == tps[v.name]:
            row["peak_mib"] = measure_memory(spec, v.name)
        rows.append(row)
    return rows


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n### {title}\n")
    print("| variant | tokens/s | × sparsify | of matmul bound | peak MiB |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        f = lambda v, fmt: "—" if v is None else format(v, fmt)  # noqa: E731
        print(f"| {r['variant']} | {r['tokens_s']:,.0f} | {f(r['vs_sparsify'], '.2f')} | "
              f"{f(r['of_bound'], '.0%')} | {f(r['peak_mib'], ',.0f')} |")
    sys.stdout.flush()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=("default", "wide", "sweep"), default="default",
                   help="default: d_in 384, 6144 latents; wide: d_in 768, 32× latents; sweep: d_in 384, 6144→98,304 latents")
    p.add_argument("--d-in", type=int, help="override d_in")
    p.add_argument("--latents", type=int, help="override the number of latents")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--archs", default="topk,prob_topk", help=f"comma list of probsae architectures, or 'all' ({','.join(PROBSAE_ARCHS)})")
    p.add_argument("--plain", action="store_true", help="also time the plain (dense-backward) path of the TopK family")
    p.add_argument("--bf16", action="store_true", help="also time topk/prob_topk with precision='bf16'")
    p.add_argument("--chunk", type=int, default=None, help="row chunk of the fast encoder (kernels.settings.chunk)")
    p.add_argument("--ablate", action="store_true", help="also time fast-path ablations (decoder backward, Adam, chunking)")
    p.add_argument("--no-baselines", action="store_true", help="skip sparsify and SAELens")
    p.add_argument("--encode", action="store_true", help="encode-only (inference) throughput instead of training")
    p.add_argument("--steps", type=int, default=3, help="steps per timed block")
    p.add_argument("--rounds", type=int, default=5, help="timed blocks per variant (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--n-batches", type=int, default=4, help="distinct batches of random data cycled through")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: tokens per wall second (the headline); cpu: tokens per CPU second of this "
                        "process (all threads), steadier on a machine shared with other processes")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--quick", action="store_true", help="sweep: widths up to 24,576 only; fewer rounds")
    p.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(json.loads(args.memory_child))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    archs = list(PROBSAE_ARCHS) if args.archs == "all" else [a for a in args.archs.split(",") if a]
    base = {"k": args.k, "batch": args.batch, "archs": archs, "plain": args.plain, "bf16": args.bf16,
            "chunk": args.chunk, "ablate": args.ablate, "no_baselines": args.no_baselines, "encode": args.encode}
    if args.workload == "default":
        shapes = [(args.d_in or 384, args.latents or 6144)]
    elif args.workload == "wide":
        shapes = [(args.d_in or 768, args.latents or 32 * (args.d_in or 768))]
    else:
        widths = [6144, 12288, 24576] + ([] if args.quick else [49152, 98304])
        shapes = [(args.d_in or 384, w) for w in widths]
        if args.quick:
            args.rounds = min(args.rounds, 3)
    import platform
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
          f"clock {args.clock}, batch {args.batch}, k {args.k}, {args.rounds} rounds × {args.steps} steps (median), warm-up {args.warmup}")
    for d_in, m in shapes:
        spec = dict(base, d_in=d_in, latents=m, memory=not args.no_memory and len(shapes) == 1)
        kind = "encode-only" if args.encode else "training step"
        rows = run_workload(spec, args)
        print_table(f"{kind}: d_in {d_in}, {m:,} latents, k {args.k}, batch {args.batch}", rows)


if __name__ == "__main__":
    main()
