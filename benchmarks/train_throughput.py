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

GPU (``--device cuda``): the issue-11 workloads (d_in/latents/k/batch 384/6144/32/4096,
768/12288/32/8192, 768/12288/8/8192, 1024/16384/32/8192, 768/98304/32/8192, plus k = 8 at each),
probsae ``topk`` and ``prob_topk`` (``Member.step``, default settings) against sparsify 1.3.3's
trainer step (its Triton decoder on) on the same random activations already on the GPU, in
interleaved rounds timed with CUDA events (median block, warm-up excluded); peak memory per
variant measured alone (``torch.cuda.max_memory_allocated`` growth over the data batch); then the
ablations that decide the settings (bf16 vs fp32 encoder, grouped vs full top-k, sorted vs atomic
scatter, CUDA graph, torch.compile) and a decoder-only table (probsae's Triton decoder vs
sparsify's Triton decoder vs ``embedding_bag``, forward + backward):

    python benchmarks/train_throughput.py --device cuda --out docs/results/speed-gpu-step.md [--quick]

Install the baselines with benchmarks/requirements.txt into a separate venv (see that file).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

import probsae
from probsae import kernels
from probsae.io import atomic_write_text
from probsae.training.config import TrainConfig
from probsae.training.member import Member

PROBSAE_ARCHS = ("topk", "prob_topk", "abstopk", "batchtopk", "relu", "gated", "jumprelu", "vsae_topk")


@dataclass
class Variant:
    name: str
    make: Callable[[], Callable[[torch.Tensor], object]]  # builds the model, returns step(batch)
    note: str = ""


# ---- probsae -------------------------------------------------------------------------------------
def probsae_variant(arch: str, d_in: int, m: int, k: int, fast: bool = True, precision: str = "auto",
                    chunk=..., label: str | None = None, settings: dict | None = None,
                    fused_adam: bool = True, device: str = "cpu", train: dict | None = None) -> Variant:
    """``Member.step`` of a probsae SAE; ``settings``: the step's KernelPolicy fields besides the defaults;
    ``train``: extra TrainConfig fields (cuda_graph, compile, ...)."""
    def make():
        kwargs = {"k": k} if arch not in ("relu", "gated", "jumprelu") else {}
        sae = probsae.build_sae(arch, d_in=d_in, d_sae=m, **kwargs)
        cfg = TrainConfig(steps=1000, batch_size=1, progress=False, device=device, precision=precision, **(train or {}))
        overrides = dict(settings or {}, fast=fast)
        if chunk is not ...:
            overrides["chunk"] = chunk
        member = Member(sae, cfg, torch.device(device), None, None, kernels=kernels.KernelPolicy(**overrides))
        if not fused_adam:
            member.optimizer = torch.optim.Adam(member.params, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)
        sae.train()
        state = {"i": 0}

        def step(batch):
            member.step(batch, state["i"], 1000)
            state["i"] += 1
        return step
    name = label or f"probsae {arch}" + ("" if fast else " (plain)") + ("" if precision == "auto" else f" {precision}")
    return Variant(name, make)


# ---- baselines -----------------------------------------------------------------------------------
def import_sparsify(device: str):
    """sparsify's SparseCoder and config, or None. On CPU its Triton decoder cannot run (CUDA
    only), so it is told to use its eager one; on CUDA its Triton decoder stays on."""
    if device == "cpu":
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
    try:
        import contextlib as _c
        import io as _io
        with _c.redirect_stdout(_io.StringIO()):  # it prints which decoder it picked
            from sparsify import SparseCoder, SparseCoderConfig
        return SparseCoder, SparseCoderConfig
    except Exception:
        return None


def sparsify_variant(d_in: int, m: int, k: int, device: str = "cpu") -> Variant | None:
    found = import_sparsify(device)
    if found is None:
        return None
    SparseCoder, SparseCoderConfig = found

    def make():
        sae = SparseCoder(d_in, SparseCoderConfig(num_latents=m, k=k), device=device)
        opt = torch.optim.Adam(sae.parameters(), lr=5e-4)
        did_fire = torch.zeros(m, dtype=torch.bool, device=device)

        def step(batch):
            # As sparsify's Trainer.fit runs it: TF32 matmuls (it calls
            # torch.set_float32_matmul_precision("high")), the fired mask updated every step. Its
            # per-step host sync (float(fvu) for logging) is left out: the baseline at its fastest.
            before = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision("high")
            try:
                sae.set_decoder_norm_to_unit_norm()
                out = sae(batch, dead_mask=None)
                did_fire[out.latent_indices.flatten()] = True
                out.fvu.backward()
                sae.remove_gradient_parallel_to_decoder_directions()
                opt.step()
                opt.zero_grad(set_to_none=True)
            finally:
                torch.set_float32_matmul_precision(before)
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


def matmul_variant(d_in: int, m: int, device: str = "cpu", dtype: torch.dtype = torch.float32) -> Variant:
    def make():
        W = (torch.randn(d_in, m) / d_in**0.5).to(device, dtype)

        def step(batch):
            return batch.to(dtype) @ W
        return step
    return Variant("bound: x @ W_enc" + ("" if dtype == torch.float32 else " (bf16)"), make)


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
    found = import_sparsify("cpu")
    if found is not None:
        SparseCoder, SparseCoderConfig = found

        def make_sp():
            sae = SparseCoder(d_in, SparseCoderConfig(num_latents=m, k=k), device="cpu")

            @torch.no_grad()
            def step(batch):
                return sae.encode(batch)
            return step
        out.append(Variant("sparsify encode", make_sp))
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
            vs += [probsae_variant("topk", d_in, m, k, label="ablate topk: torch.topk", settings={"group_topk": False}),
                   probsae_variant("topk", d_in, m, k, label="ablate topk: unfused Adam", fused_adam=False),
                   probsae_variant("topk", d_in, m, k, chunk=None, label="ablate topk: no chunking"),
                   probsae_variant("prob_topk", d_in, m, k, chunk=None, label="ablate prob_topk: no chunking"),
                   probsae_variant("prob_topk", d_in, m, k, label="ablate prob_topk: torch.topk",
                                   settings={"group_topk": False})]
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


# ---- GPU -----------------------------------------------------------------------------------------
GPU_WORKLOADS = [(384, 6144, 4096), (768, 12288, 8192), (1024, 16384, 8192), (768, 98304, 8192)]
"""(d_in, latents, batch) of the issue-11 table; each at k = 32 and k = 8."""
TARGETS = {32: (2.0, 1.5), 8: (1.5, 1.2)}
"""Done-when ratios vs sparsify (topk, prob_topk) by k."""


def cuda_sync_time(fn, batches, steps: int) -> float:
    """Seconds for ``steps`` calls of fn, measured with CUDA events (the queue drained first)."""
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for i in range(steps):
        fn(batches[i % len(batches)])
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000.0


def cuda_peak_mib(variant: Variant, batch: torch.Tensor, steps: int = 6) -> float | None:
    """Peak allocated memory (MiB) of one variant built and stepped alone, over what was
    allocated before it was built (the data batch): parameters, gradients, optimiser state and
    the step's transients. Six steps cover every phase of a run: with the CUDA graph, its eager
    warm-up steps, the capture and replays."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    try:
        fn = variant.make()
        for _ in range(steps):
            fn(batch)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    except Exception as e:
        print(f"[memory] {variant.name} failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}", file=sys.stderr)
        return None
    finally:
        fn = None  # noqa: F841
        gc.collect()
        torch.cuda.empty_cache()


def time_cuda(variants: list[Variant], batches: list[torch.Tensor], steps: int, rounds: int, warmup: int):
    """Median tokens/s over ``rounds`` interleaved blocks of ``steps`` steps (CUDA events)."""
    steppers, failed = {}, {}
    for v in variants:
        torch.manual_seed(0)
        try:
            fn = v.make()
            for i in range(warmup):
                fn(batches[i % len(batches)])
            torch.cuda.synchronize()
            steppers[v.name] = fn
        except Exception as e:
            failed[v.name] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            print(f"[skip] {v.name} failed: {failed[v.name]}", file=sys.stderr)
    samples: dict[str, list[float]] = {name: [] for name in steppers}
    B = batches[0].shape[0]
    for _ in range(rounds):
        for name, fn in steppers.items():
            samples[name].append(steps * B / cuda_sync_time(fn, batches, steps))
    return {v.name: (statistics.median(samples[v.name]) if samples.get(v.name) else float("nan")) for v in variants}, failed


def gpu_main_variants(d_in: int, m: int, k: int) -> list[Variant]:
    vs = [probsae_variant("topk", d_in, m, k, device="cuda"), probsae_variant("prob_topk", d_in, m, k, device="cuda")]
    sp = sparsify_variant(d_in, m, k, device="cuda")
    if sp is not None:
        vs.append(sp)
    vs.append(matmul_variant(d_in, m, "cuda", torch.bfloat16))
    return vs


def gpu_ablations(d_in: int, m: int, k: int, compile_too: bool) -> list[Variant]:
    def pv(arch: str, label: str, **kw) -> Variant:
        return probsae_variant(arch, d_in, m, k, device="cuda", label=f"{arch}: {label}", **kw)

    vs = []
    for arch in ("topk", "prob_topk"):
        vs += [pv(arch, "default (bf16 encoder, groups, atomic scatter)"),
               pv(arch, "fp32 encoder (precision='fp32')", precision="fp32"),
               pv(arch, "full top-k (group_topk=False)", settings={"group_topk": False}),
               pv(arch, "sorted scatter (deterministic)", settings={"scatter": "sorted"}),
               pv(arch, "CUDA graph", train={"cuda_graph": True}),
               pv(arch, "plain autograd path (fast=False)", fast=False)]
        if compile_too:
            vs.append(pv(arch, "torch.compile forward", train={"compile": True}))
    sp = sparsify_variant(d_in, m, k, device="cuda")
    if sp is not None:
        vs.append(sp)
    return vs


def decoder_variants(d_in: int, m: int, k: int, B: int) -> list[Variant]:
    """Decoder forward + backward alone on the same (values, indices, W_dec)."""
    def make_for(decode, settings=None):
        if settings is not None:  # probsae's decoder under this kernel policy
            decode = functools.partial(decode, policy=kernels.KernelPolicy(**settings))

        def make():
            g = torch.Generator(device="cuda").manual_seed(0)
            idx = torch.randint(0, m, (B, k), device="cuda", generator=g)
            values = torch.rand(B, k, device="cuda", generator=g).requires_grad_()
            W = (torch.randn(m, d_in, device="cuda", generator=g) / d_in**0.5).requires_grad_()
            up = torch.randn(B, d_in, device="cuda", generator=g)

            def step(_batch):
                values.grad = W.grad = None
                (decode(values, idx, W) * up).sum().backward()
            return step
        return make
    vs = [Variant("probsae Triton decoder (atomic scatter)", make_for(kernels.sparse_decode, {"scatter": "atomic"})),
          Variant("probsae Triton decoder (sorted scatter)", make_for(kernels.sparse_decode, {"scatter": "sorted"})),
          Variant("torch embedding_bag", make_for(lambda v, i, W: torch.nn.functional.embedding_bag(
              i, W, per_sample_weights=v, mode="sum")))]
    if import_sparsify("cuda") is not None:
        try:
            from sparsify.utils import decoder_impl  # its Triton decoder when triton is present
            vs.append(Variant(f"sparsify decoder ({decoder_impl.__name__})",
                              make_for(lambda v, i, W: decoder_impl(i, v, W.mT))))
        except Exception:
            pass
    return vs


def versions() -> str:
    parts = [f"torch {torch.__version__}"]
    for mod in ("triton", "sparsify"):
        try:
            if mod == "sparsify":
                from importlib.metadata import version
                parts.append(f"eai-sparsify {version('eai-sparsify')}")
            else:
                parts.append(f"{mod} {__import__(mod).__version__}")
        except Exception:
            parts.append(f"{mod} (not installed)")
    return ", ".join(parts)


def gpu_main(args) -> None:
    lines: list[str] = []

    def emit(text: str = "") -> None:
        print(text)
        sys.stdout.flush()
        lines.append(text)

    name = torch.cuda.get_device_name()
    # ≥ 5 warm-up steps: the CUDA-graph variant runs 3 eager steps, then captures.
    steps, rounds, warmup = (5, 3, 5) if args.quick else (args.steps, args.rounds, max(5, args.warmup))
    emit("# Training step on a GPU: probsae vs sparsify 1.3.3\n")
    emit(f"GPU **{name}**; {versions()}; Python {platform.python_version()}.")
    emit(f"Command: `{' '.join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])}`\n")
    emit(f"Random activations already on the GPU (fp32), {args.n_batches} distinct batches cycled; every variant "
         f"warmed up {warmup} steps, then {rounds} interleaved rounds of {steps} steps each, timed with CUDA "
         "events; the table shows the median round. Peak MiB: `torch.cuda.max_memory_allocated` growth while "
         "the variant is built and stepped six times on its own (CUDA graph: warm-up, capture, replays). `bound`: a bare bf16 `x @ W_enc`.\n")
    workloads = [(d, m, k, b) for (d, m, b) in GPU_WORKLOADS for k in (32, 8)]
    if args.quick:
        workloads = [w for w in workloads if w[1] <= 16384 or w[2] == 32]
    emit("| workload (d_in, latents, k, batch) | probsae topk | probsae prob_topk | sparsify TopK | "
         "topk × | prob_topk × | peak MiB topk / prob_topk / sparsify | bound | targets met |")
    emit("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    verdicts = []
    for d_in, m, k, B in workloads:
        torch.manual_seed(0)
        data = torch.randn(B * args.n_batches, d_in, device="cuda")
        batches = list(data.split(B))
        variants = gpu_main_variants(d_in, m, k)
        mem = {v.name: cuda_peak_mib(v, batches[0]) for v in variants if not v.name.startswith("bound")}
        tps, failed = time_cuda(variants, batches, steps, rounds, warmup)
        t, p, s = tps.get("probsae topk"), tps.get("probsae prob_topk"), tps.get("sparsify TopK", float("nan"))
        rt, rp = t / s, p / s
        want_t, want_p = TARGETS[k]
        mem_ok = all(mem.get(n) is not None and mem.get("sparsify TopK") is not None and mem[n] <= mem["sparsify TopK"]
                     for n in ("probsae topk", "probsae prob_topk"))
        ok = rt >= want_t and rp >= want_p and mem_ok
        verdicts.append(ok)
        f = lambda v: "—" if v is None else f"{v:,.0f}"  # noqa: E731
        emit(f"| {d_in}, {m:,}, {k}, {B} | {t/1e6:.2f}M | {p/1e6:.2f}M | {s/1e6:.2f}M | {rt:.2f} | {rp:.2f} | "
             f"{f(mem.get('probsae topk'))} / {f(mem.get('probsae prob_topk'))} / {f(mem.get('sparsify TopK'))} | "
             f"{tps.get('bound: x @ W_enc (bf16)', float('nan'))/1e6:.1f}M | "
             f"{'yes' if ok else 'no'} (≥ {want_t}× / {want_p}×, memory ≤ sparsify) |")
        for n, why in failed.items():
            emit(f"|   ↳ {n} failed: {why} | | | | | | | | |")
        del data, batches
        gc.collect()
        torch.cuda.empty_cache()
    emit(f"\nAll targets met: **{'yes' if all(verdicts) else 'no'}** ({sum(verdicts)}/{len(verdicts)} workloads).\n")

    if not args.no_ablate:
        d_in, m, k, B = 768, 12288, 32, 8192
        emit(f"## Ablations: d_in {d_in}, {m:,} latents, k {k}, batch {B}\n")
        emit("Each row changes one setting from the default; tokens/s, median of the same interleaved rounds.\n")
        data = torch.randn(B * args.n_batches, d_in, device="cuda")
        batches = list(data.split(B))
        variants = gpu_ablations(d_in, m, k, compile_too=not args.quick)
        tps, failed = time_cuda(variants, batches, steps, rounds, warmup)
        ref = tps.get("sparsify TopK")
        emit("| variant | tokens/s | × sparsify |")
        emit("|---|---:|---:|")
        for v in variants:
            why = f" (failed: {failed[v.name]})" if v.name in failed else ""
            emit(f"| {v.name}{why} | {tps[v.name]:,.0f} | {tps[v.name] / ref if ref else float('nan'):.2f} |")
        emit("\n### Decoder alone (forward + backward), same shape\n")
        dec = decoder_variants(d_in, m, k, B)
        tps, failed = time_cuda(dec, batches, steps, rounds, warmup)
        ref = next((tps[v.name] for v in dec if v.name.startswith("sparsify")), None)
        emit("| decoder | tokens/s | × sparsify's |")
        emit("|---|---:|---:|")
        for v in dec:
            why = f" (failed: {failed[v.name]})" if v.name in failed else ""
            emit(f"| {v.name}{why} | {tps[v.name]:,.0f} | {tps[v.name] / ref if ref else float('nan'):.2f} |")
    if args.out:
        atomic_write_text(args.out, "\n".join(lines) + "\n")
        print(f"\nwrote {args.out}")


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
    p.add_argument("--chunk", type=int, default=None, help="row chunk of the fast encoder (KernelPolicy.chunk)")
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
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu: the tables above; cuda: the GPU workloads vs sparsify, ablations, decoder table")
    p.add_argument("--out", help="cuda: also write the markdown report to this file")
    p.add_argument("--no-ablate", action="store_true", help="cuda: skip the ablation and decoder tables")
    p.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available")
        if args.steps == 3:
            args.steps = 10
        gpu_main(args)
        return
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
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
          f"clock {args.clock}, batch {args.batch}, k {args.k}, {args.rounds} rounds × {args.steps} steps (median), warm-up {args.warmup}")
    for d_in, m in shapes:
        spec = dict(base, d_in=d_in, latents=m, memory=not args.no_memory and len(shapes) == 1)
        kind = "encode-only" if args.encode else "training step"
        rows = run_workload(spec, args)
        print_table(f"{kind}: d_in {d_in}, {m:,} latents, k {args.k}, batch {args.batch}", rows)


if __name__ == "__main__":
    main()
