"""The one path of ``probsae train`` and ``probsae sweep``: specs → data source → training → results.

``train_run`` (one run, or a comma-list grid) and ``probsae.experiments.sweep.run_sweep`` (each
pass of a sweep) both go through it: ``session`` (distributed setup and the run-directory locks),
a ``DataSource`` (``probsae.runs.source``), ``train_group`` (build the SAEs, train them together on
the source's batches) and ``record_group`` (held-out evaluation into each ``metrics.json``)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .source import DataSource
from .spec import RunSpec


@contextmanager
def session(train_cfg, dirs: list[Path], command: str | None) -> Iterator[Any]:
    """The distributed context of a group of runs (``training.distributed.setup``; one process
    without torchrun), with every run directory in ``dirs`` locked for the whole block by the
    writing rank (``probsae.runs.lock``: one writer per run directory)."""
    from ..training import distributed
    from .lock import locked_run_dirs

    ctx = distributed.setup(train_cfg)  # under torchrun: only rank 0 extracts and writes
    with locked_run_dirs(dirs if ctx.is_main else [], command):
        yield ctx


@dataclass
class Trained:
    """SAEs trained together on one data source."""

    saes: list
    """The trained SAEs, in the order of the specs."""
    histories: list
    """Their training histories (``TrainHistory``)."""
    seconds: float
    """Wall time of the training call."""


def build_saes(specs: list[RunSpec], source: DataSource, metadata: Callable[[RunSpec], Any]) -> list:
    """The untrained SAEs of ``specs`` for the source's row widths, each with its ``metadata``
    (saved in config.json: model, hook point, windows, corpus). Raises before anything is trained
    when a shape is impossible (e.g. k larger than d_sae)."""
    saes = [s.build_sae(source.width(s.data.hook)) for s in specs]
    for s, sae in zip(specs, saes):
        sae.metadata = metadata(s)
    return saes


def train_group(specs: list[RunSpec], saes: list, dirs: list[Path], source: DataSource, cfg,
                on_checkpoint: Callable[[int, Any], None] | None = None) -> Trained:
    """Train ``saes`` together on ``source`` for ``cfg.steps``, resuming each from its run
    directory's checkpoint; a stream feeds each SAE its spec's hook point."""
    from ..training import train

    hooks = [s.data.hook for s in specs] if source.stream is not None else None
    t0 = time.perf_counter()
    histories = train(saes, source.train, cfg, run_dirs=dirs, hooks=hooks, on_checkpoint=on_checkpoint)
    return Trained(saes, histories, time.perf_counter() - t0)


def record_group(specs: list[RunSpec], names: list[str], dirs: list[Path], saes: list, source: DataSource, cfg,
                 **record: Any) -> list[dict[str, Any]]:
    """Evaluate each trained SAE on its hook point's held-out cache and write its metrics.json
    (``probsae.runs.results.record_run`` with the keyword arguments ``record``; a callable value is
    called with the spec's index). Returns the metrics."""
    from .results import record_run

    out = []
    for i, (s, name, d, sae) in enumerate(zip(specs, names, dirs, saes)):
        kw = {k: v(i) if callable(v) else v for k, v in record.items()}
        out.append(record_run(d, name, s.architecture, s.hparams, sae, source.held(s.data.hook), cfg, **kw))
    return out


def throughput(source: DataSource, tokens: int, seconds: float) -> dict[str, Any]:
    """Training tokens/s of a group (and, streaming, the model forward's share and tokens/s)."""
    out: dict[str, Any] = {"train_tokens": int(tokens), "train_seconds": round(seconds, 3),
                           "train_tokens_per_s": round(tokens / max(seconds, 1e-9), 1)}
    stream = source.stream
    if stream is not None:
        fwd = stream.forward_seconds
        out.update({"extracted_tokens": stream.tokens_in, "forward_seconds": round(fwd, 3),
                    "extract_tokens_per_s": round(stream.tokens_in / max(fwd, 1e-9), 1)})
    return out
