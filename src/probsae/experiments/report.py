"""``probsae report SWEEP_DIR``: figures and a Markdown report of a finished (or partial) sweep.

Reads ``sweep.json``, every ``runs/*/metrics.json`` (held-out evaluation) and ``runs/*/log.jsonl``
(training curves), and writes into the output directory::

    report.md        settings, key comparisons, every run's final metrics, the command that made it
    metrics.csv      the table of every run's final metrics
    pareto.png       FVU vs L0 and MSE vs L0 (log-x), one line per architecture      (paper Fig. 2/3)
    alive.png        alive latents over training, TopK vs Probabilistic TopK per K    (paper Fig. 4/8)
    ablation.png     full / w/o magnitude / w/o LayerNorm / sigmoid gate / TopK per K (paper Fig. 6)
    temperature.png  β_0 ∈ {0.5, 1, 5, 10}: MSE vs L0 and FVU vs β_0                  (paper Fig. 7)
    training.png     explained variance over training of the Pareto runs
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import atomic_write, atomic_write_text, check_output_dir, ensure_dir, read_json
from ..runs.results import read_runs
from ..saes import get_class
from ..saes.registry import hyperparameters
from ..saes.style import arch_order, label as arch_label
from ..training.logger import read_log_records, step_records
from ..training.member import LOG_FILE
from . import plots
from .sweep import SWEEP_FILE

#: The paper's study: its architecture and the baseline it is compared with. The head-to-head,
#: alive-latents, ablation, temperature and training-curve sections are about these two; every
#: registered architecture gets its Pareto line and its table rows, with the label, colour and
#: order its module declares.
SUBJECT, BASELINE = "prob_topk", "topk"
#: The subject's variants in the ablation figure (paper Fig. 6), as its ``variant_label`` names them.
ABLATIONS = ["w/o magnitude", "w/o LayerNorm", "sigmoid gate"]


def _declared(arch: str):
    """The registered class of ``arch`` (None for an architecture this version does not know)."""
    try:
        return get_class(arch)
    except ConfigError:
        return None


def variant(r: dict[str, Any]) -> str:
    """'full' for a member with only its sparsity hyperparameter (the others at their defaults);
    otherwise the name its architecture gives a one-hyperparameter variant ('w/o magnitude',
    'β0=0.5', …), or 'other: …'."""
    cls = _declared(r["architecture"])
    primary = cls.sparsity[0] if cls is not None else None
    defaults = hparam_defaults(r["architecture"])
    diff = {k: v for k, v in r["hparams"].items() if k != primary and defaults.get(k, object()) != v}
    if not diff:
        return "full"
    if cls is not None and len(diff) == 1:
        (k, v), = diff.items()
        label = cls.variant_label(k, v)
        if label:
            return label
    return "other: " + ", ".join(f"{k}={v}" for k, v in sorted(diff.items()))


def hparam_defaults(arch: str) -> dict[str, Any]:
    """The default hyperparameters of ``arch`` ({} for an architecture this version does not know)."""
    try:
        return hyperparameters(arch)
    except ConfigError:
        return {}


def _tag(r: dict[str, Any]) -> str:
    """The sparsity setting next to a point: 'K=8', 'λ=0.3'."""
    cls = _declared(r["architecture"])
    param, symbol = cls.sparsity if cls is not None else ("", "")
    return f"{symbol}={r['hparams'][param]:g}" if param in r["hparams"] else ""


def load_sweep(sweep_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(f"sweep directory {sweep_dir} does not exist")
    info_path = sweep_dir / SWEEP_FILE
    info = read_json(info_path, dict, ConfigError) if info_path.is_file() else {}
    # metrics.json is written atomically: never torn, so one that cannot be read is an error naming it
    results = [{**m, "_dir": run_dir} for run_dir, m in read_runs(sweep_dir / "runs")]
    if not results:
        raise ConfigError(f"{sweep_dir} has no finished runs (no runs/*/metrics.json): run 'probsae sweep' first")
    return info, results


def _window_text(values: set[int]) -> str:
    """'5,120', or '5,120 to 10,240' where runs used different windows."""
    lo, hi = min(values), max(values)
    return f"{lo:,}" if lo == hi else f"{lo:,} to {hi:,}"


def used_dead_window(run_dirs: list[Path], info: dict[str, Any]) -> str | None:
    """The training liveness window (``TrainConfig.dead_window_tokens``) the runs trained with, as
    text: from the ``start`` record of each run's log (what training used), else sweep.json's
    train_config; None if neither records it."""
    used = set()
    for d in run_dirs:
        for rec in read_log_records(Path(d) / LOG_FILE):
            w = rec.get("train_config", {}).get("dead_window_tokens") if rec.get("event") == "start" \
                and isinstance(rec.get("train_config"), dict) else None
            if isinstance(w, int) and not isinstance(w, bool):
                used.add(w)
    if not used:
        w = info.get("train_config", {}).get("dead_window_tokens")
        used = {w} if isinstance(w, int) and not isinstance(w, bool) else set()
    return _window_text(used) if used else None


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """The per-step training records of a run directory's log (strict: see ``read_log_records``)."""
    return step_records(read_log_records(Path(run_dir) / LOG_FILE))


