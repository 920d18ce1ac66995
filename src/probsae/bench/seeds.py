"""The bench across seeds: runs that differ only in their seed form a group; each group's mean with
a 95 % t-interval over seeds, and each group's difference from its baseline paired by seed (the
statistics of ``probsae.experiments.when``: ``summary``, ``paired``, ``verdict``).

Groups: runs of one architecture whose SAE configs are equal apart from ``seed``. Baseline: for
each K (``config["k"]``), the group of the first run given with that K, so the order of the runs on
the command line chooses it (``probsae bench TOPK_RUNS… OTHER_RUNS…`` compares the others with the
first)."""

from __future__ import annotations

import json
from typing import Any

#: (key, label, lower is better) of every scalar a group is summarised by, in table order.
SCALARS: list[tuple[str, str, bool]] = [
    ("fvu", "FVU", True), ("alive", "alive latents", False), ("ce_recovered", "CE loss recovered", False),
    ("kl", "KL (nats)", True), ("probe_1", "probe k=1", False), ("probe_2", "probe k=2", False),
    ("probe_5", "probe k=5", False), ("probe_20", "probe k=20", False),
    ("absorption", "absorption fraction", True), ("full_absorption", "full absorption", True),
]


def scalars(doc: dict[str, Any]) -> dict[str, float | None]:
    """One run's scalars (None where a metric was not run)."""
    m = doc["metrics"]
    core = m.get("core") or {}
    held, ds = core.get("heldout") or {}, core.get("downstream") or {}
    sp = ((m.get("sparse_probing") or {}).get("mean") or {}).get("sae_top_k") or {}
    ab = m.get("absorption") or {}
    out = {"fvu": held.get("fvu"), "alive": held.get("alive"), "ce_recovered": ds.get("ce_recovered"),
           "kl": ds.get("kl"), "absorption": ab.get("mean_absorption_fraction_score"),
           "full_absorption": ab.get("mean_full_absorption_score")}
    out.update({f"probe_{k}": v for k, v in sp.items()})
    return out


def groups(docs: dict[str, dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Group label (``architecture k=K …``) → {seed: the run's scalars}, in the order runs were given."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for d in docs.values():
        cfg = {k: v for k, v in d["config"].items() if k != "seed"}
        key = d["architecture"] + " " + json.dumps(cfg, sort_keys=True)
        label = _label(d["architecture"], cfg, key, out)
        out.setdefault(label, {})[int(d["config"].get("seed", 0))] = scalars(d) | {"_k": cfg.get("k"), "_key": key, "_arch": d["architecture"]}
    return out


def _label(arch: str, cfg: dict[str, Any], key: str, seen: dict) -> str:
    """``arch k=8`` plus the hyperparameters that set it apart from a same-architecture group with the same k."""
    for label, runs in seen.items():
        if next(iter(runs.values()))["_key"] == key:
            return label
    base = f"{arch} k={cfg.get('k')}"
    extras = [f"{n}={v}" for n, v in sorted(cfg.items()) if n.startswith("aux") and v and n != "aux_coeff"]
    return " ".join([base, *extras])


def seed_tables(docs: dict[str, dict[str, Any]]) -> str:
    """Markdown: each group's mean [95 % CI] over seeds, then each group minus its baseline, paired by seed."""
    from ..experiments.when import paired, summary, verdict

    gs = groups(docs)
    if not any(len(g) > 1 for g in gs.values()):
        return ""
    keys = [(k, lab, low) for k, lab, low in SCALARS if any(r.get(k) is not None for g in gs.values() for r in g.values())]
    lines = ["## Across seeds", "", "Mean over seeds with its 95 % t-interval; n = seeds.", "",
             "| group | n | " + " | ".join(lab for _, lab, _ in keys) + " |", "|---|---|" + "---|" * len(keys)]
    for label, g in gs.items():
        lines.append(f"| {label} | {len(g)} | " + " | ".join(_cell(summary(g, k)) for k, _, _ in keys) + " |")
    base: dict[Any, str] = {}
    for label, g in gs.items():
        base.setdefault(next(iter(g.values()))["_k"], label)
    lines += ["", "Differences from the baseline of each K (the first group given with that K), paired by seed: "
              "mean Δ [95 % CI]; a verdict only where the interval excludes 0.", "",
              "| comparison | metric | Δ [95 % CI] | relative | pairs | verdict |", "|---|---|---|---|---|---|"]
    for label, g in gs.items():
        b = base[next(iter(g.values()))["_k"]]
        if b == label:
            continue
        for k, lab, low in keys:
            p = paired(g, gs[b], k)
            if p["n"]:
                rel = f"{100 * p['rel']:+.1f} %" if p["rel"] is not None else "–"
                lines.append(f"| {label} − {b} | {lab} | {_cell(p, signed=True)} | {rel} | {p['n']} | "
                             f"{verdict(p, low, label, b)} |")
    return "\n".join(lines)


def _cell(s: dict[str, Any], signed: bool = False) -> str:
    if s.get("mean") is None:
        return "–"
    f = "{:+.4g}" if signed else "{:.4g}"
    ci = f" [{f.format(s['lo'])}, {f.format(s['hi'])}]" if s.get("lo") is not None else ""
    return f.format(s["mean"]) + ci
