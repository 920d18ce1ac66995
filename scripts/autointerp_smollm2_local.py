"""Table 2 at small scale with a real local LLM: SmolLM2-135M-Instruct, served on 127.0.0.1 by
``transformers serve`` (``probsae autointerp --llm local:smollm2``), as explainer AND detection
judge, on TopK vs Probabilistic TopK SmolLM2 SAEs; compared with the offline proxy (top-tokens
explanations + MiniLM embedding scorer) on the same latents.

    PROBSAE_CORPORA=/work/main/corpora nice -n 10 python scripts/autointerp_smollm2_local.py \
        --out docs/results/autointerp-smollm2-local

SmolLM2-135M follows neither the paper's judge format (a JSON list of 0/1) nor its explainer
format (``EXPLANATION: ...``), so by default the judge is asked one excerpt at a time
(``--judge-format yes-no``) and explanations are read leniently (``--explanation-format lenient``).

The runs are copied (weights and metadata only) into --work, so nothing is written next to the
originals; latent caches, explanations, scores, the LLM replies (llm_cache/) and the server logs
stay in --work. Writes results.md, results.json, table2.md/json (SmolLM2 as explainer and judge)
and proxy-RUN.md (the offline proxy's Table 2) into --out.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from probsae.stats import pearson

RUN_FILES = ("sae.safetensors", "config.json", "log.jsonl", "metrics.json")
SETTINGS = {
    "n_latents": (25, "latents per SAE, SmolLM2 as explainer and judge"),
    "n_latents_judge_only": (10, "latents per SAE, SmolLM2 judging the top-tokens baseline's explanations"),
    "n_buckets": (2, "activation percentile buckets"),
    "n_explain": (5, "explanation windows per bucket"),
    "n_test": (5, "activating, and as many non-activating, test windows per bucket"),
    "examples_per_prompt": (10, "test windows per detection prompt"),
    "llm_max_tokens": (64, "cap on every request's max_tokens"),
    "llm_concurrency": (8, "requests in flight (the server batches them)"),
    "n_windows": (1024, "32-token windows per latent cache"),
}
"""Integer settings: name → (default, what it is)."""
FORMATS = {
    "judge_format": ("yes-no", "probsae autointerp --judge-format (list: the paper's)"),
    "explanation_format": ("lenient", "probsae autointerp --explanation-format (strict: the paper's)"),
}
"""Prompt/reply formats: name → (default, what it is)."""


def autointerp(args: list[str], log: Path) -> float:
    """Run ``probsae autointerp ARGS`` (output to ``log``); its wall time in seconds."""
    t0 = time.time()
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "probsae", "autointerp", *args], stdout=f, stderr=subprocess.STDOUT)
        try:
            code = proc.wait()
        except BaseException:  # Ctrl-C or SIGTERM: autointerp stops its server and saves its LLM replies
            proc.terminate()
            proc.wait()
            raise
    if code:
        sys.exit(f"probsae autointerp failed (exit {code}); see {log}")
    return time.time() - t0


def jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def per_latent(scores: list[dict]) -> dict[int, float]:
    """Latent → its score averaged over its scored buckets."""
    by: dict[int, list[float]] = {}
    for s in scores:
        if s.get("score") is not None:
            by.setdefault(s["latent"], []).append(s["score"])
    return {l: float(np.mean(v)) for l, v in by.items()}


def spearman(x, y) -> float | None:
    from scipy.stats import spearmanr

    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)


def correlation(stat, arr: np.ndarray) -> dict:
    """``stat`` of the two columns of ``arr`` (rows: latents), its bootstrap 95 % CI and n."""
    return {"n": len(arr), "rho": stat(arr[:, 0], arr[:, 1]) if len(arr) else None,
            "ci95": boot(lambda a: stat(a[:, 0], a[:, 1]), [arr]) if len(arr) >= 3 else None}


def boot(stat, groups: list[np.ndarray], n: int = 2000, seed: int = 0) -> list[float] | None:
    """Percentile 95 % CI of ``stat(*groups)``, each group resampled (rows) with replacement."""
    from probsae.stats import percentile_interval

    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n):
        r = stat(*[g[rng.integers(0, len(g), len(g))] for g in groups])
        reps.append(np.nan if r is None else r)
    return percentile_interval(np.asarray(reps, np.float64))


def analyse(judge_rows: list[dict], proxy: dict[str, dict[int, float]]) -> dict:
    from probsae.stats import mean_ci

    out: dict = {"saes": {}}
    lat_scores = {}
    for row in judge_rows:
        res = Path(row["results_dir"])
        scores, expl = jsonl(res / "scores.jsonl"), jsonl(res / "explanations.jsonl")
        lat = per_latent(scores)
        lat_scores[row["label"]] = lat
        scored = [s for s in scores if s.get("score") is not None]
        answers = [d["prediction"] for s in scores for d in s.get("details", []) if d["prediction"] is not None]
        constant = sum(1 for s in scored if len({d["prediction"] for d in s["details"] if d["prediction"] is not None}) == 1)
        m, lo, hi = mean_ci(list(lat.values()))
        pairs = [(lat[l], proxy[row["label"]][l]) for l in lat if l in proxy[row["label"]]]
        arr = np.asarray(pairs, np.float64).reshape(-1, 2)
        out["saes"][row["label"]] = {
            "latents": row["n_latents"], "latents_scored": len(lat),
            "buckets_scored": len(scored), "buckets": len(scores),
            "explanations_parsed": sum(1 for e in expl if e["explanation"] is not None), "explanations": len(expl),
            "explanations_lenient": sum(1 for e in expl if e.get("lenient")),
            "detection_prompts": row.get("detection_prompts"), "detection_prompts_unparsed": row.get("detection_failed_prompts"),
            "scored_buckets_with_one_answer_for_all": constant,
            "judge_yes_rate": float(np.mean(answers)) if answers else None, "judge_answers": len(answers),
            "balanced_accuracy": {"mean": m, "ci95": [lo, hi], "chance": 0.5},
            "per_bucket": row["buckets"],
            "proxy_mean": float(np.mean(list(proxy[row["label"]].values()))) if proxy[row["label"]] else None,
            "spearman_judge_vs_proxy": correlation(spearman, arr),
            "pearson_judge_vs_proxy": correlation(pearson, arr),
            "llm": row.get("llm"),
        }
    both = np.asarray([(v, proxy[label][l]) for label, lat in lat_scores.items() for l, v in lat.items()
                       if l in proxy[label]], np.float64).reshape(-1, 2)
    out["pooled"] = {"balanced_accuracy": dict(zip(("mean", "ci_low", "ci_high"), mean_ci(list(both[:, 0])))),
                     "spearman_judge_vs_proxy": correlation(spearman, both),
                     "pearson_judge_vs_proxy": correlation(pearson, both)}
    labels = [r["label"] for r in judge_rows]
    if len(labels) == 2:
        a, b = (np.asarray(list(lat_scores[l].values()), np.float64) for l in labels)
        if len(a) and len(b):
            out["difference"] = {"of": f"{labels[0]} - {labels[1]}", "mean": float(a.mean() - b.mean()),
                                 "ci95": boot(lambda x, y: float(x.mean() - y.mean()), [a, b])}
    return out


def fmt_ci(d: dict | None) -> str:
    if not d or d.get("mean", d.get("rho")) is None:
        return "n/a"
    v = d.get("mean", d.get("rho"))
    ci = d.get("ci95") or [None, None]
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else f"{v:.3f}"


def markdown(res: dict) -> str:
    lines = ["| SAE | latents scored | buckets scored | explanations parsed (of them lenient) | detection prompts parsed | "
             "judge balanced accuracy (95 % CI; chance 0.5) | proxy ROC-AUC (mean) | Spearman judge vs proxy (95 % CI) "
             "| Pearson judge vs proxy (95 % CI) |",
             "|---|---:|---:|---:|---:|---|---:|---|---|"]
    for label, s in res["saes"].items():
        dp, du = s["detection_prompts"] or 0, s["detection_prompts_unparsed"] or 0
        lines.append(f"| {label} | {s['latents_scored']}/{s['latents']} | {s['buckets_scored']}/{s['buckets']} | "
                     f"{s['explanations_parsed']}/{s['explanations']} ({s['explanations_lenient']}) | {dp - du}/{dp} | "
                     f"{fmt_ci(s['balanced_accuracy'])} | "
                     f"{s['proxy_mean'] if s['proxy_mean'] is None else round(s['proxy_mean'], 3)} | "
                     f"{fmt_ci(s['spearman_judge_vs_proxy'])} (n={s['spearman_judge_vs_proxy']['n']}) | "
                     f"{fmt_ci(s['pearson_judge_vs_proxy'])} |")
    if "difference" in res:
        lines.append(f"\nDifference {res['difference']['of']} in judge balanced accuracy: {fmt_ci(res['difference'])} "
                     "(bootstrap over latents).")
    pooled = res["pooled"]
    ba = pooled["balanced_accuracy"]
    if ba["mean"] is not None:
        ci = f" [{ba['ci_low']:.3f}, {ba['ci_high']:.3f}]" if ba["ci_low"] is not None else ""
        lines.append(f"\nBoth SAEs pooled (latents): judge balanced accuracy {ba['mean']:.3f}{ci}; Spearman judge vs proxy "
                     f"{fmt_ci(pooled['spearman_judge_vs_proxy'])}, Pearson {fmt_ci(pooled['pearson_judge_vs_proxy'])} "
                     f"(n={pooled['spearman_judge_vs_proxy']['n']}).")
    lines.append("\nPer bucket (judge balanced accuracy, mean ± 95 % CI over latents):\n")
    for label, s in res["saes"].items():
        cells = "; ".join(f"{b['label']}: {b['mean']:.3f} [{b['ci_low']:.3f}, {b['ci_high']:.3f}] (n={b['n']})"
                          if b.get("ci_low") is not None else f"{b['label']}: {b.get('mean')} (n={b['n']})"
                          for b in s["per_bucket"])
        lines.append(f"- {label}: {cells}")
    lines.append("\nShare of the judge's parsed answers that are Yes/1: " + ", ".join(
        f"{l} {s['judge_yes_rate']:.2f} of {s['judge_answers']}" for l, s in res["saes"].items() if s["judge_yes_rate"] is not None))
    lines.append("\nScored buckets where the judge gave one answer to every excerpt: " + ", ".join(
        f"{l} {s['scored_buckets_with_one_answer_for_all']}/{s['buckets_scored']}" for l, s in res["saes"].items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--runs-root", default="/work/runs/smollm2-cpu/runs")
    p.add_argument("--runs", nargs="+", default=["topk-k=8", "prob_topk-k=8"])
    p.add_argument("--labels", default="TopK,ProbTopK")
    p.add_argument("--work", default="/tmp/autointerp-smollm2-local")
    for name, (default, what) in SETTINGS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, help=what)
    for name, (default, what) in FORMATS.items():
        p.add_argument(f"--{name.replace('_', '-')}", default=default, help=what)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    work, out = Path(args.work), Path(args.out)
    runs = []
    for name in args.runs:
        dst = work / "runs" / name
        dst.mkdir(parents=True, exist_ok=True)
        for f in RUN_FILES:
            if not (dst / f).exists() and (Path(args.runs_root) / name / f).exists():
                shutil.copy2(Path(args.runs_root) / name / f, dst / f)
        runs.append(str(dst))
    common = ["--n-buckets", str(args.n_buckets), "--n-explain", str(args.n_explain), "--n-test", str(args.n_test),
              "--n-nonact", str(args.n_test), "--examples-per-prompt", str(args.examples_per_prompt),
              "--n-windows", str(args.n_windows), "--seed", "0"]
    llm = ["--llm", "local:smollm2", "--llm-max-tokens", str(args.llm_max_tokens),
           "--judge-format", args.judge_format, "--explanation-format", args.explanation_format,
           "--llm-concurrency", str(args.llm_concurrency)]
    res: dict = {"settings": {k: v for k, v in vars(args).items() if k not in ("out", "work")}, "judge": {}}
    latents: dict[str, set[int]] = {}
    for name, explainer, n in (("smollm2-explains-and-judges", "llm", args.n_latents),
                               ("smollm2-judges-top-tokens", "top-tokens", args.n_latents_judge_only)):
        wall = autointerp([*runs, "--labels", args.labels, *llm, "--llm-log", str(work / f"{name}-serve.log"),
                           "--explainer", explainer, "--n-latents", str(n), "--out", str(work / name), "--force",
                           *common], work / f"{name}.log")
        startup = re.search(r"local LLM ready after ([0-9.]+) s", (work / f"{name}.log").read_text(errors="replace"))
        rows = json.loads((work / name / "table2.json").read_text())["runs"]
        for row in rows:
            latents.setdefault(row["label"], set()).update(
                e["latent"] for e in jsonl(Path(row["results_dir"]) / "explanations.jsonl"))
        res["judge"][name] = {"explainer": explainer, "n_latents": n, "wall_s": round(wall, 1),
                              "server_startup_s": float(startup.group(1)) if startup else None, "rows": rows}
        if name == "smollm2-explains-and-judges":
            for f in ("table2.md", "table2.json"):  # no Figure 5: its plot is empty when nothing was scored
                if (work / name / f).exists():
                    out.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(work / name / f, out / f)

    proxy: dict[str, dict[int, float]] = {}
    proxy_wall = 0.0
    for run, label in zip(runs, args.labels.split(",")):
        pout = work / f"proxy-{Path(run).name}"
        proxy_wall += autointerp([run, "--labels", label, "--scorer", "embedding", "--explainer", "top-tokens",
                                  "--latents", ",".join(map(str, sorted(latents[label]))), "--out", str(pout),
                                  "--force", *common], work / "proxy.log")
        prow = json.loads((pout / "table2.json").read_text())["runs"][0]
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(pout / "table2.md", out / f"proxy-{Path(run).name}.md")
        proxy[label] = per_latent(jsonl(Path(prow["results_dir"]) / "scores.jsonl"))
    res["proxy_wall_s"] = round(proxy_wall, 1)
    res["analysis"] = {name: analyse(j["rows"], proxy) for name, j in res["judge"].items()}
    res["command"] = "python scripts/autointerp_smollm2_local.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    for j in res["judge"].values():
        j["rows"] = [{k: r.get(k) for k in ("label", "results_dir", "settings_key", "seconds")} for r in j["rows"]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    md = "".join(f"## {name} (explainer: {j['explainer']}, judge: SmolLM2-135M-Instruct, {j['n_latents']} latents per SAE)\n\n"
                 f"Wall time {j['wall_s']:.0f} s, server start-up {j['server_startup_s']} s.\n\n"
                 + markdown(res["analysis"][name]) + "\n" for name, j in res["judge"].items())
    md += f"Offline proxy (top-tokens + MiniLM embedding scorer, same latents): {res['proxy_wall_s']:.0f} s.\n\n"
    md += f"Settings: `{json.dumps(res['settings'])}`\n\nCommand: `{res['command']}`\n"
    (out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