def _row(r: dict[str, Any]) -> dict[str, Any]:
    e = r["heldout"]
    tf = r.get("train_final", {})
    return {"name": r["name"], "architecture": r["architecture"], "variant": variant(r), "tag": _tag(r),
            "k": r["hparams"].get("k"), "l0": e["l0"], "mse": e["mse"], "fvu": e["fvu"],
            "explained_variance": e["explained_variance"], "alive": e["alive"], "dead": e["dead"],
            "d_sae": r.get("d_sae"), "train_alive": tf.get("alive"), "tokens_seen": r.get("tokens_seen"),
            "steps": r.get("steps"), "eval_tokens": e.get("n_tokens"), "studies": r.get("studies", []),
            "beta_start": r["hparams"].get("beta_start", hparam_defaults(r["architecture"]).get("beta_start"))}


REPORT_FILE = "report.md"


def holds_report(path: str | Path) -> bool:
    """True when ``path`` holds a report that ``probsae report`` wrote: its report.md has the
    "Made by: `COMMAND`" line (hand notes may precede it)."""
    try:
        with open(Path(path) / REPORT_FILE, encoding="utf-8", errors="replace") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return any(line.startswith("Made by: `") for line in head.splitlines())


def report_dir(out: str | Path, force: bool = False) -> Path:
    """Create the report folder ``out``; a non-empty folder that holds no report (the user's own
    report.md, figures, …) is refused unless ``force`` (``ConfigError``), before any work."""
    check_output_dir(out, holds_report, force, "probsae report directory")
    return ensure_dir(out, "report directory")


