"""Where a GPU training step's time goes, and which kernel settings pay, shape by shape.

Two reports on random activations already on the device:

- ``--matrix``: tokens/s of ``Member.step`` for every combination of the settings the GPU path
  offers (CUDA graph on/off, grouped or full top-k, atomic or sorted scatter), per shape and
  architecture: median of ``--rounds`` blocks of ``--steps`` steps timed with CUDA events, each
  variant built alone (its memory freed before the next).
- ``--memory``: peak allocated memory (MiB over what was allocated before the SAE was built) of
  each of the first steps, CUDA graph off and on (the graph warms up eagerly, captures, replays).
- ``--profile``: the torch.profiler table of the GPU kernels of ``--steps`` eager steps (top 20 by
  device time), to see which kernels dominate.

    python benchmarks/profile_step.py --matrix --profile
    python benchmarks/profile_step.py --matrix --shapes 768x12288x32x8192 --archs prob_topk

Shapes are d_in x latents x k x batch. CUDA only.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics

import torch

import probsae
from probsae import kernels
from probsae.training.config import TrainConfig
from probsae.training.member import Member

DEFAULT_SHAPES = "384x6144x32x4096,768x12288x32x8192,768x98304x32x8192"


def parse_shape(text: str) -> tuple[int, int, int, int]:
    d, m, k, b = (int(v) for v in text.lower().split("x"))
    return d, m, k, b


def build(arch: str, d: int, m: int, k: int, graph: bool, settings: dict | None = None) -> Member:
    sae = probsae.build_sae(arch, d_in=d, d_sae=m, k=k)
    cfg = TrainConfig(steps=10_000, batch_size=1, progress=False, device="cuda", cuda_graph=graph)
    member = Member(sae, cfg, torch.device("cuda"), None, None, kernels=kernels.KernelPolicy(**(settings or {})))
    sae.train()
    return member


def timed(member: Member, batches: list[torch.Tensor], steps: int, rounds: int, warmup: int) -> float:
    state = {"i": 0}

    def step():
        member.step(batches[state["i"] % len(batches)], state["i"], 10_000)
        state["i"] += 1

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    rates = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        end.synchronize()
        rates.append(steps * batches[0].shape[0] / (start.elapsed_time(end) / 1e3))
    return statistics.median(rates)


def matrix(shapes, archs, args) -> None:
    print("| shape (d_in x latents x k x batch) | arch | CUDA graph | top-k | scatter | tokens/s |")
    print("|---|---|---|---|---|---:|")
    for (d, m, k, b), arch in itertools.product(shapes, archs):
        batches = [torch.randn(b, d, device="cuda") for _ in range(3)]
        for graph, group, scatter in itertools.product((False, True), (True, False), ("atomic", "sorted")):
            settings = {"group_topk": group, "scatter": scatter}
            try:
                member = build(arch, d, m, k, graph, settings)
                tps = timed(member, batches, args.steps, args.rounds, args.warmup)
                text = f"{tps:,.0f}"
            except Exception as e:  # report, keep going
                text = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"
            print(f"| {d}x{m}x{k}x{b} | {arch} | {'on' if graph else 'off'} | {'groups' if group else 'full'} "
                  f"| {scatter} | {text} |", flush=True)
            member = None
            gc.collect()
            torch.cuda.empty_cache()


def memory(shapes, archs, args) -> None:
    print("| shape | arch | CUDA graph | peak MiB of steps 1, 2, … |")
    print("|---|---|---|---|")
    for (d, m, k, b), arch in itertools.product(shapes, archs):
        batches = [torch.randn(b, d, device="cuda") for _ in range(2)]
        for graph in (False, True):
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            member = build(arch, d, m, k, graph)
            peaks = []
            for i in range(args.memory_steps):
                torch.cuda.reset_peak_memory_stats()
                member.step(batches[i % 2], i, 10_000)
                torch.cuda.synchronize()
                peaks.append((torch.cuda.max_memory_allocated() - base) / 2**20)
            print(f"| {d}x{m}x{k}x{b} | {arch} | {'on' if graph else 'off'} | {', '.join(f'{p:.0f}' for p in peaks)} |",
                  flush=True)
            member = None


def profile(shapes, archs, args) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    for (d, m, k, b), arch in itertools.product(shapes, archs):
        batches = [torch.randn(b, d, device="cuda") for _ in range(3)]
        member = build(arch, d, m, k, graph=False)
        timed(member, batches, 2, 1, args.warmup)
        with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
            for i in range(args.steps):
                member.step(batches[i % 3], i, 10_000)
            torch.cuda.synchronize()
        print(f"\n### {arch} {d}x{m}x{k}x{b}: GPU kernels over {args.steps} eager steps\n")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=20, max_name_column_width=70))
        member = None
        gc.collect()
        torch.cuda.empty_cache()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma list of d_in x latents x k x batch")
    p.add_argument("--archs", default="topk,prob_topk")
    p.add_argument("--matrix", action="store_true", help="tokens/s for every combination of GPU settings")
    p.add_argument("--profile", action="store_true", help="torch.profiler kernel table of eager steps")
    p.add_argument("--memory", action="store_true", help="peak memory of each of the first steps, graph off/on")
    p.add_argument("--memory-steps", type=int, default=7)
    p.add_argument("--profile-shapes", default="768x98304x32x8192", help="shapes for --profile")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("profile_step.py needs a CUDA device")
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    archs = args.archs.split(",")
    if args.matrix:
        matrix([parse_shape(s) for s in args.shapes.split(",")], archs, args)
    if args.memory:
        memory([parse_shape(s) for s in args.shapes.split(",")], archs, args)
    if args.profile:
        profile([parse_shape(s) for s in args.profile_shapes.split(",")], archs, args)


if __name__ == "__main__":
    main()
