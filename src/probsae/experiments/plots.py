"""The report's figures (matplotlib, Agg backend: no display needed). Each function takes plain
data prepared by :mod:`probsae.experiments.report` and writes one PNG. An architecture's colour and
marker are its module's ``presentation`` (through :mod:`probsae.saes.style`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import atomic_savefig
from ..saes.style import arch_order, known, style

_SEQUENTIAL = ["#fdd0a2", "#fdae6b", "#fd8d3c", "#e6550d", "#a63603", "#7f2704"]
"""Shades for variants of one architecture (ablations), lightest first."""


def _plt():
    from ..extras import pyplot

    return pyplot()


def log2_label(v: float) -> str:
    """A short tick label of a log-2 axis: 4, 8, 16 … at 1 and above, 1/2, 1/4 … 1/128 below
    (``f"{v:g}"`` writes 2⁻⁷ as 0.0078125, whose neighbours then run into it)."""
    if v <= 0:
        return ""
    if v >= 1:
        return f"{v:g}"
    inv = 1 / v
    return f"1/{round(inv)}" if abs(inv - round(inv)) < 1e-6 * inv else f"{v:.2g}"


#: At most this many major ticks on a log-x axis: matplotlib then labels every 2nd, 4th … power of 2.
_MAX_LOG_TICKS = 7


def _log_x(ax, xlabel: str, ylabel: str) -> None:
    """Log-scale x axis labelled 4, 8, 16 … (``log2_label``) instead of 4×10⁰, axis labels and a light grid."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.xaxis.set_major_locator(LogLocator(base=2, numticks=_MAX_LOG_TICKS))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: log2_label(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _save(fig, path: Path, title: str | None) -> None:
    """Title, tight layout, write the PNG (atomically), free the figure."""
    if title is not None:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    _plt().close(fig)


def _by_arch(series: dict[str, Any]) -> list[tuple[str, Any]]:
    """Items of an architecture-keyed dict in legend order (the registry's order, ``saes.style.arch_order``)."""
    return sorted(series.items(), key=lambda kv: (arch_order(kv[0]), kv[0]))


_VARIANT_LINES = ("--", ":", "-.")


def _line_styles(names: list[str]) -> list[tuple[str, str]]:
    """(colour, line style) per series: an architecture solid in its colour; a variant labelled
    "<architecture> (<setting>)" in its architecture's colour, dashed, dotted, … in turn, so that a
    variant equal to its architecture (drawn over it) still shows both."""
    out, used = [], {}
    for name in names:
        base = name.rsplit(" (", 1)[0] if name.endswith(")") and " (" in name else None
        if not known(name) and base is not None and known(base):
            i = used[base] = used.get(base, -1) + 1
            out.append((style(base).color, _VARIANT_LINES[i % len(_VARIANT_LINES)]))
        else:
            out.append((style(name).color, "-"))
    return out


