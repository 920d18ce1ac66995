"""The core metric: per SAE, on held-out activations of its own model and corpus, what
``probsae eval`` reports (``evaluation.metrics.evaluate``: L0, FVU, explained variance,
alive/dead; for causal LMs ``runs.eval_run.downstream_of``: CE loss recovered, ΔCE and KL with
95 % CIs), plus the feature-density histogram. SAEs trained on the same data share one
held-out cache and one clean/zero-ablation pass for CE/KL."""

from __future__ import annotations

import time
from typing import Any

from .context import HookContext, Member, data_key, not_run


def core(ctx: HookContext) -> dict[str, dict[str, Any]]:
    """The metric (see the module docstring); "not run" for a run that records no data spec."""
    out: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[Member]] = {}
    for m in ctx.members:
        if m.data is None:
            out[m.name] = not_run("the run records no data spec (no run.json, no sweep.json two folders up)")
        else:
            groups.setdefault(data_key(m.data), []).append(m)
    for members in groups.values():
        out.update(_core_group(ctx, members))
    return out


def _core_group(ctx: HookContext, members: list[Member]) -> dict[str, dict[str, Any]]:
    from .. import progress
    from ..data.prepare import prepare_caches
    from ..evaluation.density import density_histogram
    from ..evaluation.metrics import accumulate
    from ..runs.eval_run import downstream_of

    s = ctx.settings
    data = members[0].data
    t0 = time.perf_counter()
    (heldout,) = prepare_caches(data, members[0].cache_dir, parts=("holdout",), device=s.device)
    shared_s = time.perf_counter() - t0
    out = {}
    with progress.bar(total=len(members), desc=f"core: held-out metrics ({ctx.label})", unit="SAE") as bar:
        for m in members:
            t1 = time.perf_counter()
            acc = accumulate(m.sae, heldout, max_tokens=s.eval_tokens)   # one pass: metrics and density
            r: dict[str, Any] = {"heldout": acc.result(), "density": density_histogram(acc.density())}
            r["seconds"] = {"heldout_cache": round(shared_s, 2), "own": round(time.perf_counter() - t1, 2)}
            out[m.name] = r
            bar.update(1)
    if ctx.handle.is_causal:
        t2 = time.perf_counter()
        ds = downstream_of(ctx.handle, data, {m.name: m.sae for m in members}, s.downstream_tokens)
        for m in members:
            r = ds[m.name]
            # SAEBench's KL divergence score: 1 at the clean model, 0 at zero ablation
            out[m.name]["downstream"] = {**r, "kl_score": (r["kl_zero"] - r["kl"]) / r["kl_zero"] if r["kl_zero"] else None}
            out[m.name]["seconds"]["downstream_shared"] = round(time.perf_counter() - t2, 2)
    else:
        for m in members:
            out[m.name]["downstream"] = not_run(f"{ctx.model} is not a causal LM: no next-token CE to measure")
    return out
