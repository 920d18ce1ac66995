"""``probsae train`` as a function: prepare activations, train with resume, evaluate, plot."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .results import record_run
from .spec import PLOT_FILE, RUN_FILE, RunSpec, differences, read_spec, write_spec


def _say(msg: str) -> None:
    print(f"[probsae] {msg}", file=sys.stderr, flush=True)


def train_run(spec: RunSpec, run_dir: str | Path, command: str | None = None, force: bool = False) -> dict[str, Any]:
    """Train ``spec`` into ``run_dir``: weights + config.json, run.json, log.jsonl,
    checkpoint.safetensors, metrics.json (held-out evaluation, ``probsae.runs.results``) and
    training.png; returns the metrics. Resumes from the run directory's checkpoint when there is
    one; refuses a run directory that holds a different run, and a non-empty directory that is not
    a probsae run unless ``force``. Every option is validated before any activation is extracted."""
    from ..data.prepare import activation_stream, prepare_caches, rebatch
    from ..io import check_output_dir, check_writable_dir
    from ..training import distributed, train
    from .plot import plot_training

    run_dir = Path(run_dir)
    spec.validate()
    check_output_dir(run_dir, lambda p: (p / RUN_FILE).is_file(), force, "probsae run directory")
    ctx = distributed.setup(spec.train)  # under torchrun: only rank 0 extracts and writes
    if (run_dir / RUN_FILE).is_file():
        old = read_spec(run_dir)
        diff = differences(old.comparable(), spec.comparable())
        if diff:
            raise ConfigError(f"{run_dir} holds a different run (differs in: {', '.join(diff)}); "
                              "use another --out or delete that directory")
        _say(f"resuming the run in {run_dir}")
    if ctx.is_main:
        check_writable_dir(run_dir, "run directory")
        write_spec(run_dir, spec, command)

    t0 = time.perf_counter()
    if spec.stream:
        if spec.train.steps is None and spec.data.max_tokens is None:
            raise ConfigError("streaming without a cache needs --steps or --max-tokens")
        from ..data.models import load_model

        handle = load_model(spec.data.model, device=spec.data.device)
        train_data = rebatch(activation_stream(spec.data, "train", handle), spec.train.batch_size,
                             shuffle_buffer=8, seed=spec.train.seed)
        eval_data = list(activation_stream(spec.data, "holdout", handle))
        d_in = handle.d_model
        steps = spec.train.steps or max(1, spec.data.max_tokens // spec.train.batch_size)
        n_train = None
    else:
        # rank 0 extracts, the others then open the caches (run `probsae cache` first for long extractions)
        train_data, eval_data = distributed.main_first(
            ctx, lambda: prepare_caches(spec.data, spec.cache_dir, progress=ctx.is_main))
        d_in, n_train = train_data.d_in, train_data.n_tokens
        steps = spec.train.steps or max(1, int(spec.epochs * n_train) // spec.train.batch_size)
        if n_train < spec.train.batch_size:
            raise ConfigError(f"the training cache has {n_train} tokens, fewer than batch_size={spec.train.batch_size}")
    t_data = time.perf_counter() - t0

    sae = spec.build_sae(d_in)
    d_sae = sae.d_sae
    cfg = replace(spec.train, steps=steps, extra={**spec.train.extra, "model": spec.data.model,
                                                   "hook": spec.data.hook, "corpus": spec.data.corpus})
    if ctx.is_main:
        _say(f"training {spec.architecture} (d_in {d_in}, d_sae {d_sae}, {spec.hparams}) for {steps} steps × "
             f"{cfg.batch_size} tokens" + (f" ({steps * cfg.batch_size / n_train:.1f} passes over {n_train:,} cached tokens)" if n_train else ""))
    t1 = time.perf_counter()
    history = train(sae, train_data, cfg, run_dirs=[run_dir])
    t_train = time.perf_counter() - t1
    if not ctx.is_main:
        return {}

    result = record_run(run_dir, run_dir.name, spec.architecture, spec.hparams, sae, eval_data, cfg,
                        data={"model": spec.data.model, "hook": spec.data.hook, "corpus": spec.data.corpus},
                        seconds={"data": round(t_data, 1), "train": round(t_train, 1)})
    plot_training(history.records, run_dir / PLOT_FILE,
                  f"{spec.architecture} {spec.hparams} — {spec.data.model} {spec.data.hook}", d_sae)
    return result
