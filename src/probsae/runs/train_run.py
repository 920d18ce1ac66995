"""``probsae train`` as a function: prepare activations, train with resume, evaluate, plot."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..progress import say as _say
from .spec import METRICS_FILE, PLOT_FILE, RUN_FILE, RunSpec, data_metadata, differences, read_spec, write_spec


def train_run(spec: RunSpec, run_dir: str | Path, command: str | None = None) -> dict[str, Any]:
    """Train ``spec`` into ``run_dir``: weights + config.json, run.json, log.jsonl, checkpoint.pt,
    metrics.json (held-out evaluation) and training.png. Resumes from the run directory's
    checkpoint when there is one; refuses a run directory that holds a different run."""
    from .. import build_sae, evaluate, train
    from ..data.prepare import activation_stream, prepare_caches, rebatch
    from ..training import distributed
    from ..extras import missing_extra_message, plots_available
    from ..io import atomic_write_json
    from .plot import plot_training

    run_dir = Path(run_dir)
    ctx = distributed.setup(spec.train)  # under torchrun: only rank 0 extracts and writes
    if (run_dir / RUN_FILE).is_file():
        old = read_spec(run_dir)
        diff = differences(old.comparable(), spec.comparable())
        if diff:
            raise ConfigError(f"{run_dir} holds a different run (differs in: {', '.join(diff)}); "
                              "use another --out or delete that directory")
        _say(f"resuming the run in {run_dir}")
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
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

    d_sae = spec.d_sae or spec.expansion * d_in
    sae = build_sae(spec.architecture, d_in=d_in, d_sae=d_sae, **spec.hparams)
    sae.metadata = data_metadata(spec.data)
    cfg = replace(spec.train, steps=steps, extra={**spec.train.extra, "model": spec.data.model,
                                                   "hook": spec.data.hook, "corpus": spec.data.corpus})
    if ctx.is_main:
        _say(f"training {spec.architecture} (d_in {d_in}, d_sae {d_sae}, {spec.hparams}) for {steps} steps × "
             f"{cfg.batch_size} tokens" + (f" ({steps * cfg.batch_size / n_train:.1f} passes over {n_train:,} cached tokens)" if n_train else ""))
    title = f"{spec.architecture} {spec.hparams} — {spec.data.model} {spec.data.hook}"

    def redraw(_i: int, hist) -> None:  # training.png at every checkpoint, not only at the end
        plot_training(hist.records, run_dir / PLOT_FILE, title, d_sae, architecture=spec.architecture, final=False)

    t1 = time.perf_counter()
    history = train(sae, train_data, cfg, run_dirs=[run_dir], on_checkpoint=redraw if plots_available() else None)
    t_train = time.perf_counter() - t1
    if not ctx.is_main:
        return {}

    metrics = evaluate(sae, eval_data, batch_size=4096)
    final = history.final
    result = {
        "run_dir": str(run_dir),
        "architecture": spec.architecture, "hparams": spec.hparams, "d_in": d_in, "d_sae": d_sae,
        "model": spec.data.model, "hook": spec.data.hook, "corpus": spec.data.corpus,
        "heldout": metrics,
        "train_final": {k: final.get(k) for k in ("step", "tokens", "loss", "explained_variance", "l0", "alive", "dead",
                                                       "alive_recent", "alive_window", "beta") if k in final},
        "seconds": {"data": round(t_data, 1), "train": round(t_train, 1)},
    }
    atomic_write_json(run_dir / METRICS_FILE, result)
    if plots_available():
        plot_training(history.records, run_dir / PLOT_FILE, title, d_sae, architecture=spec.architecture,
                      heldout_alive=metrics["alive"])
    else:
        _say(f"{PLOT_FILE} not drawn: {missing_extra_message('plot')}")
    return result
