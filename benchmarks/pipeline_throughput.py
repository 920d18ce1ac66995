"""Data-pipeline throughput: activation extraction vs the bare model forward, and cached-activation
reads vs SAE training, in tokens/s, on one machine in one process.

Rows:
- ``model forward (full)``: the bare model on the token windows (``inference_mode``), every block;
- ``model forward to hook`` / ``extract``: ``probsae.data.extract.activations_of`` (the forward
  stops at the hook point, special tokens dropped, fp32 copy) — what extraction costs per token;
- ``cache write``: ``build_cache`` of those activations (fp32 shards on local disk);
- ``cache read``: ``ActivationCache.iter_batches`` (shuffled, batch 4096) from that cache;
- ``train topk`` / ``train prob_topk``: ``Member.step`` on batches of the same width, the consumer
  the cache has to keep up with.

The default model is the bundled all-MiniLM-L6-v2 (no network needed; d_model 384, 6 blocks);
``--model`` takes anything ``probsae.data.models.load_model`` loads, or ``tiny-gpt2`` for a random
GPT-2-shaped model (``--tiny-layers``, ``--tiny-width``). Token ids are random (the forward cost
does not depend on the text).

    .venv/bin/python benchmarks/pipeline_throughput.py [--model minilm] [--hook resid_post.3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import probsae
from probsae.data.corpus import WindowBatch
from probsae.data.extract import activations_of
from probsae.training.config import TrainConfig
from probsae.training.member import Member


def windows(handle, n_batches: int, batch: int, ctx: int, seed: int = 0) -> list[WindowBatch]:
    g = torch.Generator().manual_seed(seed)
    vocab = int(getattr(handle.model.config, "vocab_size", 1000))
    out = []
    for i in range(n_batches):
        ids = torch.randint(1000 if vocab > 2000 else 1, vocab, (batch, ctx), generator=g)
        att = torch.ones_like(ids)
        out.append(WindowBatch(ids, att, att.bool(), i * batch))
    return out


def rate(fn, tokens: int, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return tokens / statistics.median(ts)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm")
    p.add_argument("--hook", default=None, help="hook point (default: resid_post of the middle block)")
    p.add_argument("--context", type=int, default=128, help="tokens per window")
    p.add_argument("--windows", type=int, default=32, help="windows per forward batch")
    p.add_argument("--batches", type=int, default=4, help="forward batches per timed block")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-batch", type=int, default=4096)
    p.add_argument("--expansion", type=int, default=16, help="SAE latents = expansion × d_model")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--tiny-layers", type=int, default=12)
    p.add_argument("--tiny-width", type=int, default=768)
    args = p.parse_args(argv)

    if args.model == "tiny-gpt2":
        from probsae.data.tiny import tiny_model
        handle = tiny_model("gpt2", n_layers=args.tiny_layers, d_model=args.tiny_width, max_positions=max(64, args.context))
    else:
        from probsae.data.models import load_model
        handle = load_model(args.model)
    handle.model.eval()
    hook = args.hook or f"resid_post.{handle.n_layers // 2}"
    wins = windows(handle, args.batches, args.windows, min(args.context, handle.max_length or args.context))
    tokens = sum(int(w.token_mask.sum()) for w in wins)
    rows: list[tuple[str, float, str]] = []

    def full_forward():
        with torch.inference_mode():
            for w in wins:
                extra = {"use_cache": False} if handle.is_causal else {}
                handle.model(input_ids=w.input_ids, attention_mask=w.attention_mask, **extra)
    rows.append(("model forward (full)", rate(full_forward, tokens, args.repeats), f"{handle.n_layers} blocks"))

    acts: list[torch.Tensor] = []

    def extract():
        acts.clear()
        for w in wins:
            acts.append(activations_of(handle, hook, w))
    rows.append((f"extract {hook} (forward to hook)", rate(extract, tokens, args.repeats), "activations_of"))

    from probsae.data.cache import ActivationCache, build_cache
    with tempfile.TemporaryDirectory() as tmp:
        reps = max(1, (8 * args.train_batch) // max(1, tokens))  # at least 8 training batches of data
        data = acts * reps

        def write():
            build_cache(iter(data), f"{tmp}/c", {"model": handle.name, "hook": hook}, overwrite=True)
        n_cached = sum(a.shape[0] for a in data)
        rows.append(("cache write (fp32 shards)", rate(write, n_cached, args.repeats), f"{n_cached:,} tokens"))
        cache = ActivationCache(f"{tmp}/c")

        def read():
            for _ in cache.iter_batches(args.train_batch, shuffle=True, seed=0):
                pass
        rows.append((f"cache read (iter_batches {args.train_batch}, shuffled)", rate(read, n_cached, args.repeats), ""))

        d = handle.d_model
        x = next(iter(cache.iter_batches(args.train_batch, shuffle=True, seed=1)))
        for arch in ("topk", "prob_topk"):
            sae = probsae.build_sae(arch, d_in=d, d_sae=args.expansion * d, k=args.k)
            m = Member(sae, TrainConfig(progress=False, device="cpu"), torch.device("cpu"), None, None)
            sae.train()
            state = {"i": 0}

            def step(m=m):
                m.step(x, state["i"], 1000)
                state["i"] += 1
            rows.append((f"train {arch} ({args.expansion}× latents, k {args.k})", rate(step, x.shape[0], args.repeats),
                         "Member.step"))

    print(f"model {handle.name} (d_model {handle.d_model}), hook {hook}, {args.windows}×{wins[0].input_ids.shape[1]} "
          f"tokens per forward, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| stage | tokens/s | note |")
    print("|---|---:|---|")
    for name, r, note in rows:
        print(f"| {name} | {r:,.0f} | {note} |")


if __name__ == "__main__":
    main()