def make_report(sweep_dir: str | Path, out_dir: str | Path | None = None, command: str | None = None,
                title: str | None = None, notes: str | Path | None = None, force: bool = False) -> Path:
    """Write the report of ``sweep_dir`` into ``out_dir`` (default SWEEP_DIR/report); returns report.md.
    ``notes``: a Markdown file inlined as the report's "Notes" section. A non-empty ``out_dir``
    that holds no report is refused unless ``force`` (:func:`report_dir`)."""
    sweep_dir = Path(sweep_dir)
    out = report_dir(Path(out_dir) if out_dir else sweep_dir / "report", force)
    info, results = load_sweep(sweep_dir)
    rows = [_row(r) for r in results]
    by_name = {r["name"]: r for r in results}
    name = info.get("name", sweep_dir.name)
    title = title or f"Sweep report: {name}"
    data = info.get("data", {})
    setting = f"{data.get('model', '?')} {data.get('hook', '?')}" + (f" on {data['corpus']}" if data.get("corpus") else "")
    figs: dict[str, str] = {}

    # Pareto: every architecture's default-variant runs.
    series: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: arch_order(r["architecture"])):
        if row["variant"] == "full":
            series.setdefault(arch_label(row["architecture"]), []).append(row)
    if series:
        plots.pareto(series, out / "pareto.png", f"Reconstruction vs sparsity — {setting}")
        figs["pareto"] = "pareto.png"

    # Alive latents over training: baseline vs subject (full) per K. The logged 'alive_recent'
    # (window a tenth of the run) when the logs have it: the training window (dead_window_tokens,
    # 10M by default) can be longer than the whole run and then stays flat.
    d_sae = next((r["d_sae"] for r in rows if r.get("d_sae")), None)
    panels: dict[int, dict[str, list]] = {}
    windows: set[int] = set()
    for row in rows:
        if row["variant"] == "full" and row["architecture"] in (BASELINE, SUBJECT) and row["k"]:
            log = read_log(by_name[row["name"]]["_dir"])
            key = "alive_recent" if any(rec.get("alive_recent") is not None for rec in log) else "alive"
            pts = [(rec["tokens"], rec[key]) for rec in log if rec.get(key) is not None]
            windows |= {rec["alive_window"] for rec in log if key == "alive_recent" and rec.get("alive_window")}
            if pts:
                panels.setdefault(row["k"], {})[row["architecture"]] = pts
    panels = {k: v for k, v in panels.items() if len(v) == 2} or panels
    # The windows the runs used (their logs), the one source of the figure title and the Setting
    # section: the logged alive_window, else (older logs) the training window, dead_window_tokens.
    figs["dead_window"] = dead_window = used_dead_window([r["_dir"] for r in results], info)
    figs["alive_window"] = window = _window_text(windows) if windows else dead_window
    if panels:
        wtxt = f" (alive = fired in the last {window} tokens)" if window else ""
        plots.alive_curves(panels, d_sae, out / "alive.png", f"Alive latents during training{wtxt}")
        figs["alive"] = "alive.png"

    # Ablations: per K with at least one ablation variant.
    ablation_order = ["full", *ABLATIONS, arch_label(BASELINE)]
    abl: dict[int, dict[str, dict]] = {}
    for row in rows:
        if row["architecture"] == SUBJECT and row["variant"] in ablation_order and row["k"]:
            abl.setdefault(row["k"], {})[row["variant"]] = row
    abl = {k: v for k, v in abl.items() if set(v) - {"full"}}
    for row in rows:
        if row["architecture"] == BASELINE and row["variant"] == "full" and row["k"] in abl:
            abl[row["k"]][arch_label(BASELINE)] = row
    abl = {k: {v: g[v] for v in ablation_order if v in g} for k, g in abl.items()}
    if abl:
        plots.grouped_bars(abl, [("fvu", "FVU (held-out)"), ("mse", "MSE (held-out)"), ("alive", "alive latents (held-out)")],
                           out / "ablation.png", f"Ablations of {arch_label(SUBJECT)} — {setting}", subject=SUBJECT)
        figs["ablation"] = "ablation.png"

    # Temperature: subject runs differing only in beta_start (full = the default β0).
    temp_rows = [row for row in rows if row["architecture"] == SUBJECT
                 and (row["variant"].startswith("β0=") or row["variant"] == "full")]
    temp_ks = {row["k"] for row in temp_rows if row["variant"].startswith("β0=")}
    temp_rows = [row for row in temp_rows if row["k"] in temp_ks]
    tlines: dict[str, list[dict]] = {}
    for row in sorted(temp_rows, key=lambda r: r["beta_start"]):
        tlines.setdefault(f"β0={row['beta_start']:g}", []).append({**row, "beta": row["beta_start"]})
    if tlines:
        plots.temperature(tlines, out / "temperature.png", f"Gate temperature β0 (annealed) — {setting}")
        figs["temperature"] = "temperature.png"

    # Training curves of the baseline's and the subject's Pareto runs.
    curves = {}
    for row in rows:
        if row["variant"] == "full" and row["architecture"] in (BASELINE, SUBJECT):
            log = read_log(by_name[row["name"]]["_dir"])
            pts = [(rec["tokens"], rec["explained_variance"]) for rec in log if rec.get("explained_variance") is not None]
            if pts:
                curves[(row["architecture"], row["tag"])] = pts
    if curves:
        plots.training_curves(curves, out / "training.png", "Explained variance of the training batch",
                              "explained variance (batch)")
        figs["training"] = "training.png"

    _write_csv(rows, out / "metrics.csv")
    md = _markdown(info, rows, abl, tlines, figs, sweep_dir, out, command, title, setting)
    if notes:
        p = Path(notes)
        if not p.is_file():
            raise ConfigError(f"--notes {p}: no such file")
        head, sep, tail = md.partition("\n## Pareto frontier")
        md = head + "\n## Notes\n\n" + p.read_text().strip() + "\n" + sep + tail
    atomic_write_text(out / REPORT_FILE, md)
    return out / REPORT_FILE


_CSV_COLS = ["name", "architecture", "variant", "tag", "l0", "mse", "fvu", "explained_variance", "alive", "dead",
             "d_sae", "train_alive", "tokens_seen", "steps", "eval_tokens"]


def _write_csv(rows: list[dict], path: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=_CSV_COLS, extrasaction="ignore")
            w.writeheader()
            for r in sorted(rows, key=_sort_key):
                w.writerow(r)

    atomic_write(path, write)


def _sort_key(r: dict) -> tuple:
    return (arch_order(r["architecture"]), r["variant"] != "full", r["variant"], r["k"] or 0, r["l0"])


