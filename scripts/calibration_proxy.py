"""Claim (c), calibration, on a multi-seed sweep through the OFFLINE PROXY (not the paper's judge).

For every TopK / Probabilistic TopK run of a sweep (default variant, chosen K), runs probsae's
autointerp pipeline with the non-LLM ``top-tokens`` explainer and the ``embedding`` scorer
(ROC-AUC of all-MiniLM-L6-v2 cosine similarity between the explanation and activating vs
non-activating windows) on the corpus's HELD-OUT documents, and reports the Pearson r between the
activation-percentile bucket and the score:

* per run: r over its scored (latent, bucket) pairs with a Fisher-z 95 % CI;
* per (architecture, K): the mean r over seeds with a Student-t 95 % CI;
* per K: the paired difference r(ProbTopK) − r(TopK) over seeds with a Student-t 95 % CI.

    python scripts/calibration_proxy.py runs/offline-en-cpu-quick --out docs/results/offline-en-cpu-quick/calibration \\
        --k 8 16 --n-latents 100 --n-windows 1024

Writes calibration.md, calibration.json and figure5.png (one line per run of the largest budget) into OUT; latent caches
go under --work (default runs/calibration-proxy/), each run's explanations and scores under
RUN/interp/<settings>/ (as `probsae autointerp` writes them).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", nargs="?", help="a sweep directory (runs/<name>) or one budget of it (runs/<name>/tokens=B)")
    p.add_argument("--out", required=True)
    p.add_argument("--k", type=int, nargs="+", default=[8, 16], help="which K (the paper's Table 2: 8 and 16)")
    p.add_argument("--n-latents", type=int, default=100, help="random alive latents per run")
    p.add_argument("--n-windows", type=int, default=1024, help="32-token held-out windows per latent cache")
    p.add_argument("--variants", nargs="+", default=[""], metavar="VARIANT",
                   help="which variants of the non-TopK runs to score besides TopK's default, e.g. "
                        "'' score=logit ('' is the default variant; each is compared with TopK)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="runs/calibration-proxy", help="latent caches (large: kept out of the results "
                   "folder); each run's explanations and scores go to RUN/interp/<settings>/")
    p.add_argument("--replot", action="store_true", help="only redraw OUT/figure5.png from OUT/calibration.json")
    args = p.parse_args(argv)
    if args.replot:
        return replot(Path(args.out))
    if args.sweep_dir is None:
        p.error("sweep_dir is required (unless --replot)")

    from probsae.data.corpus import load_corpus, split_documents
    from probsae.data.models import load_model
    from probsae.experiments.when import load_runs
    from probsae.interp import AutoInterpConfig, SentenceEmbedder, resolve_run, run_autointerp, table_markdown
    from probsae.interp.calibration import plot_calibration
    from probsae.io import atomic_write_json, atomic_write_text
    from probsae.stats import fisher_ci, mean_ci

    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    infos, rows = load_runs(args.sweep_dir)
    def wanted(r: dict) -> bool:
        if r["architecture"] == "topk":
            return r["variant"] == ""
        return r["architecture"] == "prob_topk" and r["variant"] in args.variants

    runs = sorted((r for r in rows if wanted(r) and r["k"] in args.k),
                  key=lambda r: (r["budget"], r["k"], r["architecture"], r["variant"], r["seed"]))
    if not runs:
        print(f"no TopK/ProbTopK runs with K in {args.k} (ProbTopK variants {args.variants}) under "
              f"{args.sweep_dir}", file=sys.stderr)
        return 2
    data = infos[0].get("data", {})
    handle = load_model(data.get("model", "minilm"))
    corpus = load_corpus(data["corpus"])
    held_out = list(split_documents(corpus, "holdout", holdout_every=infos[0]["config"]["data"].get("holdout_every", 20)))
    embedder = SentenceEmbedder()
    results = []
    for r in runs:
        label = f"{name(r['architecture'], r['variant'])} K={r['k']} seed={r['seed']}"
        info = resolve_run(r["dir"], label=label)
        cfg = AutoInterpConfig(scorer="embedding", explainer="top-tokens", n_latents=args.n_latents,
                               n_windows=args.n_windows, seed=args.seed,
                               cache_dir=str(Path(args.work) / "latent_cache" / Path(r["dir"]).name / f"b{r['budget']}"))
        row = run_autointerp(info, cfg, handle=handle, docs=held_out, embedder=embedder)
        lo, hi = fisher_ci(row["pearson_r"], row["n_scored"])
        results.append({**row, "architecture": r["architecture"], "variant": r["variant"], "k": r["k"],
                        "seed": r["seed"], "budget": r["budget"], "r_ci": [lo, hi]})
        print(f"[calibration] {label}: r = {row['pearson_r']} over {row['n_scored']} pairs "
              f"({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)

    cells: dict[tuple, dict[int, dict]] = {}
    for x in results:
        cells.setdefault((x["budget"], x["architecture"], x.get("variant", ""), x["k"]), {})[x["seed"]] = x
    contenders = sorted({(x["architecture"], x.get("variant", "")) for x in results if x["architecture"] != "topk"},
                        key=lambda av: (av[1] != "", av[1]))
    L = ["# Calibration proxy: activation bucket vs. interpretability score", "",
         "**A proxy, not the paper's claim (c) measurement.** Explanations: the non-LLM `top-tokens` baseline "
         "(each bucket's most frequent firing tokens); score: the `embedding` scorer (ROC-AUC of all-MiniLM-L6-v2 "
         "cosine similarity between the explanation and activating vs non-activating windows). The paper uses an "
         "LLM explainer and the LLM detection scorer; these numbers are not comparable with its Table 2.", "",
         f"Made by: `python scripts/calibration_proxy.py {' '.join(shlex.quote(a) for a in (argv or sys.argv[1:]))}` "
         f"({(time.time() - t0) / 60:.1f} min on the shared 2-core machine). Windows: {args.n_windows} × 32 tokens "
         f"of held-out documents per run; {args.n_latents} random alive latents per run; 5 percentile buckets.", "",
         "## Pearson r (bucket index vs score) per (architecture, K)", ""]
    for arch, variant in contenders:
        P_name = name(arch, variant)
        L += ([f"### {P_name} against TopK", ""] if len(contenders) > 1 else []) + [
            f"| budget | K | TopK r (mean ± 95 % CI over seeds) | {P_name} r | Δ r = {P_name} − TopK [95 % CI] "
            "| pairs | verdict |", "|---|---|---|---|---|---|---|"]
        for b, k in sorted({(x["budget"], x["k"]) for x in results}):
            T, P = cells.get((b, "topk", "", k), {}), cells.get((b, arch, variant, k), {})
            if not T or not P:
                continue

            def ms(c):
                m, lo, hi = mean_ci([x["pearson_r"] for x in c.values()])
                return "–" if m is None else (f"{m:.3f}" if lo is None else f"{m:.3f} ± {hi - m:.3f}")

            seeds = sorted(set(T) & set(P))
            d = [P[s]["pearson_r"] - T[s]["pearson_r"] for s in seeds
                 if P[s]["pearson_r"] is not None and T[s]["pearson_r"] is not None]
            m, lo, hi = mean_ci(d)
            if m is None:
                dtxt, v = "–", "no pairs"
            elif lo is None:
                dtxt, v = f"{m:+.3f}", "1 pair: no CI"
            else:
                dtxt = f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                v = (f"**{P_name} higher**" if lo > 0 else "**TopK higher**" if hi < 0
                     else "not resolved (CI spans 0)")
            L.append(f"| {b:,} | {k} | {ms(T)} | {ms(P)} | {dtxt} | {len(d)} | {v} |")
        L.append("")
    L += ["## Every run (r with its Fisher-z 95 % CI over the run's scored (latent, bucket) pairs)", "",
          "| run | r | 95 % CI | pairs | mean score |", "|---|---|---|---|---|"]
    for x in results:
        ci = x["r_ci"]
        L.append(f"| {x['label']} | {x['pearson_r']:.3f} | "
                 + (f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else "–")
                 + f" | {x['n_scored']} | {x['mean_score']:.3f} |")
    L += ["", table_markdown(results, "Mean score per activation-percentile bucket (mean ± 95 % CI over latents)")]
    atomic_write_text(out / "calibration.md", "\n".join(L) + "\n")
    atomic_write_json(out / "calibration.json", {"runs": results, "args": vars(args)})
    plot_calibration(figure_rows(results), out / "figure5.png", figure_title(results))
    print(f"wrote {out / 'calibration.md'}")
    return 0


def name(architecture: str, variant: str) -> str:
    """'TopK', 'ProbTopK' or e.g. 'ProbTopK score=logit'."""
    base = "ProbTopK" if architecture == "prob_topk" else "TopK"
    return f"{base} {variant}" if variant else base


FIGURE_MAX_LINES = 12


def figure_rows(results: list[dict]) -> list[dict]:
    """The runs of the largest budget (the figure's lines carry no budget), and of those only the
    lowest seed of each (architecture, variant, K) when every seed would draw more than
    FIGURE_MAX_LINES lines (a legible figure; the table keeps every budget and seed)."""
    if not results:
        return results
    last = max(x.get("budget") or 0 for x in results)
    results = [x for x in results if (x.get("budget") or 0) == last]
    if len(results) <= FIGURE_MAX_LINES:
        return results
    first = min(x["seed"] for x in results)
    return [x for x in results if x["seed"] == first]


def figure_title(results: list[dict]) -> str:
    """The figure's title, naming the budget when the runs had more than one."""
    budgets = {x.get("budget") for x in results}
    title = "Offline proxy: embedding score by activation percentile"
    return title + (f", {max(b or 0 for b in budgets):,} tokens" if len(budgets) > 1 else "")


def replot(out: Path) -> int:
    """Redraw figure5.png from a finished run's calibration.json (e.g. after a change of plot style)."""
    from probsae.interp.calibration import plot_calibration

    results = json.loads((out / "calibration.json").read_text())["runs"]
    plot_calibration(figure_rows(results), out / "figure5.png", figure_title(results))
    print(f"wrote {out / 'figure5.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
