"""``probsae dashboard RUN_DIR``: a static, offline HTML feature browser for a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "dashboard"
HELP = ("Write a self-contained HTML feature browser: contexts centred on each latent's strongest tokens "
        "in windows as long as training's, logit effects (causal LMs), density and activation histograms, "
        "search, gate panel for prob_topk.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by 'probsae train'")
    p.add_argument("--out", default=None, help="output directory (default RUN_DIR/dashboard); open OUT/index.html. "
                   "A non-empty directory that holds no dashboard is refused")
    p.add_argument("--force", action="store_true",
                   help="write into --out even if it holds files that are not a dashboard (index.html and data.json are overwritten)")
    p.add_argument("--n-latents", type=int, default=100, help="latents to include")
    p.add_argument("--latents", default=None, help="explicit comma-separated latent ids")
    p.add_argument("--order", choices=("random", "frequent", "id", "interp"), default="random",
                   help="which alive latents to include (frequent: highest firing density first, ties by max activation; "
                   "interp: those scored by 'probsae autointerp')")
    p.add_argument("--n-top", type=int, default=10, help="top-activating contexts per latent")
    p.add_argument("--per-bucket", type=int, default=3, help="examples per activation-percentile bucket")
    p.add_argument("--n-buckets", type=int, default=None,
                   help="activation-percentile buckets (default: the count autointerp used for the explanations shown, else 5)")
    p.add_argument("--context-left", type=int, default=32, help="tokens shown left of a context's strongest token")
    p.add_argument("--context-right", type=int, default=8, help="tokens shown right of it")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the window sample, the random latent choice and the bucket examples")
    d = p.add_argument_group("data (default: what the run records)")
    d.add_argument("--model", default=None, help="model name/path (e.g. minilm, gpt2)")
    d.add_argument("--hook", default=None, help="hook point (e.g. resid_post.3)")
    d.add_argument("--corpus", default=None, help="corpus spec (pydoc, a .txt/.jsonl/.parquet file, hf:NAME)")
    d.add_argument("--n-windows", type=int, default=None, help="windows encoded (fewer if the corpus ends first; default "
                   "4096, capped to what the model encodes in 10 min at the speed measured on the first batch)")
    d.add_argument("--window-len", type=int, default=None,
                   help="tokens per window (default: the run's training context length)")
    d.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    d.add_argument("--cache-dir", default=None,
                   help="latent cache directory (default RUN_DIR/interp/latent_cache/w<window-len>-n<n-windows>)")
    d.add_argument("--device", default="cpu", help="device of the model and the SAE (cpu, cuda, cuda:1, mps)")


def interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves behind (cli.main prints it)."""
    return ("a finished latent cache is kept and reused, but the dashboard may be incomplete: run the same command "
            "again (with --force if it then refuses --out)")


def run(args: argparse.Namespace) -> int:
    from .. import progress
    from ..errors import ConfigError
    from ..interp.cost import window_count
    from ..interp.dashboard import check_dashboard_out, write_dashboard
    from ..interp.pipeline import ensure_cache, resolve_run

    if args.n_buckets is not None and args.n_buckets < 1:
        raise ConfigError(f"--n-buckets must be ≥ 1, got {args.n_buckets}")
    info = resolve_run(args.run_dir, args.model, args.hook, args.corpus)
    out = Path(args.out) if args.out else Path(args.run_dir) / "dashboard"
    check_dashboard_out(out, args.force)  # before the latent cache is built
    window_len = args.window_len or info.context_length or 128
    n_windows, budget = window_count(args.n_windows)
    cache = ensure_cache(info, n_windows=n_windows, window_len=window_len,
                         batch_size=args.batch_size, cache_dir=args.cache_dir, device=args.device, seed=args.seed,
                         progress=progress.enabled(), time_budget_s=budget)
    latents = [int(x) for x in args.latents.split(",") if x] if args.latents else None
    html, shown = write_dashboard(cache, out, latents, n_latents=args.n_latents, order=args.order, seed=args.seed,
                                  force=args.force,
                                  title=f"probsae · {info.label}", run_dir=info.run_dir, n_top=args.n_top,
                                  n_per_bucket=args.per_bucket, n_buckets=args.n_buckets,
                                  context_left=args.context_left, context_right=args.context_right,
                                  progress=progress.enabled())
    why = " (the latents autointerp scored)" if args.order == "interp" and not latents else ""
    print(f"wrote {html} ({shown} latents{why}, {cache.n_windows} windows × {cache.window_len} tokens); "
          f"{cache.manifest.get('n_tokens', 0):,} tokens encoded; "
          f"open file://{html.resolve()}")
    return 0
