"""Extraction speed of a causal LM on the CPU: tokens/s of the forward up to one hook point, for
each model dtype (float32 weights, bfloat16 weights, float32 weights under bfloat16 autocast) and
thread count, measured in interleaved rounds on the same windows.

    python benchmarks/extract_throughput.py --model smollm2 --hook resid_pre.20 --rounds 5

Each round runs every setting on the same ``--batches`` window batches (``--batch-size`` windows of
``--context-length`` tokens of the pydoc corpus) after one warm-up batch; a setting's figure is the
median over rounds of its tokens/s (kept tokens, as extraction counts them, per wall-clock second).
With ``--fidelity`` it also prints how far each dtype's activations are from float32's (relative
error of the activations). Whether a dtype is good enough for SAE training is decided by
``scripts/smollm2_dtype_check.py`` (held-out FVU of SAEs trained on each dtype's activations).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time

import torch


def settings(which: list[str]):
    out = {}
    for name in which:
        if name == "float32":
            out[name] = (torch.float32, False)
        elif name == "bfloat16":
            out[name] = (torch.bfloat16, False)
        elif name == "autocast-bf16":
            out[name] = (torch.float32, True)
        else:
            raise SystemExit(f"unknown setting {name}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--hook", default="resid_pre.20")
    ap.add_argument("--context-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=2, help="window batches per setting per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--settings", default="float32,bfloat16,autocast-bf16")
    ap.add_argument("--fidelity", action="store_true")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: tokens per wall-clock second (an idle machine); cpu: tokens per second of this "
                         "process's CPU time (robust on a shared machine; with 1 thread it measures the work)")
    args = ap.parse_args()

    from probsae.data.corpus import load_corpus, split_documents, token_windows
    from probsae.data.extract import activations_of
    from probsae.data.models import load_model

    base = load_model(args.model)
    models = {torch.float32: base}
    wanted = settings(args.settings.split(","))
    if any(d == torch.bfloat16 for d, _ in wanted.values()):
        models[torch.bfloat16] = load_model(args.model, dtype=torch.bfloat16)
    docs = split_documents(iter(load_corpus("pydoc")), "train")
    batches = []
    for wb in token_windows(docs, base.tokenizer, args.context_length, batch_size=args.batch_size,
                            max_length=base.max_length):
        batches.append(wb)
        if len(batches) == args.batches + 1:
            break

    def run(dtype, autocast, wb):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            return activations_of(models[dtype], args.hook, wb)

    threads = [int(t) for t in args.threads.split(",")]
    results: dict[tuple[str, int], list[float]] = {(n, t): [] for n in wanted for t in threads}
    for r in range(args.rounds):
        for t in threads:
            torch.set_num_threads(t)
            for name, (dtype, autocast) in wanted.items():
                run(dtype, autocast, batches[0])  # warm-up
                clock = time.process_time if args.clock == "cpu" else time.perf_counter
                tokens, t0 = 0, clock()
                for wb in batches[1:]:
                    tokens += run(dtype, autocast, wb).shape[0]
                results[(name, t)].append(tokens / (clock() - t0))
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    print(f"\nmodel {args.model}, hook {args.hook}, {args.batch_size} windows x {args.context_length} tokens a "
          f"batch, {args.batches} batches a setting, {args.rounds} rounds; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; clock: {args.clock}")
    ref = {t: statistics.median(results[("float32", t)]) for t in threads if ("float32", t) in results}
    unit = "tokens per CPU-second" if args.clock == "cpu" else "tokens/s"
    print(f"| setting | threads | {unit} (median) | min–max | × float32 (same threads) |")
    print("|---|---:|---:|---:|---:|")
    for (name, t), xs in results.items():
        med = statistics.median(xs)
        rel = f"{med / ref[t]:.2f}" if t in ref else "—"
        print(f"| {name} | {t} | {med:,.0f} | {min(xs):,.0f}–{max(xs):,.0f} | {rel} |")

    if args.fidelity:
        torch.set_num_threads(max(threads))
        ref_act = torch.cat([run(torch.float32, False, wb) for wb in batches])
        print("\n| setting | relative error of the activations vs float32 (‖Δ‖/‖x‖) |")
        print("|---|---:|")
        for name, (dtype, autocast) in wanted.items():
            act = torch.cat([run(dtype, autocast, wb) for wb in batches])
            print(f"| {name} | {float((act - ref_act).norm() / ref_act.norm()):.2e} |")


if __name__ == "__main__":
    main()
