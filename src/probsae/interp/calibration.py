"""Calibration of activation magnitude vs. interpretability: paper Table 2 and Figure 5.

For each run: mean score per percentile bucket with a 95 % confidence interval (Student t over
latents), and the Pearson correlation between bucket index and score over all scored
(latent, bucket) pairs (the paper's "Correlation" column).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_savefig, atomic_write_json, atomic_write_text
from ..stats import mean_ci, pearson


def summarize_run(label: str, scores: Sequence[dict], n_buckets: int = 5,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Table-2 row of one run from its per-(latent, bucket) score dicts (``BucketScore.to_json``)."""
    from .sampling import bucket_edges

    buckets = []
    xs, ys = [], []
    for b, (lo, hi) in enumerate(bucket_edges(n_buckets)):
        vals = [s["score"] for s in scores if s["bucket"] == b and s.get("score") is not None]
        m, lo_ci, hi_ci = mean_ci(vals)
        buckets.append({"bucket": b, "label": f"{lo:g}-{hi:g}%", "center_pct": (lo + hi) / 2,
                        "n": len(vals), "mean": m, "ci_low": lo_ci, "ci_high": hi_ci})
        xs += [b] * len(vals)
        ys += vals
    failed = sum(1 for s in scores if s.get("score") is None)
    return {"label": label, "scorer": scores[0]["scorer"] if scores else None,
            "explanation_source": scores[0]["explanation_source"] if scores else None,
            "n_latents": len({s["latent"] for s in scores}), "n_scored": len(ys),
            "n_unscored": failed, "buckets": buckets, "pearson_r": pearson(xs, ys),
            "mean_score": float(np.mean(ys)) if ys else None, **(extra or {})}


def _f(x: float | None, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def table_markdown(rows: Sequence[dict], title: str = "Interpretability score by activation percentile") -> str:
    """Markdown Table 2: one row per run, mean ± 95 % CI half-width per bucket, Pearson r."""
    if not rows:
        return f"### {title}\n\n(no runs)\n"
    labels = [b["label"] for b in rows[0]["buckets"]]
    head = "| Run | " + " | ".join(labels) + " | Correlation (r) | Latents |"
    sep = "|" + "---|" * (len(labels) + 3)
    lines = [f"### {title}", "", head, sep]
    for r in rows:
        cells = []
        for b in r["buckets"]:
            if b["mean"] is None:
                cells.append("–")
            elif b["ci_high"] is None:
                cells.append(_f(b["mean"]))
            else:
                cells.append(f"{_f(b['mean'])} ± {_f(b['ci_high'] - b['mean'])}")
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {_f(r['pearson_r'])} | {r['n_latents']} |")
    scorers = sorted({str(r.get("scorer")) for r in rows})
    sources = sorted({str(r.get("explanation_source")) for r in rows})
    lines += ["", f"Scorer: {', '.join(scorers)}; explanations: {', '.join(sources)}"
              + (" (top-tokens = non-LLM baseline, not the paper's LLM explainer)" if "top-tokens" in sources else "")
              + (". **Offline proxy**, not the paper's LLM detection score; chance = 0.5"
                 if any(is_proxy(r) for r in rows) else "; chance = 0.5")
              + ". Cells: mean ± 95 % CI half-width over latents; r: Pearson correlation between "
              "bucket index and score over all scored (latent, bucket) pairs."]
    dirs = [(r["label"], r.get("results_dir"), r.get("settings_key")) for r in rows if r.get("results_dir")]
    if dirs:
        lines += [""] + [f"- {lab}: `{d}/summary.json` (settings {k})" for lab, d, k in dirs]
    return "\n".join(lines) + "\n"


def is_proxy(row: dict) -> bool:
    """A row scored without the paper's LLM pipeline (embedding scorer or top-tokens explanations)."""
    return row.get("scorer") == "embedding" or row.get("explanation_source") == "top-tokens"


def plot_calibration(rows: Sequence[dict], path: str | Path, title: str | None = None) -> Path:
    """Figure 5: mean score vs. activation percentile with 95 % CI error bars, one line per run, in
    the architecture colours every figure uses; a dotted chance line at 0.5 (balanced accuracy and
    ROC-AUC both give 0.5 by chance). Rows from the offline scorer/explainer are labelled
    "offline proxy" in the title and axis, since they are not the paper's LLM detection score."""
    from ..saes.style import arch_order, colour, style
    from ..extras import pyplot

    plt = pyplot()
    proxy = any(is_proxy(r) for r in rows)
    fig, ax = plt.subplots(figsize=(5.8, 4.2), dpi=150)
    ax.axhline(0.5, color="0.4", lw=0.9, ls=":", label="chance (0.5)")
    seen: dict[str, int] = {}
    for r in sorted(rows, key=lambda r: arch_order(r.get("architecture") or "")):
        arch = r.get("architecture")
        n = seen[arch] = seen.get(arch, -1) + 1
        bs = [b for b in r["buckets"] if b["mean"] is not None]
        x = [b["center_pct"] for b in bs]
        y = [b["mean"] for b in bs]
        err = [[b["mean"] - (b["ci_low"] if b["ci_low"] is not None else b["mean"]) for b in bs],
               [(b["ci_high"] if b["ci_high"] is not None else b["mean"]) - b["mean"] for b in bs]]
        rr = r["pearson_r"]
        ax.errorbar(x, y, yerr=err, capsize=3, color=colour(arch), marker=style(arch).marker,
                    ls=["-", "--", "-.", ":"][n % 4],
                    label=f"{r['label']} (r = {rr:.3f})" if rr is not None else r["label"])
    ax.set_xlabel("Activation percentile")
    scorer = rows[0].get("scorer") if rows else ""
    what = {"detection": "detection, balanced accuracy", "embedding": "embedding ROC-AUC"}.get(scorer, scorer)
    ax.set_ylabel(("Offline proxy score" if proxy else "Interpretability score") + (f" ({what})" if what else ""))
    ax.set_xticks([0, 20, 40, 60, 80, 100])
    ax.set_xlim(0, 100)
    ax.grid(alpha=0.3)
    head = title or "Interpretability by activation percentile"
    if proxy:
        head += "\noffline proxy: not the paper's LLM explanations + detection"
    ax.set_title(head, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_savefig(fig, path)
    plt.close(fig)
    return path


def write_table(rows: Sequence[dict], out_dir: str | Path, stem: str = "table2",
                settings_key: str | None = None) -> dict[str, Path]:
    """``table2.md`` and ``table2.json`` from ``rows`` (each run's summary.json row, unchanged)."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"{stem}.md"
    js = out / f"{stem}.json"
    atomic_write_text(md, table_markdown(rows))
    atomic_write_json(js, {"settings_key": settings_key, "runs": list(rows)})
    return {"markdown": md, "json": js}
