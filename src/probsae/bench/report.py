"""The comparison across benchmarked runs: ``bench.md`` (one row per run) and figures, one colour
per architecture (``saes.style``, the report's palette)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPORT_FILE = "bench.md"


def _num(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else "–"


def _ci(d: dict, key: str, digits: int = 3) -> str:
    ci = (d.get("ci") or {}).get(key)
    return _num(d.get(key), digits) + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def table(docs: dict[str, dict[str, Any]]) -> str:
    """The Markdown comparison table: core numbers, sparse-probing accuracy per k (mean over
    tasks) and the dense probe; '–' or 'not run' where a metric is missing."""
    ks = next((d["metrics"]["sparse_probing"]["ks"] for d in docs.values()
               if "ks" in d["metrics"].get("sparse_probing", {})), [])
    head = (["run", "architecture", "L0", "FVU", "alive", "CE recovered [95 % CI]", "KL [95 % CI]"]
            + [f"probe k={k}" for k in ks] + ["dense probe", "absorption fraction", "autointerp score"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, d in docs.items():
        m = d["metrics"]
        core, sp = m.get("core", {}), m.get("sparse_probing", {})
        held, ds = core.get("heldout", {}), core.get("downstream") or {}
        row = [name, d["architecture"], _num(held.get("l0"), 1), _num(held.get("fvu")),
               f"{held['alive']:,}" if "alive" in held else "–",
               _ci(ds, "ce_recovered") if "ce_recovered" in ds else ds.get("status", "–"),
               _ci(ds, "kl") if "kl" in ds else ds.get("status", "–")]
        mean = sp.get("mean")
        row += [_num(mean["sae_top_k"].get(str(k))) if mean else sp.get("status", "–") for k in ks]
        row += [_num(mean["dense"]) if mean else "–"]
        ab, ai = m.get("absorption") or {}, m.get("autointerp") or {}
        row += [_num(ab["mean_absorption_fraction_score"]) if "mean_absorption_fraction_score" in ab
                else ab.get("status", "–"),
                _num(ai["mean_score"]) if ai.get("mean_score") is not None else ai.get("status", "–")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def task_table(docs: dict[str, dict[str, Any]]) -> str:
    """Per task: the accuracy of each run's k-latent probes, and the dense probe (shared)."""
    out = []
    sps = {n: d["metrics"]["sparse_probing"] for n, d in docs.items() if "tasks" in d["metrics"].get("sparse_probing", {})}
    if not sps:
        return ""
    first = next(iter(sps.values()))
    ks = first["ks"]
    for task, t in first["tasks"].items():
        out.append(f"\n**{task}** ({t['description']}; classes: {', '.join(t['classes'])}; "
                   f"{sum(t['n_train'].values())} train / {sum(t['n_test'].values())} test texts)\n")
        out.append("| run | " + " | ".join(f"k={k}" for k in ks) + " |\n|---|" + "---|" * len(ks))
        for name, sp in sps.items():
            out.append(f"| {name} | " + " | ".join(_num(sp["tasks"][task]["sae_top_k"][str(k)]["mean"]) for k in ks) + " |")
        out.append("| *dense, all dims* | " + " | ".join([_num(t["dense"]["mean"])] * len(ks)) + " |")
        out.append("| *dense, top-k dims* | " + " | ".join(_num(t["dense_top_k"][str(k)]["mean"]) for k in ks) + " |")
    return "\n".join(out)


def _figure(path: Path, draw, xlabel: str, ylabel: str) -> Path:
    """One 6×4 in panel: ``draw(ax)``, axis labels, a light grid, the legend; written atomically."""
    from ..extras import pyplot
    from ..io import atomic_savefig

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    draw(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    return path


def probing_figure(docs: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Mean sparse-probing accuracy against k in each architecture's colour; the dense probe dashed
    grey. Runs that differ only in their seed are drawn as one line, their mean over seeds with
    95 % t-interval bars (``bench.seeds.groups``); a line per run otherwise."""
    from ..saes.style import style
    from ..stats import mean_ci
    from .seeds import groups

    sps = {n: (d["architecture"], d["metrics"]["sparse_probing"]) for n, d in docs.items()
           if "mean" in d["metrics"].get("sparse_probing", {})}
    if not sps:
        return None
    first = next(iter(sps.values()))[1]
    ks = first["ks"]
    gs = groups({n: docs[n] for n in sps})
    lines = []   # (label, architecture, means, (lows, highs) or None)
    if any(len(g) > 1 for g in gs.values()):
        for label, g in gs.items():
            cis = [mean_ci([r.get(f"probe_{k}") for r in g.values()]) for k in ks]
            bars = None if len(g) < 2 else ([m - lo for m, lo, _ in cis], [hi - m for m, _, hi in cis])
            lines.append((f"{label} ({len(g)} seeds)", next(iter(g.values()))["_arch"], [m for m, _, _ in cis], bars))
    else:
        for name, (arch, sp) in sps.items():
            lines.append((f"{name} ({style(arch).label})", arch, [sp["mean"]["sae_top_k"][str(k)] for k in ks], None))

    def draw(ax):
        for i, (label, arch, ys, bars) in enumerate(lines):
            st = style(arch)
            same = sum(1 for other in lines[:i] if other[1] == arch)   # a second config of one architecture: dashed
            ax.errorbar(ks, ys, yerr=bars, marker=st.marker, color=st.color, ls=["-", "--", ":", "-."][same % 4],
                        capsize=3, label=label)
        ax.axhline(first["mean"]["dense"], color="0.5", ls="--", label="dense probe (all dims)")
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
    return _figure(path, draw, "latents the probe reads (k)", "test accuracy (mean over tasks and classes)")


def density_figure(docs: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """The log10 feature-density histogram of each run (step lines, its architecture's colour)."""
    from ..saes.style import style

    hists = {n: (d["architecture"], d["metrics"]["core"]["density"]) for n, d in docs.items()
             if "density" in d["metrics"].get("core", {})}
    if not hists:
        return None

    def draw(ax):
        for name, (arch, h) in hists.items():
            ax.stairs(h["counts"], h["log10_edges"], color=style(arch).color, label=f"{name} ({h['dead']:,} dead)")
    return _figure(path, draw, "log10 feature density (fraction of held-out tokens a latent fires on)", "alive latents")


def write_report(docs: dict[str, dict[str, Any]], out: Path, command: str | None) -> Path:
    """``out/bench.md`` with the tables and the figures (figures only when matplotlib is installed)."""
    from ..extras import available
    from ..io import atomic_write_text

    figs = []
    if available("plot"):
        figs = [p for p in (probing_figure(docs, out / "sparse_probing.png"), density_figure(docs, out / "density.png")) if p]
    from .seeds import seed_tables

    text = ["# probsae bench", "", f"Command: `{command}`" if command else "", "", table(docs), "",
            seed_tables(docs), "", "## Sparse probing per task", task_table(docs), ""]
    text += [f"![{p.stem}]({p.name})" for p in figs]
    return atomic_write_text(out / REPORT_FILE, "\n".join(text) + "\n")
