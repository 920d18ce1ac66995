"""The multi-seed, multi-budget report: *when* does Probabilistic TopK beat TopK?

``probsae report DIR`` writes this report when DIR holds a sweep whose members vary ``seed``, or
one sweep per token budget (``DIR/tokens=B/``, made by ``[sweep] budgets``). Every member of a
sweep reads the very same batches, so two members that differ only in architecture (or in one
hyperparameter) but share a seed are a *pair*: the verdicts use the paired differences over seeds,
with a Student-t 95 % confidence interval (n − 1 degrees of freedom; with 3 seeds t = 4.30).

Writes into the output directory::

    report.md        setting, commands, verdict per (K, budget) with CIs, gate fixes, init, β0
    runs.csv         every run's held-out metrics with its seed and budget
    fvu_budget.png   held-out FVU against training tokens, one line per (architecture, K), seed spread
                     (only with more than one budget)
    gap_budget.png   the paired differences ProbTopK − TopK (relative FVU, alive latents) per K against
                     training tokens, with 95 % CIs (only with more than one budget)
    fvu_k.png        held-out FVU against K at the largest budget, one line per architecture variant
    alive.png        alive latents during training (mean over seeds, min–max band) per K
    temperature.png  FVU against β0 per K (mean ± CI over seeds), TopK dashed, when the β0 study ran
    downstream_pareto.png  causal LMs: L0 against CE loss recovered and KL (mean, 95 % CI over seeds)
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..stats import mean_ci
from ..io import atomic_write_text, read_json
from ..runs.results import read_runs
from ..saes import get_class
from ..saes.style import arch_order, label as family
from .report import BASELINE, REPORT_FILE, SUBJECT, hparam_defaults, read_log, report_dir, used_dead_window
from .sweep import SWEEP_FILE

#: Hyperparameters that identify a pair member rather than a variant.
PAIR_KEYS = ("k", "seed")


def sweep_dirs(root: str | Path) -> list[Path]:
    """The sweep directories of ``root``: itself, or its ``tokens=B`` budget sub-directories."""
    root = Path(root)
    subs = sorted((p for p in root.glob("tokens=*") if (p / SWEEP_FILE).is_file()),
                  key=lambda p: int(p.name.split("=", 1)[1]))
    if subs:
        return subs
    if not (root / "runs").is_dir():
        raise ConfigError(f"{root} is not a sweep directory (no runs/ and no tokens=B/ sub-directories)")
    return [root]


def is_when_sweep(root: str | Path) -> bool:
    """True when ``root`` has budget sub-directories or members with a ``seed`` hyperparameter."""
    root = Path(root)
    if any((p / SWEEP_FILE).is_file() for p in root.glob("tokens=*")):
        return True
    return any("seed" in m.get("hparams", {}) for _, m in read_runs(root / "runs"))


def variant_label(arch: str, hparams: dict[str, Any]) -> str:
    """'' for the architecture's defaults, else the non-default hyperparameters (k, seed excluded)."""
    defaults = hparam_defaults(arch)
    diff = {k: v for k, v in hparams.items() if k not in PAIR_KEYS and defaults.get(k, object()) != v}
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(diff.items()))