def pareto(series: dict[str, list[dict[str, Any]]], path: Path, title: str) -> Path:
    """FVU vs L0 and MSE vs L0 (log-x), one line per architecture. ``series``: architecture name →
    rows with l0, fvu, mse, tag (K or λ, annotated next to each point)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, ylabel in ((axes[0], "fvu", "FVU (1 − explained variance)"), (axes[1], "mse", "MSE (normalised inputs)")):
        for arch, rows in _by_arch(series):
            rows = sorted(rows, key=lambda r: r["l0"])
            if not rows:
                continue
            st = style(arch)
            c = st.color
            xs = [max(r["l0"], L0_FLOOR) for r in rows]
            ax.plot(xs, [r[key] for r in rows], marker=st.marker, color=c, label=st.label)
            for x, r in zip(xs, rows):
                tag = r.get("tag", "") + (" (L0=0)" if r["l0"] < L0_FLOOR else "")
                ax.annotate(tag, (x, r[key]), textcoords="offset points", xytext=(4, 3), fontsize=7, color=c)
        _log_x(ax, "L0 (active latents per token, held-out)", ylabel)
        _include_all(ax, [r[key] for rows in series.values() for r in rows])
    _mark_fvu_above_one(axes[0], [r for rows in series.values() for r in rows])
    axes[0].legend(fontsize=8)
    _save(fig, path, title)
    return path


#: L0 of a point on a log axis at least this (an SAE with no active latent is drawn here, tagged L0=0).
L0_FLOOR = 1e-3


def _include_all(ax, ys: list[float]) -> None:
    """A y-range holding every point (matplotlib's autoscale does, but a later change of limits
    must not drop a run off the panel): from below the lowest to above the highest value."""
    ys = [y for y in ys if y == y]
    if ys:
        lo, hi = min(ys), max(ys)
        pad = 0.08 * (hi - lo or abs(hi) or 1.0)
        ax.set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + 1.5 * pad)  # room for the tags


def _mark_fvu_above_one(ax, rows: list[dict[str, Any]]) -> None:
    """Runs whose FVU exceeds 1 reconstruct worse than the mean of the data: a dotted line at FVU = 1
    and a black ring around each such point, both in the legend."""
    bad = [r for r in rows if r["fvu"] > 1]
    if not bad:
        return
    ax.axhline(1.0, color="0.35", ls=":", lw=1, label="FVU = 1 (predicting the mean)")
    ax.plot([max(r["l0"], L0_FLOOR) for r in bad], [r["fvu"] for r in bad], ls="none", marker="o", ms=13,
            markerfacecolor="none", markeredgecolor="k", markeredgewidth=1.2, label="FVU > 1: worse than the mean")


def alive_curves(panels: dict[int, dict[str, list[tuple[float, Any]]]], d_sae: int | None, path: Path,
                 title: str, ylabel: str = "alive latents") -> Path:
    """Alive latents over training, one panel per K: architecture (or label) → [(tokens, alive)];
    where ``alive`` is a list (one value per seed) the line is their mean and a band spans their
    min–max. Every panel shares one y-axis from 0 to d_sae, so a dip of a few latents and a
    collapse of thousands look as different as they are."""
    plt = _plt()
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 0.6, 3.6), squeeze=False, sharey=True)
    top = d_sae or max((p[1] for curves in panels.values() for pts in curves.values() for p in pts), default=1)
    for ax, (k, curves) in zip(axes[0], sorted(panels.items())):
        for (arch, pts), (color, ls) in zip(_by_arch(curves), _line_styles([a for a, _ in _by_arch(curves)])):
            xs = [p[0] for p in pts]
            vals = [p[1] if isinstance(p[1], list) else [p[1]] for p in pts]
            ax.plot(xs, [sum(v) / len(v) for v in vals], color=color, ls=ls, label=style(arch).label)
            if any(len(v) > 1 for v in vals):
                ax.fill_between(xs, [min(v) for v in vals], [max(v) for v in vals], color=color, alpha=0.2, lw=0)
        if d_sae:
            ax.axhline(d_sae, color="k", lw=0.6, ls=":")
        ax.set_ylim(0, top * 1.05)
        ax.set_title(f"K = {k}", fontsize=9)
        ax.set_xlabel("training tokens")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=8, loc="lower left")
    _save(fig, path, title)
    return path


def grouped_bars(groups: dict[int, dict[str, dict[str, float]]], metrics: list[tuple[str, str]], path: Path,
                 title: str, subject: str | None = None) -> Path:
    """One panel per metric; per K a group of bars (variant → metrics). A variant named after an
    architecture (its name or label) gets that architecture's colour, 'full' the colour of
    ``subject`` (the architecture whose variants these are), every other variant a shade of orange."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.4 * len(metrics), 3.8), squeeze=False)
    ks = sorted(groups)
    variants: list[str] = []
    for g in groups.values():
        variants += [v for v in g if v not in variants]
    width = 0.8 / max(1, len(variants))
    shades = iter(_SEQUENTIAL[::-1])
    # an architecture keeps its colour ('full' is the subject's), other variants get shades of one hue
    colours = {v: style(subject).color if v == "full" and subject else style(v).color if known(v)
               else next(shades, "0.6") for v in variants}
    for ax, (key, label) in zip(axes[0], metrics):
        for j, v in enumerate(variants):
            xs = [i + (j - (len(variants) - 1) / 2) * width for i in range(len(ks))]
            ys = [groups[k].get(v, {}).get(key, float("nan")) for k in ks]
            ax.bar(xs, ys, width=width, label=v, color=colours[v])
        ax.set_xticks(range(len(ks)), [f"K={k}" for k in ks])
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    _save(fig, path, title)
    return path


