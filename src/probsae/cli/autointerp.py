"""``probsae autointerp RUN_DIR [RUN_DIR ...]``: explain and score latents per activation
percentile bucket; writes Table 2 (Markdown + JSON) and the Figure 5 plot."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from pathlib import Path

from .main import Terminated

NAME = "autointerp"
HELP = ("Automatic interpretability by activation percentile (paper Table 2 / Figure 5): latent "
        "cache, per-bucket explanations (LLM or offline top-tokens baseline), detection or "
        "embedding scores.")


DEFAULT_TIMEOUT = 60.0


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.replace(" ", "").split(",") if x]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by 'probsae train'")
    p.add_argument("--out", default=None, help="where Table 2 and Figure 5 go (default: next to the run's summary.json "
                   "in RUN_DIR/interp/<scorer>-<explainer>-<settings hash>/ for one run, ./autointerp/<...> for several); "
                   "a directory holding results of other settings, or files that are not autointerp results, is refused")
    p.add_argument("--force", action="store_true",
                   help="write into --out even if it holds files that are not autointerp results (they may be overwritten)")
    p.add_argument("--labels", default=None, help="comma-separated run labels (default: directory names)")
    g = p.add_argument_group("method")
    g.add_argument("--scorer", choices=("detection", "embedding"), default="detection",
                   help="detection: LLM classifies windows (paper); embedding: MiniLM ROC-AUC, offline")
    g.add_argument("--explainer", choices=("llm", "top-tokens"), default="llm",
                   help="llm: chat model writes explanations; top-tokens: non-LLM baseline listing frequent firing tokens")
    g.add_argument("--n-latents", type=int, default=150, help="random alive latents per run (paper: 150)")
    g.add_argument("--latents", type=_ints, default=None, help="explicit comma-separated latent ids instead")
    g.add_argument("--n-buckets", type=int, default=5, help="activation percentile buckets")
    g.add_argument("--n-explain", type=int, default=10, help="explanation examples per bucket")
    g.add_argument("--n-test", type=int, default=10, help="held-out activating test examples per bucket")
    g.add_argument("--n-nonact", type=int, default=None, help="non-activating test examples per bucket (default: --n-test)")
    g.add_argument("--examples-per-prompt", type=int, default=5, help="detection examples per prompt")
    g.add_argument("--judge-format", choices=("list", "yes-no"), default="list",
                   help="detection prompts: list (the paper's: several excerpts, a JSON list of 0/1) or yes-no "
                   "(one excerpt per prompt, the reply's first word Yes or No; for small local models)")
    g.add_argument("--explanation-format", choices=("strict", "lenient"), default="strict",
                   help="LLM explanations: strict (an EXPLANATION: line, else a failure) or lenient (else the "
                   "reply's first sentence, unless empty, an echo of the prompt, copied from an excerpt or a repetition loop; "
                   "counted; for small local models)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of the window sample, the latent choice, the examples and their order")
    d = p.add_argument_group("data (default: what the run directory records)")
    d.add_argument("--model", default=None, help="model name/path (e.g. minilm, gpt2)")
    d.add_argument("--hook", default=None, help="hook point (e.g. resid_post.3)")
    d.add_argument("--corpus", default=None, help="corpus spec (pydoc, a .txt/.jsonl/.parquet file, hf:NAME)")
    d.add_argument("--n-windows", type=int, default=None, help="token windows encoded into the latent cache (default "
                   "4096, capped to what the model encodes in 10 min at the speed measured on the first batch)")
    d.add_argument("--window-len", type=int, default=32, help="tokens per window")
    d.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    d.add_argument("--cache-dir", default=None, help="latent cache directory (one run only; default "
                   "RUN_DIR/interp/latent_cache/w<window-len>-n<n-windows>)")
    d.add_argument("--device", default="cpu", help="device of the model and the SAE (cpu, cuda, cuda:1, mps)")
    llm = p.add_argument_group("LLM endpoint (OpenAI-compatible; defaults from PROBSAE_LLM_BASE_URL, "
                               "PROBSAE_LLM_MODEL, PROBSAE_LLM_API_KEY/OPENAI_API_KEY)")
    llm.add_argument("--llm", default=None, metavar="local:NAME",
                     help="start `transformers serve` on 127.0.0.1 for this run and stop it at the end: "
                     "local:smollm2 (SmolLM2-135M-Instruct, offline) or local:PATH (a local model folder or GGUF "
                     "file); needs the 'serve' extra. Instead of --llm-base-url/--llm-model")
    llm.add_argument("--llm-log", default=None, help="log file of the --llm local server (default: a temporary file)")
    llm.add_argument("--llm-continuous-batching", action=argparse.BooleanOptionalAction, default=True,
                     help="--llm local: serve with continuous batching, which batches the concurrent requests "
                     "(6 requests on 2 CPU cores: 2.8x faster than one at a time; without it, concurrent requests "
                     "thrash)")
    llm.add_argument("--llm-base-url", default=None, help="e.g. http://localhost:8000/v1")
    llm.add_argument("--llm-model", default=None, help="model name sent with each request")
    llm.add_argument("--llm-api-key-env", default=None, help="name of the environment variable holding the API key")
    llm.add_argument("--llm-concurrency", type=int, default=8, help="requests in flight at once")
    llm.add_argument("--llm-timeout", type=float, default=None,
                     help="total seconds per HTTP attempt (connect, send, wait and read the whole reply; "
                     f"default {DEFAULT_TIMEOUT:.0f}; with --llm local, interp.local_llm.LOCAL_TIMEOUT, 900: a CPU-served model is slow)")
    llm.add_argument("--llm-max-tokens", type=int, default=None,
                     help="upper bound on every request's max_tokens (default: none; explanations ask for 400, "
                     "detection answers 64): keeps a slow local model that never writes its EXPLANATION: line "
                     "from generating 400 tokens per explanation")
    llm.add_argument("--llm-retries", type=int, default=4, help="retries of a failed request")
    llm.add_argument("--llm-cache", default=None, help="response cache directory (default RUN_DIR/interp/llm_cache; "
                     "several runs: next to OUT)")


def interrupted_message(cfg, how: str = "interrupted") -> str:
    """What Ctrl-C (or SIGTERM: ``how``) leaves behind: no table, and the LLM replies saved in the
    response cache, which a rerun of the same command reuses instead of requesting them again."""
    head = f"probsae autointerp: {how}; no Table 2 was written"
    cache = Path(cfg.llm.cache_dir) if cfg.llm.cache_dir else None
    n = sum(1 for _ in cache.glob("*/*.json")) if cache is not None and cache.is_dir() else 0
    if n:
        return (f"{head}. The LLM replies received so far are saved in the response cache {cache} ({n} in all): "
                "rerun the same command to resume; cached replies are not requested again")
    return f"{head} and no LLM reply was saved: rerun the same command to start again (a completed latent cache is reused)"


def interrupted(args: argparse.Namespace) -> str:
    """Ctrl-C before the LLM calls (cli.main prints it; once they start, :func:`interrupted_message`)."""
    return "no Table 2 was written: run the same command again (a finished latent cache is reused)"


def run(args: argparse.Namespace) -> int:
    from .. import progress
    from ..errors import ConfigError
    from ..extras import require
    from ..interp.cost import window_count
    from ..interp.llm_client import LLMConfig
    from ..interp.local_llm import LOCAL_TIMEOUT, LocalLLMConfig, LocalLLMServer, parse_llm_spec
    from ..interp.pipeline import AutoInterpConfig, autointerp_runs, resolve_run

    require("plot")  # Figure 5: fail now, not after the LLM calls
    if args.scorer == "embedding":
        require("minilm")

    if args.cache_dir and len(args.run_dirs) > 1:
        raise ConfigError("--cache-dir applies to a single run; each run gets RUN_DIR/interp/latent_cache")
    labels = args.labels.split(",") if args.labels else [Path(r).resolve().name for r in args.run_dirs]
    if len(labels) != len(args.run_dirs):
        raise ConfigError(f"--labels has {len(labels)} names for {len(args.run_dirs)} runs")
    if len(set(labels)) != len(labels):
        labels = [f"{l}#{i}" for i, l in enumerate(labels)]
    local = parse_llm_spec(args.llm) if args.llm else None
    if local and (args.llm_base_url or args.llm_model or args.llm_api_key_env):
        raise ConfigError("--llm local:NAME starts its own endpoint: leave out --llm-base-url, --llm-model "
                          "and --llm-api-key-env")
    api_key = os.environ.get(args.llm_api_key_env) if args.llm_api_key_env else None
    timeout = args.llm_timeout or (LOCAL_TIMEOUT if local else DEFAULT_TIMEOUT)
    llm = LLMConfig.from_env(base_url=args.llm_base_url, model=args.llm_model, api_key=api_key,
                             concurrency=args.llm_concurrency, timeout=timeout,
                             max_retries=args.llm_retries, cache_dir=args.llm_cache,
                             max_tokens_limit=args.llm_max_tokens)
    n_windows, budget = window_count(args.n_windows)
    cfg = AutoInterpConfig(scorer=args.scorer, explainer=args.explainer, n_latents=args.n_latents,
                           latents=args.latents, n_buckets=args.n_buckets, n_explain=args.n_explain,
                           n_test=args.n_test, n_nonact=args.n_nonact,
                           examples_per_prompt=args.examples_per_prompt, judge_format=args.judge_format,
                           explanation_format=args.explanation_format, seed=args.seed,
                           n_windows=n_windows, window_len=args.window_len, time_budget_s=budget,
                           batch_size=args.batch_size, cache_dir=args.cache_dir, device=args.device,
                           progress=progress.enabled(), llm=llm)
    # with --llm local the endpoint exists only once the server runs: check the rest before starting it
    (dataclasses.replace(cfg, llm=dataclasses.replace(llm, base_url="http://127.0.0.1:1/v1", model=local))
     if local else cfg).validate()
    infos = [resolve_run(r, args.model, args.hook, args.corpus, label=l) for r, l in zip(args.run_dirs, labels)]
    server = (LocalLLMServer(LocalLLMConfig(local, log_path=args.llm_log, device=args.device,
                                            continuous_batching=args.llm_continuous_batching,
                                            progress=cfg.progress))
              if local else contextlib.nullcontext())
    try:
        with server:
            if local:
                server.llm_config(cfg.llm)
                cfg.validate()
            res = autointerp_runs(infos, cfg, args.out, force=args.force)
    except (KeyboardInterrupt, Terminated) as e:
        term = isinstance(e, Terminated)
        print(interrupted_message(cfg, "terminated (SIGTERM)" if term else "interrupted"), file=sys.stderr, flush=True)
        return 143 if term else 130
    print(Path(res["markdown"]).read_text())
    for r in res["rows"]:
        print(f"{r['label']}: rests on {r.get('n_windows')} windows × {r.get('window_len')} tokens "
              f"({r.get('n_tokens') or 0:,} encoded tokens)")
        fails = []
        if r.get("explanation_failures"):
            fails.append(f"{r['explanation_failures']} explanation(s) failed")
        if r.get("explanations_lenient"):
            fails.append(f"{r['explanations_lenient']} explanation(s) taken leniently (no EXPLANATION: line)")
        if r.get("detection_failed_prompts"):
            fails.append(f"{r['detection_failed_prompts']}/{r['detection_prompts']} detection prompt(s) failed")
        if r.get("n_unscored"):
            fails.append(f"{r['n_unscored']} bucket(s) unscored")
        if fails:
            print(f"{r['label']}: " + "; ".join(fails) + f" (LLM stats: {r.get('llm')})")
    print(f"wrote {res['markdown']}, {res['json']}, {res['plot']}")
    return 0
