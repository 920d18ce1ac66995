"""``probsae serve RUN_DIR``: the live feature browser on 127.0.0.1 (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse

NAME = "serve"
HELP = ("Live feature browser on 127.0.0.1: a text's latents, latent pages (flags, position histogram, contexts, "
        "logit effects, explanation), search over every latent, steering a causal LM with a latent. Ctrl-C stops it.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory to browse (written by 'probsae train')")
    from ..browser.app import ServeConfig
    from ..fielddocs import field_docs
    from .options import add_dataclass_options

    add_dataclass_options(p, ServeConfig, skip={"allow_remote"})
    p.add_argument("--allow-remote", action="store_true", help=field_docs(ServeConfig)["allow_remote"])
    d = p.add_argument_group("latent cache (as 'probsae dashboard' builds it, and reused from it)")
    d.add_argument("--n-windows", type=int, default=None, help="windows encoded (default 4096, capped to what the "
                   "model encodes in 10 min at the speed measured on the first batch)")
    d.add_argument("--window-len", type=int, default=None, help="tokens per window (default: the run's training context)")
    d.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    d.add_argument("--cache-dir", default=None, help="latent cache directory (default RUN_DIR/interp/latent_cache/"
                   "w<window-len>-n<n-windows>; give one elsewhere for a run directory you may not write)")
    d.add_argument("--seed", type=int, default=0, help="seed of the window sample and the bucket examples")
    d.add_argument("--device", default="cpu", help="device of the model and the SAE (cpu, cuda, cuda:1, mps)")


def interrupted(args: argparse.Namespace) -> str:
    return "a finished latent cache is kept and reused: run the same command again to serve"


def run(args: argparse.Namespace) -> int:
    from .. import progress
    from ..browser import Browser, ServeConfig, bind, server
    from ..extras import require

    require("serve")
    cfg = ServeConfig(**{k: getattr(args, k) for k in ("host", "port") if getattr(args, k) is not None},
                      allow_remote=args.allow_remote)
    cfg.validate()   # before the latent cache is built
    browser = Browser.open(args.run_dir, n_windows=args.n_windows, window_len=args.window_len,
                           batch_size=args.batch_size, cache_dir=args.cache_dir, device=args.device, seed=args.seed,
                           progress=progress.enabled())
    sock = bind(cfg)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {args.run_dir} ({browser.cache.n_windows:,} windows × {browser.cache.window_len} tokens, "
          f"{browser.cache.manifest.get('n_tokens', 0):,} tokens encoded; latent cache {browser.cache.path}) "
          f"at http://{shown}:{port}/ — Ctrl-C stops it", flush=True)
    try:
        server(browser).run(sockets=[sock])   # Ctrl-C: uvicorn shuts down, then re-raises the signal
    except KeyboardInterrupt:
        pass
    print("stopped", flush=True)
    return 0