def temperature(lines: dict[str, list[dict[str, Any]]], path: Path, title: str) -> Path:
    """Figure 7 style: MSE vs L0 (log-x), one line per β_0; plus FVU vs β_0 per K."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    cm = plt.get_cmap("viridis")
    labels = list(lines)
    for i, label in enumerate(labels):
        rows = sorted(lines[label], key=lambda r: r["l0"])
        c = cm(i / max(1, len(labels) - 1))
        axes[0].plot([r["l0"] for r in rows], [r["mse"] for r in rows], marker="o", color=c, label=label)
    _log_x(axes[0], "L0 (held-out)", "MSE (normalised inputs)")
    axes[0].legend(fontsize=8)
    by_k: dict[int, list[tuple[float, float]]] = {}
    for label in labels:
        for r in lines[label]:
            by_k.setdefault(r["k"], []).append((r["beta"], r["fvu"]))
    for i, (k, pts) in enumerate(sorted(by_k.items())):
        pts.sort()
        axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"K={k}",
                     color=plt.get_cmap("plasma")(i / max(1, len(by_k) - 1) * 0.85))
    _log_x(axes[1], "initial gate temperature β₀ (annealed to β_T)", "FVU (held-out)")
    axes[1].legend(fontsize=8)
    _save(fig, path, title)
    return path


def training_curves(curves: dict[tuple[str, str], list[tuple[float, float]]], path: Path, title: str,
                    ylabel: str) -> Path:
    """One line per run: (architecture, tag such as 'K=8') → [(tokens, value)]. Colour = the
    architecture's; line style = the tag; legend in architecture order, tags numerically."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    tags = sorted({tag for _, tag in curves}, key=_numeric)
    for (arch, tag), pts in sorted(curves.items(), key=lambda kv: (arch_order(kv[0][0]), _numeric(kv[0][1]))):
        st = style(arch)
        ls = ["-", "--", ":", "-."][tags.index(tag) % 4]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=st.color, ls=ls, label=f"{st.label} {tag}", lw=1)
    ax.set_xlabel("training tokens")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=10)
    _save(fig, path, None)
    return path


