"""``probsae dashboard RUN_DIR``: a static, offline HTML feature browser for a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "dashboard"
HELP = ("Write a self-contained HTML feature browser (top and per-percentile contexts shaded by "
        "activation, histograms, density, gate probabilities for prob_topk).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by 'probsae train'")
    p.add_argument("--out", default=None, help="output directory (default RUN_DIR/dashboard); open OUT/index.html")
    p.add_argument("--n-latents", type=int, default=100, help="latents to include")
    p.add_argument("--latents", default=None, help="explicit comma-separated latent ids")
    p.add_argument("--order", choices=("random", "frequent", "id", "interp"), default="random",
                   help="which alive latents to include (interp: those scored by 'probsae autointerp')")
    p.add_argument("--n-top", type=int, default=10, help="top-activating contexts per latent")
    p.add_argument("--per-bucket", type=int, default=3, help="examples per activation-percentile bucket")
    p.add_argument("--n-buckets", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    d = p.add_argument_group("data (default: what the run directory records; the latent cache of "
                             "'probsae autointerp' is reused when present)")
    d.add_argument("--model", default=None)
    d.add_argument("--hook", default=None)
    d.add_argument("--corpus", default=None)
    d.add_argument("--n-windows", type=int, default=4096)
    d.add_argument("--window-len", type=int, default=32)
    d.add_argument("--batch-size", type=int, default=16)
    d.add_argument("--cache-dir", default=None, help="latent cache directory (default RUN_DIR/interp/latent_cache)")
    d.add_argument("--device", default="cpu")
    p.add_argument("--progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..interp.dashboard import write_dashboard
    from ..interp.pipeline import AutoInterpConfig, ensure_cache, resolve_run

    info = resolve_run(args.run_dir, args.model, args.hook, args.corpus)
    cfg = AutoInterpConfig(scorer="embedding", explainer="top-tokens", n_windows=args.n_windows,
                           window_len=args.window_len, batch_size=args.batch_size,
                           cache_dir=args.cache_dir, device=args.device, progress=args.progress,
                           seed=args.seed)
    cache = ensure_cache(info, cfg)
    latents = [int(x) for x in args.latents.split(",") if x] if args.latents else None
    out = Path(args.out) if args.out else Path(args.run_dir) / "dashboard"
    html = write_dashboard(cache, out, latents, n_latents=args.n_latents, order=args.order, seed=args.seed,
                           title=f"probsae · {info.label}", run_dir=info.run_dir, n_top=args.n_top,
                           n_per_bucket=args.per_bucket, n_buckets=args.n_buckets)
    print(f"wrote {html} ({len(latents) if latents else min(args.n_latents, cache.stats().alive.sum())} latents); "
          f"open file://{html.resolve()}")
    return 0
