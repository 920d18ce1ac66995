"""The sparse-probing metric (SAEBench's method; docs/BENCH.md): each probing text's activations
at the hook point, mean-pooled over its tokens, and each SAE's latents, encoded per token and
mean-pooled the same way; then one-vs-rest logistic-regression probes on the top k latents by
class-mean difference, against a probe on all the pooled activations (dense) and on their top k.

The model runs once per text for all the SAEs of a hook point (the shared extraction).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from ..evaluation.probing import mean_pool, probe_accuracies
from .context import HookContext


def text_windows(ctx: HookContext, texts: list[str]) -> list[tuple[Tensor, Tensor]]:
    """Each text's first window (``input_ids``, ``token_mask``), windowed as the SAEs' training
    windowed documents (special tokens, BOS) and cut at ``probe_context`` tokens."""
    from ..data.corpus import token_windows

    m = ctx.members[0].metadata
    length = min([ctx.settings.probe_context] + [x.metadata.context_length for x in ctx.members
                                                 if x.metadata.context_length])
    tok = ctx.handle.tokenizer
    out = []
    for text in texts:
        wb = next(iter(token_windows([text], tok, length, batch_size=1, max_length=ctx.handle.max_length,
                                     style=m.window_style, prepend_bos=m.prepend_bos,
                                     exclude_special=m.exclude_special)))
        out.append((wb.input_ids[0], wb.token_mask[0]))
    return out


def _batch(rows: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ids, attention mask, token mask (padding: id 0, never attended nor kept)."""
    T = max(len(ids) for ids, _ in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    att = torch.zeros(len(rows), T, dtype=torch.long)
    keep = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, (r, k) in enumerate(rows):
        ids[i, :len(r)], att[i, :len(r)], keep[i, :len(r)] = r, 1, k
    return ids, att, keep


@torch.no_grad()
def pooled_batch(ctx: HookContext, rows: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, dict[str, Tensor]]:
    """One forward pass: the (B, d) pooled activations and {member: (B, d_sae)} pooled latents
    (each SAE encodes every kept token; the mean is over a text's kept tokens)."""
    from ..data.hooks import capture

    ids, att, keep = _batch(rows)
    dev = ctx.handle.device
    x = capture(ctx.handle, ctx.hook, ids.to(dev), att.to(dev)).float()
    keep = keep.to(x.device)
    dense = mean_pool(x, keep).cpu()
    n = keep.sum(1, keepdim=True).clamp_min(1).float()
    row = keep.nonzero(as_tuple=True)[0]
    latents = {}
    for m in ctx.members:
        codes = m.sae.encode(x[keep].to(next(m.sae.parameters()).device)).float().to(x.device)
        pooled = torch.zeros(len(rows), codes.shape[1], device=x.device).index_add_(0, row, codes)
        latents[m.name] = (pooled / n).cpu()
    return dense, latents


def extract(ctx: HookContext) -> tuple[dict, dict, float]:
    """Pooled activations and latents of every task's texts: ({(task, split, class): dense},
    {(task, split, class): {member: latents}}, seconds), all texts batched together, with a time
    estimate after the first batch and a progress bar (status lines in a log)."""
    from .. import progress
    from ..interp.cost import estimate

    keys = [(t.name, split, cls, len(texts)) for t in ctx.tasks for split, d in (("train", t.train), ("test", t.test))
            for cls, texts in d.items()]
    texts = [x for t in ctx.tasks for d in (t.train, t.test) for v in d.values() for x in v]
    bs = ctx.settings.batch_size
    t0 = time.perf_counter()
    rows = text_windows(ctx, texts)
    parts_d, parts_l = [], []
    job = f"sparse probing ({ctx.label}, {len(ctx.members)} SAE)"
    with progress.bar(total=len(rows), desc=job, unit="text") as bar:
        for i in range(0, len(rows), bs):
            t1 = time.perf_counter()
            d, l = pooled_batch(ctx, rows[i:i + bs])
            if i == 0:
                length = max(len(r) for r, _ in rows[:bs])
                progress.say(estimate(job, len(rows), length, len(rows[:bs]), time.perf_counter() - t1).line())
            parts_d.append(d)
            parts_l.append(l)
            bar.update(len(d))
    dense_all = torch.cat(parts_d)
    lat_all = {m.name: torch.cat([p[m.name] for p in parts_l]) for m in ctx.members}
    dense, lat, at = {}, {}, 0
    for task, split, cls, n in keys:
        dense[(task, split, cls)] = dense_all[at:at + n]
        lat[(task, split, cls)] = {name: v[at:at + n] for name, v in lat_all.items()}
        at += n
    return dense, lat, time.perf_counter() - t0


def _probes(train: dict[str, Tensor], test: dict[str, Tensor], ks, seed: int) -> dict[str, dict[str, Any]]:
    """{k: {"mean": accuracy, "per_class": {class: accuracy}}} for each k."""
    out = {}
    for k in ks:
        per = probe_accuracies(train, test, k=k, seed=seed)
        out[str(k)] = {"mean": sum(per.values()) / len(per), "per_class": per}
    return out


def _split(store: dict, task, split: str, classes: list[str], member: str | None = None) -> dict[str, Tensor]:
    return {c: store[(task.name, split, c)] if member is None else store[(task.name, split, c)][member]
            for c in classes}


def sparse_probing(ctx: HookContext) -> dict[str, dict[str, Any]]:
    """The metric (see the module docstring): per member, per task the test accuracy of the
    sparse probes for each k, of the dense probe and of dense top-k probes, and their means over tasks."""
    s = ctx.settings
    dense, lat, shared_s = extract(ctx)
    baseline = {}
    for t in ctx.tasks:
        tr, te = _split(dense, t, "train", t.classes), _split(dense, t, "test", t.classes)
        full = probe_accuracies(tr, te, k=None, seed=s.seed)
        baseline[t.name] = {"dense": {"mean": sum(full.values()) / len(full), "per_class": full},
                            "dense_top_k": _probes(tr, te, s.ks, s.seed)}
    out = {}
    for m in ctx.members:
        t0 = time.perf_counter()
        tasks = {}
        for t in ctx.tasks:
            tr, te = _split(lat, t, "train", t.classes, m.name), _split(lat, t, "test", t.classes, m.name)
            tasks[t.name] = {"sae_top_k": _probes(tr, te, s.ks, s.seed), **baseline[t.name], **t.summary()}
        out[m.name] = {"tasks": tasks, "mean": _means(tasks, s.ks), "ks": list(s.ks), "probe_context": s.probe_context,
                       "seconds": {"shared_extraction": round(shared_s, 2),
                                   "probes": round(time.perf_counter() - t0, 2)}}
    return out


def _means(tasks: dict[str, dict], ks) -> dict[str, Any]:
    """Means over tasks: sae_top_k and dense_top_k per k, and dense."""
    avg = (lambda xs: sum(xs) / len(xs))
    return {"sae_top_k": {str(k): avg([t["sae_top_k"][str(k)]["mean"] for t in tasks.values()]) for k in ks},
            "dense_top_k": {str(k): avg([t["dense_top_k"][str(k)]["mean"] for t in tasks.values()]) for k in ks},
            "dense": avg([t["dense"]["mean"] for t in tasks.values()])}