def load_runs(root: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(sweep infos, one row per finished member of every budget)."""
    infos, rows = [], []
    for d in sweep_dirs(root):
        info = read_json(d / SWEEP_FILE, dict, ConfigError) if (d / SWEEP_FILE).is_file() else {}
        infos.append({**info, "_dir": str(d)})
        base_seed = info.get("config", {}).get("sae", {}).get("seed", 0)
        for run_dir, r in read_runs(d / "runs"):
            e, hp = r["heldout"], r["hparams"]
            rows.append({"name": r["name"], "dir": str(run_dir), "architecture": r["architecture"],
                         "variant": variant_label(r["architecture"], hp), "k": hp.get("k"),
                         "seed": hp.get("seed", base_seed), "budget": r.get("tokens_seen") or r["steps"] * r["batch_size"],
                         "fvu": e["fvu"], "mse": e["mse"], "l0": e["l0"], "alive": e["alive"], "dead": e["dead"],
                         "d_sae": r.get("d_sae"), "eval_tokens": e.get("n_tokens"),
                         "train_alive": r.get("train_final", {}).get("alive"),
                         **_downstream_fields(r.get("downstream")),
                         # (top-level keys: metrics.json as sweeps wrote it before the one results schema)
                         "pass_train_seconds": r.get("seconds", {}).get("train", r.get("pass_train_seconds")),
                         "pass_members": r.get("extra", {}).get("pass_members", r.get("pass_members"))})
    if not rows:
        raise ConfigError(f"{root} has no finished runs (no runs/*/metrics.json): run 'probsae sweep' first")
    return infos, rows


def _downstream_fields(ds: dict[str, Any] | None) -> dict[str, Any]:
    """The CE/KL columns of a run's row (None when it has no downstream measurement)."""
    ds = ds or {}
    return {"ce_recovered": ds.get("ce_recovered"), "kl": ds.get("kl"), "ce_delta": ds.get("ce_delta"),
            "ce_clean": ds.get("ce_clean"), "ce_tokens": ds.get("n_tokens"),
            "ce_recovered_ci": (ds.get("ci") or {}).get("ce_recovered"), "kl_ci": (ds.get("ci") or {}).get("kl")}


def cells(rows: list[dict]) -> dict[tuple, dict[int, dict]]:
    """(budget, architecture, variant, K) → {seed: row}."""
    out: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        out.setdefault((r["budget"], r["architecture"], r["variant"], r["k"]), {})[r["seed"]] = r
    return out


def paired(a: dict[int, dict], b: dict[int, dict], key: str) -> dict[str, Any]:
    """Paired difference a − b of ``key`` over the seeds both have: mean, 95 % t-CI, relative mean."""
    seeds = sorted(s for s in set(a) & set(b) if a[s].get(key) is not None and b[s].get(key) is not None)
    d = [a[s][key] - b[s][key] for s in seeds]
    rel = [(a[s][key] - b[s][key]) / b[s][key] for s in seeds if b[s][key]]
    m, lo, hi = mean_ci(d)
    rm, rlo, rhi = mean_ci(rel)
    return {"n": len(seeds), "mean": m, "lo": lo, "hi": hi, "rel": rm, "rel_lo": rlo, "rel_hi": rhi}


def summary(c: dict[int, dict], key: str) -> dict[str, Any]:
    vals = [r[key] for r in c.values() if r.get(key) is not None]
    if not vals:
        return {"n": 0, "mean": None, "lo": None, "hi": None, "min": None, "max": None}
    m, lo, hi = mean_ci(vals)
    return {"n": len(vals), "mean": m, "lo": lo, "hi": hi, "min": min(vals), "max": max(vals)}


def verdict(p: dict[str, Any], lower_is_better: bool, a: str, b: str) -> str:
    """Plain-words verdict of a paired difference a − b: a verdict word only where the 95 % CI
    excludes 0; with one seed (no CI) none."""
    if p["n"] == 0 or p["mean"] is None:
        return "no pairs"
    if p["lo"] is None:
        return "no CI (single seed): no verdict"
    if p["hi"] < 0:
        return f"**{a} better**" if lower_is_better else f"**{a} lower**"
    if p["lo"] > 0:
        return f"**{b} better**" if lower_is_better else f"**{a} higher**"
    return "not resolved (CI spans 0)"


def _fmt(x: Any, nd: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _ms(s: dict[str, Any], nd: int = 4) -> str:
    """mean ± half CI (n) of a summary."""
    if s["mean"] is None:
        return "–"
    if s["lo"] is None:
        return f"{_fmt(s['mean'], nd)} (n=1)"
    return f"{_fmt(s['mean'], nd)} ± {_fmt(s['hi'] - s['mean'], nd)}"


def _diff(p: dict[str, Any], nd: int = 4, pct: bool = True) -> str:
    if p["mean"] is None:
        return "–"
    ci = f" [{p['lo']:+.{nd}f}, {p['hi']:+.{nd}f}]" if p["lo"] is not None else ""
    rel = f" ({100 * p['rel']:+.1f} %)" if pct and p["rel"] is not None else ""
    return f"{p['mean']:+.{nd}f}{ci}{rel}"


def _budget(b: int) -> str:
    return f"{b / 1e6:.3g}M" if b >= 1e6 else f"{b / 1e3:.3g}k"


def _label(arch: str, var: str) -> str:
    return family(arch) + (f" ({var})" if var else "")


def _comparison_table(C, budgets, ks, a_key, b_key, a_name, b_name, key, lower_is_better) -> list[str]:
    L = [f"| budget | K | {a_name} | {b_name} | Δ = {a_name} − {b_name} [95 % CI] (relative) | pairs | verdict |",
         "|---|---|---|---|---|---|---|"]
    for b in budgets:
        for k in ks:
            A, B = C.get((b, *a_key, k)), C.get((b, *b_key, k))
            if not A or not B:
                continue
            p = paired(A, B, key)
            nd = 0 if key == "alive" else 4
            L += [f"| {_budget(b)} | {k} | {_ms(summary(A, key), nd)} | {_ms(summary(B, key), nd)} | "
                  f"{_diff(p, nd)} | {p['n']} | {verdict(p, lower_is_better, a_name, b_name)} |"]
    return L + [""]


def _gap_figure(C, budgets, ks, path: Path, prob_name: str, top_name: str) -> bool:
    """gap_budget.png: relative Δ FVU (%) and Δ alive latents, ProbTopK − TopK paired by seed, per K
    against budget with 95 % CIs. False (and no file) when no K has both architectures."""
    from . import plots

    fvu: dict[str, list] = {}
    alive: dict[str, list] = {}
    for k in ks:
        for b in budgets:
            A, B = C.get((b, SUBJECT, "", k)), C.get((b, BASELINE, "", k))
            if not A or not B:
                continue
            f, a = paired(A, B, "fvu"), paired(A, B, "alive")
            if f["rel"] is None:
                continue
            pct = [None if x is None else 100 * x for x in (f["rel"], f["rel_lo"], f["rel_hi"])]
            fvu.setdefault(f"K={k}", []).append((b, *pct))
            alive.setdefault(f"K={k}", []).append((b, a["mean"], a["lo"], a["hi"]))
    if not fvu:
        path.unlink(missing_ok=True)
        return False
    plots.gap_panels({f"held-out FVU, {prob_name} vs {top_name} (%)": fvu,
                      f"alive latents, {prob_name} − {top_name}": alive}, path,
                     f"{prob_name} − {top_name}, paired by seed (mean, 95 % CI); above 0: {prob_name} higher")
    return True


def _baseline_variants_section(C, budgets, ks, prob_name: str) -> list[str]:
    """FVU and alive latents of the paper's model against each variant of the baseline that is not an
    initialisation study (e.g. TopK with AuxK, ``aux_k=…``): the baseline at its best."""
    variants = sorted({var for (_, arch, var, _) in C if arch == BASELINE and var and not var.startswith("init=")})
    L: list[str] = []
    for var in variants:
        name = _label(BASELINE, var)
        L += [f"## {prob_name} against {name}", "",
              f"The baseline with `{var}` (for `aux_k`: Gao et al.'s auxiliary loss, which revives dead latents by "
              "reconstructing the residual from the top dead ones). Held-out FVU:", ""]
        L += _comparison_table(C, budgets, ks, (SUBJECT, ""), (BASELINE, var), prob_name, name, "fvu", True)
        L += ["Alive latents:", ""]
        L += _comparison_table(C, budgets, ks, (SUBJECT, ""), (BASELINE, var), prob_name, name, "alive", False)
        L += [f"{name} against {family(BASELINE)} (what `{var}` changes), held-out FVU:", ""]
        L += _comparison_table(C, budgets, ks, (BASELINE, var), (BASELINE, ""), name, family(BASELINE), "fvu", True)
    return L


def _downstream_section(C, rows, budgets, ks, out: Path, prob_name: str, top_name: str) -> list[str]:
    """(c) CE loss recovered and KL with each SAE spliced into the causal LM: per-run measurements
    (their own bootstrap CIs over held-out windows), paired verdicts over seeds, and the Pareto
    figure of L0 against CE loss recovered. Empty when no run has a downstream measurement."""
    from . import plots

    have = [r for r in rows if r.get("ce_recovered") is not None]
    if not have:
        (out / "downstream_pareto.png").unlink(missing_ok=True)
        return []
    toks = sorted({int(r["ce_tokens"]) for r in have})
    widths = [r["ce_recovered_ci"][1] - r["ce_recovered_ci"][0] for r in have if r.get("ce_recovered_ci")]
    clean = summary({i: r for i, r in enumerate(have)}, "ce_clean")
    L = ["## (c) The language model with the SAE spliced in: CE loss recovered and KL", "",
         f"Every SAE replaces the activation it reads at every non-special position of held-out windows; "
         f"CE loss recovered = (CE_zero − CE_SAE) / (CE_zero − CE_clean) (1 = the model's own loss, 0 = the "
         f"activation zeroed), KL = KL(p_clean ‖ p_SAE) per token. Each run is measured on "
         f"{', '.join(f'{t:,}' for t in toks)} next-token positions (clean CE {_fmt(clean['mean'])} nats); "
         + (f"one run's own 95 % bootstrap CI of CE recovered (over windows) is {min(widths):.4f}–{max(widths):.4f} "
            "wide (the token-sampling uncertainty of one value). Every run is scored on the same windows, so the "
            "verdicts' paired differences over seeds (Student t) measure the seed-to-seed variation on these tokens." if widths else ""), ""]
    for key, better, title in (("ce_recovered", False, "CE loss recovered (higher is better)"),
                               ("kl", True, "KL(clean ‖ SAE), nats per token (lower is better)")):
        L += [f"### {title}", ""]
        L += _comparison_table(C, budgets, ks, (SUBJECT, ""), (BASELINE, ""), prob_name, top_name, key, better)
        for var in sorted({v for (_, a, v, _) in C if a == BASELINE and v and not v.startswith("init=")}):
            L += _comparison_table(C, budgets, ks, (SUBJECT, ""), (BASELINE, var), prob_name,
                                   _label(BASELINE, var), key, better)
    b = budgets[-1]
    series: dict[str, list] = {}
    for (bb, arch, var, k), c in C.items():
        if bb != b or var.startswith(("init=", "beta_start=")):
            continue
        ce, kl, l0 = summary(c, "ce_recovered"), summary(c, "kl"), summary(c, "l0")
        if ce["mean"] is None:
            continue
        series.setdefault(_label(arch, var), []).append(
            {"tag": f"K={k}", "l0": l0["mean"], "ce_recovered": (ce["mean"], ce["lo"], ce["hi"]),
             "kl": (kl["mean"], kl["lo"], kl["hi"])})
    plots.downstream_pareto(series, out / "downstream_pareto.png",
                            f"L0 against CE loss recovered and KL at {_budget(b)} tokens (mean, 95 % CI over seeds)")
    L += ["![L0 against CE loss recovered and KL](downstream_pareto.png)", ""]
    return L


def make_when_report(root: str | Path, out_dir: str | Path | None = None, command: str | None = None,
                     title: str | None = None, notes: str | Path | None = None, force: bool = False) -> Path:
    """Write the multi-seed, multi-budget report of ``root`` (a sweep directory or a folder of
    ``tokens=B`` sweeps) into ``out_dir`` (default ROOT/report); returns report.md. A non-empty
    ``out_dir`` that holds no report is refused unless ``force`` (``report.report_dir``)."""
    from . import plots

    root = Path(root)
    out = report_dir(Path(out_dir) if out_dir else root / "report", force)
    infos, rows = load_runs(root)
    C = cells(rows)
    budgets = sorted({r["budget"] for r in rows})
    ks = sorted({r["k"] for r in rows if r["k"] is not None})
    seeds = sorted({r["seed"] for r in rows})
    first = infos[0]
    data = first.get("data", {})
    tc = first.get("train_config", {})
    d_sae = next((r["d_sae"] for r in rows if r.get("d_sae")), None)
    TOP, PROB = (BASELINE, ""), (SUBJECT, "")
    top_name, prob_name = family(BASELINE), family(SUBJECT)
    name = first.get("name", root.name)
    title = title or f"When does {prob_name} help? — {name}"

    L = [f"# {title}", "", f"Made by: `{command or f'probsae report {root}'}`", ""]
    for info in infos:
        invs = info.get("invocations", [])
        L += [f"Sweep `{info['_dir']}` started by `{info.get('command', '?')}`; completed invocations:"]
        L += [f"- `{i['command']}` — finished {i.get('finished_at', '?')}, {i.get('wall_seconds', 0) / 60:.1f} min, "
              f"{i.get('to_run', '?')} members trained" for i in invs] or ["- (none finished yet)"]
        L += [""]
    L += [f"Generated {time.strftime('%Y-%m-%d %H:%M')}.", ""]
    if first.get("description"):
        L += [first["description"], ""]
    L += ["## Setting", "",
          f"- activations: {data.get('model', '?')} {data.get('hook', '?')} on `{data.get('corpus', '?')}`; "
          f"d_in = {data.get('d_in', '?')}, d_sae = {d_sae}",
          f"- training budgets (tokens per SAE): {', '.join(f'{b:,}' for b in budgets)}; training cache "
          f"{data.get('train_cache_tokens', 0):,} tokens; held-out evaluation on {rows[0]['eval_tokens'] or 0:,} tokens "
          "of documents never trained on",
          f"- optimiser: Adam lr {tc.get('lr')}, batch {tc.get('batch_size')}, warm-up {tc.get('warmup_steps')} of "
          f"{tc.get('steps')} steps (at the first budget), cosine decay, grad clip {tc.get('grad_clip')}",
          f"- seeds: {', '.join(map(str, seeds))} (a seed sets the initial weights and the gate noise; all members "
          "read the same batches, so members with the same seed are compared as pairs)",
          f"- {len(rows)} runs; metrics on normalised inputs (mean-centred, unit-norm tokens), deterministic "
          "inference path. Cells: mean ± 95 % CI half-width over seeds (Student t, n − 1 df). Δ: mean paired "
          "difference over seeds with its 95 % CI; 'relative' is the mean of Δ / baseline.", ""]

    if notes:
        p = Path(notes)
        if not p.is_file():
            raise ConfigError(f"--notes {p}: no such file")
        L += ["## Notes", "", p.read_text().strip(), ""]
    L += [f"## (a) Reconstruction: {prob_name} (the paper's model) vs {top_name}", "",
          "Held-out FVU (lower is better), each architecture at its default initialisation "
          f"({top_name} '{get_class(BASELINE).default_init}', {prob_name} '{get_class(SUBJECT).default_init}'; "
          "see *Initialisation*).", ""]
    L += _comparison_table(C, budgets, ks, PROB, TOP, prob_name, top_name, "fvu", True)
    series: dict[str, list] = {}
    by_k: dict[str, list] = {}
    for (b, arch, var, k), c in C.items():
        if arch in (BASELINE, SUBJECT) and (var == "" or var.startswith("score=")):
            s = summary(c, "fvu")
            series.setdefault(f"{_label(arch, var)} K={k}", []).append((b, s["mean"], s["min"], s["max"]))
            if b == budgets[-1]:
                by_k.setdefault(_label(arch, var), []).append((k, s["mean"], s["min"], s["max"]))
    if series:
        if len(budgets) > 1:  # one budget would draw one column of dots: the K figure says it all
            plots.fvu_lines({k: sorted(v) for k, v in series.items()}, out / "fvu_budget.png",
                            f"Held-out FVU against training tokens (seed min–max) — d_sae {d_sae}")
            L += ["![FVU against budget](fvu_budget.png)", ""]
            if _gap_figure(C, budgets, ks, out / "gap_budget.png", prob_name, top_name):
                L += [f"The verdicts above as a picture: the paired difference {prob_name} − {top_name} per K "
                      "against budget, with its 95 % CI (a bar crossing the dashed zero line is not resolved).", "",
                      "![paired differences against budget](gap_budget.png)", ""]
        else:
            for stale in ("fvu_budget.png", "gap_budget.png"):  # left by an earlier report of more budgets
                (out / stale).unlink(missing_ok=True)
            L += [f"One training budget ({_budget(budgets[0])} tokens): FVU against budget needs a sweep with "
                  "`[sweep] budgets = [...]`.", ""]
        plots.fvu_lines({k: sorted(v) for k, v in by_k.items()}, out / "fvu_k.png",
                        f"Held-out FVU against K at {_budget(budgets[-1])} tokens (seed min–max)", xlabel="K")
        L += ["![FVU against K](fvu_k.png)", ""]

    L += ["## (b) Alive latents", "", f"Latents that fire at least once on the held-out tokens (of {d_sae}; higher "
          "means more of the dictionary is used).", ""]
    L += _comparison_table(C, budgets, ks, PROB, TOP, prob_name, top_name, "alive", False)
    panels: dict[int, dict[str, list]] = {}
    b_last = budgets[-1]
    for (b, arch, var, k), c in C.items():
        if b != b_last or arch not in (BASELINE, SUBJECT) or not (var == "" or var.startswith("score=")):
            continue
        curves = [[(rec["tokens"], rec["alive"]) for rec in read_log(Path(r["dir"])) if rec.get("alive") is not None]
                  for r in c.values()]
        curves = [cv for cv in curves if cv]
        if curves:
            n = min(len(cv) for cv in curves)
            pts = [(curves[0][i][0], [cv[i][1] for cv in curves]) for i in range(n)]
            panels.setdefault(k, {})[_label(arch, var)] = pts
    if panels:
        window = used_dead_window([r["dir"] for c in C.values() for r in c.values()], first)  # what training used
        plots.alive_curves({k: dict(sorted(v.items())) for k, v in panels.items()}, d_sae, out / "alive.png",
                           f"Alive latents during training, budget {_budget(b_last)} (mean, min–max over seeds)")
        if window:
            L += [f"During training a latent is alive if it fired in the last {window} tokens (`dead_window_tokens`).", ""]
        L += ["![alive latents during training](alive.png)", ""]

    L += _baseline_variants_section(C, budgets, ks, prob_name)
    L += _downstream_section(C, rows, budgets, ks, out, prob_name, top_name)

    fixes = sorted({var for (_, arch, var, _) in C if arch == SUBJECT and var.startswith("score=")})
    if fixes:
        L += ["## The gate-saturation fixes", "",
              f"Opt-in selection scores of `{SUBJECT}` (`score`, see saes/prob_topk.py): `stable` ranks on "
              "λ|a| − σ(−g) (the paper's order without float32 saturation), `logit` ranks on ℓ + (β/β0)·L + λ|a| "
              "(the gate's logit, with the noise annealed instead of the temperature). Held-out FVU:", ""]
        for fx in fixes:
            L += [f"### `{fx}` against {top_name}", ""]
            L += _comparison_table(C, budgets, ks, (SUBJECT, fx), TOP, f"{prob_name} {fx}", top_name, "fvu", True)
            L += [f"### `{fx}` against the paper's {prob_name}", ""]
            L += _comparison_table(C, budgets, ks, (SUBJECT, fx), PROB, f"{prob_name} {fx}", prob_name, "fvu", True)
            L += [f"Alive latents, `{fx}` against {top_name}:", ""]
            L += _comparison_table(C, budgets, ks, (SUBJECT, fx), TOP, f"{prob_name} {fx}", top_name, "alive", False)

    inits = {(arch, var) for (_, arch, var, _) in C if var.startswith("init=")}
    if inits:
        L += ["## Initialisation", "",
              "`init = 'unit'`: decoder rows are random unit-norm directions, encoder = decoder transpose (Gao et "
              "al. 2025). `init = 'orthogonal'`: the paper's App. A literally (orthonormal columns, so at 16× the rows "
              "have norm 0.25). Each architecture against its other initialisation (held-out FVU):", ""]
        for arch, var in sorted(inits):
            L += [f"### {family(arch)}: `{var}` against its default", ""]
            L += _comparison_table(C, budgets, ks, (arch, var), (arch, ""), f"{family(arch)} {var}",
                                   f"{family(arch)} default", "fvu", True)
        if (BASELINE, "init=orthogonal") in inits:
            L += ["### The paper's literal setting (both architectures 'orthogonal') beside the defaults", ""]
            L += _comparison_table(C, budgets, ks, PROB, (BASELINE, "init=orthogonal"), prob_name,
                                   f"{top_name} init=orthogonal", "fvu", True)

    betas = sorted({var for (_, arch, var, _) in C if arch == SUBJECT and var.startswith("beta_start=")},
                   key=lambda v: float(v.split("=")[1]))
    if betas:
        beta0 = hparam_defaults(SUBJECT)["beta_start"]
        L += ["## Gate temperature β0 (annealed to β_T)", "",
              f"Held-out FVU; Δ against the default β0 = {beta0:g} and against {top_name} (default init), with the "
              "same seed.", "",
              f"| budget | K | β0 | FVU | Δ vs β0 = {beta0:g} [95 % CI] | Δ vs {top_name} [95 % CI] | alive |",
              "|---|---|---|---|---|---|---|"]
        lines: dict[str, list] = {}
        refs: dict[str, tuple[str, float]] = {}
        for b in budgets:
            for k in ks:
                base = C.get((b, SUBJECT, "", k))
                if not base or not any(C.get((b, SUBJECT, v, k)) for v in betas):
                    continue
                label = f"K={k}, {_budget(b)}"
                top = C.get((b, BASELINE, "", k))
                if top:
                    refs[label] = (f"{top_name}, {label}", summary(top, "fvu")["mean"])
                for v in [*betas, ""]:
                    c = C.get((b, SUBJECT, v, k))
                    if not c:
                        continue
                    beta = float(v.split("=")[1]) if v else beta0
                    s = summary(c, "fvu")
                    lines.setdefault(label, []).append((beta, s["mean"], s["lo"], s["hi"]))
                    p = paired(c, base, "fvu") if v else None
                    L += [f"| {_budget(b)} | {k} | {beta:g} | {_ms(s)} | {_diff(p) if p else '(reference)'} | "
                          f"{_diff(paired(c, top, 'fvu')) if top else '–'} | {_ms(summary(c, 'alive'), 0)} |"]
        L += [""]
        if lines:
            plots.beta_lines({k: sorted(v) for k, v in lines.items()}, out / "temperature.png",
                             "Held-out FVU against the initial gate temperature β0 (mean ± 95 % CI over seeds;\n"
                             f"dashed: {top_name} at the same K and budget)", references=refs)
            L += ["![temperature](temperature.png)", ""]

    L += ["## Every run", "", "(also in `runs.csv`)", "",
          "| budget | architecture | variant | K | seed | L0 | FVU | alive | alive (end of training) | CE recovered | KL |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = sorted(rows, key=lambda r: (r["budget"], arch_order(r["architecture"]), r["variant"],
                                        r["k"] or 0, r["seed"]))
    L += [f"| {_budget(r['budget'])} | {r['architecture']} | {r['variant'] or 'default'} | {r['k']} | {r['seed']} | "
          f"{_fmt(r['l0'], 2)} | {_fmt(r['fvu'])} | {_fmt(r['alive'])} | {_fmt(r['train_alive'])} | "
          f"{_fmt(r['ce_recovered'])} | {_fmt(r['kl'])} |" for r in order]
    L += [""]
    cols = ["budget", "architecture", "variant", "k", "seed", "name", "l0", "mse", "fvu", "alive", "dead",
            "train_alive", "eval_tokens", "ce_recovered", "kl", "ce_delta", "ce_clean", "ce_tokens",
            "pass_train_seconds", "pass_members"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows(order)
    atomic_write_text(out / "runs.csv", buf.getvalue())
    atomic_write_text(out / REPORT_FILE, "\n".join(L))
    return out / REPORT_FILE