def _f(x: Any, nd: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


#: What the head-to-head section says instead of a verdict: one seed per cell has no CI.
SINGLE_SEED_NOTE = ("One seed per architecture and K: no confidence interval (single seed), so no verdict "
                    "is drawn from these differences. A sweep whose grid varies `seed` gets paired "
                    "differences with 95 % CIs and a verdict only where the CI excludes 0.")


def comparisons(rows: list[dict]) -> list[dict[str, Any]]:
    """Baseline vs subject (full) at every K both have: held-out FVU, MSE, L0, alive."""
    top = {r["k"]: r for r in rows if r["architecture"] == BASELINE and r["variant"] == "full"}
    prob = {r["k"]: r for r in rows if r["architecture"] == SUBJECT and r["variant"] == "full"}
    out = []
    for k in sorted(set(top) & set(prob)):
        t, p = top[k], prob[k]
        out.append({"k": k, "topk": t, "prob": p,
                    "fvu_rel": (p["fvu"] - t["fvu"]) / t["fvu"] if t["fvu"] else float("nan"),
                    "mse_rel": (p["mse"] - t["mse"]) / t["mse"] if t["mse"] else float("nan"),
                    "alive_diff": p["alive"] - t["alive"]})
    return out


def _markdown(info, rows, abl, tlines, figs, sweep_dir: Path, out: Path, command, title, setting) -> str:
    tc = info.get("train_config", {})
    data = info.get("data", {})
    L: list[str] = [f"# {title}", ""]
    L += [f"Made by: `{command or f'probsae report {sweep_dir}'}`", ""]
    if info.get("command"):
        L += [f"Sweep started by: `{info['command']}` (resumed or extended by the invocations below)", ""]
        invs = [i for i in info.get("invocations", []) if isinstance(i.get("finished_at"), str)]
        if invs:
            import datetime as _dt

            ends = [_dt.datetime.fromisoformat(i["finished_at"]) for i in invs]
            starts = [e - _dt.timedelta(seconds=i.get("wall_seconds", 0)) for e, i in zip(ends, invs)]
            span = (max(ends) - min(starts)).total_seconds()
            L += [f"Completed sweep invocations ({len(invs)}; wall-clock span {span / 60:.1f} min from the first start "
                  "to the last finish, activation extraction not included):", ""]
            L += [f"- `{i['command']}` — finished {i['finished_at']}, {i.get('wall_seconds', 0) / 60:.1f} min, "
                  f"{i.get('to_run', '?')} members trained" for i in invs]
            L += [""]
        older = [i for i in info.get("invocations", []) if not isinstance(i.get("finished_at"), str)]
        if older:
            L += ["Completed sweep invocations without a timestamp:", ""]
            L += [f"- `{i['command']}` — {i.get('wall_seconds', 0) / 60:.1f} min, {i.get('to_run', '?')} members trained"
                  for i in older]
            L += [""]
    L += [f"Generated {time.strftime('%Y-%m-%d %H:%M')}.", ""]
    if info.get("description"):
        L += [info["description"], ""]

    d_sae = next((r["d_sae"] for r in rows if r.get("d_sae")), None)
    toks = max((r["tokens_seen"] or 0) for r in rows)
    cache_toks = data.get("train_cache_tokens")
    L += ["## Setting", ""]
    L += [f"- activations: {setting}; d_in = {data.get('d_in', '?')}, d_sae = {d_sae}"]
    if cache_toks:
        L += [f"- training tokens seen per SAE: {toks:,} ({toks / cache_toks:.2f} passes over a "
              f"{cache_toks:,}-token training cache); held-out evaluation on {data.get('eval_tokens', 0):,} tokens "
              "of documents never trained on"]
    else:
        L += [f"- training tokens seen per SAE: {toks:,}"]
    if tc:
        L += [f"- optimiser: Adam lr {tc.get('lr')} ({tc.get('lr_schedule')}, warm-up {tc.get('warmup_steps')} steps), "
              f"batch {tc.get('batch_size')} tokens, {tc.get('steps')} steps, grad clip {tc.get('grad_clip')}"]
    if figs.get("alive_window") or figs.get("dead_window"):
        L += ["- alive latents during training: " + "; ".join(
            ([f"the alive figure counts latents that fired within the last {figs['alive_window']} training tokens"]
             if figs.get("alive_window") else []) +
            ([f"the 'alive at end of training' and 'alive (train window)' columns count those that fired within the training window "
              f"(`dead_window_tokens`, which also decides the dead latents during training) of {figs['dead_window']} tokens"]
             if figs.get("dead_window") else []))]
    L += [f"- runs: {len(rows)}; metrics are on normalised inputs (mean-centred, unit-norm tokens), "
          "deterministic inference path", ""]

    comps = comparisons(rows)
    if comps:
        L += ["## Probabilistic TopK vs TopK", "",
              "| K | L0 TopK | L0 ProbTopK | FVU TopK | FVU ProbTopK | Δ FVU | MSE TopK | MSE ProbTopK | alive TopK | alive ProbTopK | alive at end of training TopK / ProbTopK |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in comps:
            t, p = c["topk"], c["prob"]
            L += [f"| {c['k']} | {_f(t['l0'], 2)} | {_f(p['l0'], 2)} | {_f(t['fvu'])} | {_f(p['fvu'])} | "
                  f"{c['fvu_rel'] * 100:+.1f}% | {_f(t['mse'])} | {_f(p['mse'])} | {_f(t['alive'])} | {_f(p['alive'])} | "
                  f"{_f(t['train_alive'])} / {_f(p['train_alive'])} |"]
        L += [""]
        # One run per (architecture, K): no confidence interval, so the report states the numbers and
        # no verdict (a sweep over seeds gets the paired-CI verdicts of the when report).
        for c in comps:
            L += [f"- K = {c['k']}: held-out FVU Probabilistic TopK {_f(c['prob']['fvu'])} vs TopK "
                  f"{_f(c['topk']['fvu'])} ({c['fvu_rel'] * 100:+.1f}%); MSE {_f(c['prob']['mse'])} vs "
                  f"{_f(c['topk']['mse'])}; L0 {_f(c['prob']['l0'], 2)} vs {_f(c['topk']['l0'], 2)}; latents alive "
                  f"{c['prob']['alive']:,} vs {c['topk']['alive']:,} of {d_sae} ({c['alive_diff']:+,})."]
        L += ["", SINGLE_SEED_NOTE, ""]

    if "pareto" in figs:
        L += ["## Pareto frontier", "", "![Pareto frontier](pareto.png)", "",
              "FVU and MSE against L0 (log scale) for the default variant of each architecture; "
              "each point is labelled by its sparsity setting (K, or λ for penalty-trained architectures).", ""]
        above = sorted(r["name"] for r in rows if r["variant"] == "full" and r["fvu"] > 1)
        if above:
            L += [f"FVU > 1 (reconstruction worse than predicting the mean; ringed in the figure, above the dotted "
                  f"line at 1): {', '.join(above)}.", ""]
    if "alive" in figs:
        L += ["## Alive latents during training", "", "![alive latents](alive.png)", "",
              f"Alive = fired within the last {figs['alive_window']} training tokens (shared y-axis from 0 to d_sae)."
              if figs.get("alive_window") else "Shared y-axis from 0 to d_sae.", ""]
    if abl:
        L += ["## Ablations", "", "![ablations](ablation.png)", "",
              "| K | variant | L0 | FVU | MSE | alive (held-out) | alive (end of training) |", "|---|---|---|---|---|---|---|"]
        for k, g in sorted(abl.items()):
            for v, r in g.items():
                L += [f"| {k} | {v} | {_f(r['l0'], 2)} | {_f(r['fvu'])} | {_f(r['mse'])} | {_f(r['alive'])} | {_f(r['train_alive'])} |"]
        L += [""]
    if tlines:
        L += ["## Gate temperature", "", "![temperature](temperature.png)", "",
              "| β0 | K | L0 | FVU | MSE | alive (held-out) |", "|---|---|---|---|---|---|"]
        for label, rs in tlines.items():
            for r in sorted(rs, key=lambda r: r["k"]):
                L += [f"| {r['beta']:g} | {r['k']} | {_f(r['l0'], 2)} | {_f(r['fvu'])} | {_f(r['mse'])} | {_f(r['alive'])} |"]
        L += [""]
    if "training" in figs:
        L += ["## Training curves", "", "![training](training.png)", ""]

    L += ["## Every run", "", "(also in `metrics.csv`; held-out metrics unless marked)", "",
          "| run | architecture | variant | L0 | MSE | FVU | EV | alive | dead | alive (train window) | tokens |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=_sort_key):
        L += [f"| {r['name']} | {r['architecture']} | {r['variant']} | {_f(r['l0'], 2)} | {_f(r['mse'])} | "
              f"{_f(r['fvu'])} | {_f(r['explained_variance'])} | {_f(r['alive'])} | {_f(r['dead'])} | "
              f"{_f(r['train_alive'])} | {_f(r['tokens_seen'])} |"]
    L += [""]
    return "\n".join(L)
