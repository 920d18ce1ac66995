"""What integrity checking costs: checksummed tensor files (``probsae.tensorfile``) against plain
safetensors, for an activation-cache shard and a training checkpoint of realistic sizes.

Rows (median of ``--repeats`` runs, one process, local disk, warm page cache; every write is
atomic with an fsync, as probsae writes files, so the baselines differ only in format and checks):
- ``shard write``: one cache shard (``--shard-tokens`` × ``--d-model`` fp32) with ``save_tensors``
  (CRC-32 computed) vs ``safetensors.torch.save_file``;
- ``shard read``: ``ActivationCache.load_shard`` with the CRC-32 check (the default; once per
  process and file) and without it, vs ``load_file``; each read sums the tensor, so that lazily
  mapped pages are really read;
- ``checkpoint save`` / ``checkpoint load``: ``save_checkpoint``/``load_checkpoint`` of a TopK SAE
  with d_sae = 16 × d_model and its Adam state (all checks on) vs ``torch.save``/``torch.load``
  (``weights_only=True``) of the same state dicts.

    .venv/bin/python benchmarks/integrity_cost.py [--d-model 768] [--shard-tokens 65536]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def timed(*fns, repeats: int) -> list[float]:
    """Median seconds of each function, run alternately (so slow phases of a shared disk or
    machine hit every variant alike)."""
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            out[i].append(time.perf_counter() - t0)
    return [statistics.median(o) for o in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--shard-tokens", type=int, default=65_536)
    ap.add_argument("--expansion", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from safetensors.torch import load_file, save_file

    import probsae
    from probsae.data import cache as cache_mod
    from probsae.data.cache import ActivationCache, build_cache
    from probsae.io import atomic_write
    from probsae.tensorfile import save_tensors
    from probsae.training.checkpoint import load_checkpoint, save_checkpoint
    from probsae.training.liveness import Liveness

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        x = torch.randn(args.shard_tokens, args.d_model)
        mb = x.numel() * 4 / 1e6
        w = timed(lambda: save_tensors(tmp / "a.safetensors", {"x": x}),
                  lambda: atomic_write(tmp / "b.safetensors", lambda t: save_file({"x": x}, str(t))),
                  repeats=args.repeats)
        rows += [("shard write (probsae, CRC-32)", w[0], mb), ("shard write (safetensors)", w[1], mb)]
        c = build_cache([x], tmp / "cache", {"model": "m", "hook": "h"}, shard_tokens=args.shard_tokens)

        def read(verify: bool):
            cache_mod._VERIFIED.clear()
            ActivationCache(c.path, verify=verify).load_shard(0).sum()

        r = timed(lambda: read(True), lambda: read(False), lambda: load_file(str(tmp / "b.safetensors"))["x"].sum(),
                  repeats=args.repeats)
        rows += [("shard read, verified", r[0], mb), ("shard read, unverified", r[1], mb),
                 ("shard read (safetensors)", r[2], mb)]

        sae = probsae.build_sae("topk", d_in=args.d_model, d_sae=args.expansion * args.d_model, k=32)
        opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
        out = sae(torch.randn(64, args.d_model))
        out.loss.backward()
        opt.step()
        live = Liveness(sae.d_sae, 10_000)
        state = {"sae": sae.state_dict(), "optimizer": opt.state_dict(), "liveness": live.state_dict()}
        ck_mb = sum(p.numel() for p in sae.parameters()) * 4 * 3 / 1e6
        s_ = timed(lambda: save_checkpoint(tmp, 1, sae, opt, live),
                   lambda: atomic_write(tmp / "c.pt", lambda t: torch.save(state, t)), repeats=args.repeats)
        l_ = timed(lambda: load_checkpoint(tmp), lambda: torch.load(tmp / "c.pt", weights_only=True),
                   repeats=args.repeats)
        rows += [("checkpoint save (probsae)", s_[0], ck_mb), ("checkpoint save (torch.save)", s_[1], ck_mb),
                 ("checkpoint load (probsae)", l_[0], ck_mb), ("checkpoint load (torch.load)", l_[1], ck_mb)]

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats}")
    print(f"{'operation':34s} {'MB':>8s} {'seconds':>9s} {'GB/s':>7s}")
    for name, s, size in rows:
        print(f"{name:34s} {size:8.0f} {s:9.3f} {size / 1e3 / s:7.2f}")


if __name__ == "__main__":
    main()