def downstream_pareto(series: dict[str, list[dict[str, Any]]], path: Path, title: str) -> Path:
    """L0 (log-x) against CE loss recovered (left) and KL (right): label (an architecture, or
    "<architecture> (<setting>)") → points with l0, tag (K) and ``ce_recovered``/``kl`` as
    (mean, ci_low, ci_high); CIs as error bars (none where a CI is None)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [n for n, _ in _by_arch(series)]
    for ax, key, ylabel in ((axes[0], "ce_recovered", "CE loss recovered (held-out)"),
                            (axes[1], "kl", "KL(clean ‖ SAE), nats/token")):
        for (name, pts), (color, ls) in zip(_by_arch(series), _line_styles(names)):
            pts = sorted(pts, key=lambda r: r["l0"])
            xs = [max(r["l0"], 1e-3) for r in pts]
            trip = [(x, *r[key]) for x, r in zip(xs, pts)]
            ax.errorbar(xs, [t[1] for t in trip], yerr=_ci_err(trip), color=color, ls=ls, capsize=3, lw=1.2,
                        marker=style(name.rsplit(" (", 1)[0]).marker, label=name)
            for x, r in zip(xs, pts):
                ax.annotate(r.get("tag", ""), (x, r[key][0]), textcoords="offset points", xytext=(4, 3),
                            fontsize=7, color=color)
        _log_x(ax, "L0 (active latents per token, held-out)", ylabel)
    axes[0].legend(fontsize=8)
    _save(fig, path, title)
    return path


def fvu_lines(series: dict[str, list[tuple[float, float, float, float]]], path: Path, title: str,
              xlabel: str = "training tokens per SAE") -> Path:
    """FVU against x (log-x; training tokens, or K): label → [(x, mean, min, max)]; the seed spread
    as error bars. Colour by architecture family (the label up to ' K='), one marker per K; legend
    by family, then K as a number (K=4 < K=16)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    ks = sorted({label.rsplit("K=", 1)[-1] for label in series}, key=lambda s: int(s) if s.isdigit() else 0)

    def order(item):
        return item[0].rsplit(" K=", 1)[0], _numeric(item[0].rsplit(" ", 1)[-1])

    for label, pts in sorted(series.items(), key=order):
        fam = label.rsplit(" K=", 1)[0]
        c = style(fam).color
        m = markers[ks.index(label.rsplit("K=", 1)[-1]) % len(markers)]
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
        ax.errorbar(xs, ys, yerr=err, marker=m, color=c, capsize=3, lw=1, label=label,
                    ls="-" if known(fam) else "--")
    if xlabel == "K":
        _log_x(ax, xlabel, "FVU (held-out)")
    else:  # token budgets: matplotlib's decades
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("FVU (held-out)")
        ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path, title)
    return path


def _ci_err(pts: list[tuple[float, float, float | None, float | None]]) -> list[list[float]]:
    """matplotlib's asymmetric yerr from (x, mean, ci_low, ci_high) points; no bar where the CI is None."""
    return [[p[1] - (p[2] if p[2] is not None else p[1]) for p in pts],
            [(p[3] if p[3] is not None else p[1]) - p[1] for p in pts]]


def gap_panels(panels: dict[str, dict[str, list[tuple[float, float, float | None, float | None]]]], path: Path,
               title: str, xlabel: str = "training tokens per SAE") -> Path:
    """Paired differences against x (log-x), one panel per metric: panel y-label → {line label →
    [(x, mean, ci_low, ci_high)]}, with error bars for the CI and a dashed zero line (no difference),
    so a CI that crosses it reads as "not resolved". Lines in legend order by their number (K=4 < K=16)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    for ax, (ylabel, lines) in zip(axes[0], panels.items()):
        ax.axhline(0.0, color="0.3", linestyle="--", linewidth=1)
        for i, (label, pts) in enumerate(sorted(lines.items(), key=lambda kv: _numeric(kv[0]))):
            err = _ci_err(pts)
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=err, marker=markers[i % len(markers)],
                        capsize=3, lw=1, label=label)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path, title)
    return path


def beta_lines(lines: dict[str, list[tuple[float, float, float | None, float | None]]], path: Path, title: str,
               references: dict[str, tuple[str, float]] | None = None) -> Path:
    """FVU against β0 (log-x): label → [(β0, mean, ci_low, ci_high)]. ``references``: label →
    (name, FVU), drawn as a dashed horizontal line in that label's colour (e.g. TopK at the same K)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in lines.items():
        err = _ci_err(pts)
        color = style(label).color
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=err, marker="o", capsize=3,
                    color=color, label=label)
        if references and label in references:
            name, value = references[label]
            ax.axhline(value, color=color, linestyle="--", linewidth=1, label=name)
    _log_x(ax, "initial gate temperature β0 (annealed to β_T)", "FVU (held-out)")
    ax.set_xticks(sorted({p[0] for pts in lines.values() for p in pts}))  # the β0 values run, not powers of 2
    ax.legend(fontsize=8)
    _save(fig, path, title)
    return path


def _numeric(tag: str) -> tuple:
    """Sort key of 'K=16' / 'λ=0.09' by the number, so 4 < 8 < 16 < 32."""
    num = tag.split("=", 1)[-1]
    try:
        return (0, float(num), tag)
    except ValueError:
        return (1, 0.0, tag)
