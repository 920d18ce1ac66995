"""The data source of a group of runs: where its training batches and held-out activations come
from (a model stream, or activation caches), how many steps it trains, and its row widths.

``open_source`` serves ``probsae train`` (one run or a comma-list grid); ``cached_source`` serves
a sweep, whose caches ``probsae.experiments.sweep.prepare_data`` finds or extracts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigError
from .spec import RunSpec


@dataclass
class DataSource:
    """The activations a group of runs trains and is evaluated on."""

    train: Any
    """Training batches: an activation cache, or a ``ModelStream`` straight from the model."""
    heldout: dict[str, Any]
    """The held-out activation cache of every hook point (what ``probsae eval`` reads too)."""
    steps: int
    """Optimiser steps of the group (the training config's, else from the tokens available)."""
    n_train: int | None = None
    """Cached training tokens; None when the batches come straight from the model."""
    handle: Any = None
    """The model, when it was loaded here (streaming, or kept for CE/KL at the end); else None."""
    seconds: float = 0.0
    """Wall time spent getting the activations ready (extraction or opening the caches)."""
    hooks: list[str] = field(default_factory=list)
    """The hook points, in the order of the specs."""

    @property
    def stream(self):
        """The model stream (None when training on a cache)."""
        return self.train if self.n_train is None else None

    def held(self, hook: str | None = None):
        """The held-out cache of ``hook`` (a source of one hook point answers for any spec)."""
        return next(iter(self.heldout.values())) if len(self.heldout) == 1 else self.heldout[hook]

    def width(self, hook: str | None = None) -> int:
        """Width of the rows at ``hook``: the activation's, or with a target hook the [input | target]
        pair's. Read from the held-out cache the extraction already made (no extra model forward)."""
        return int(self.held(hook).d_in)


def steps_for(spec: RunSpec, n_train: int | None) -> int:
    """Optimiser steps: ``spec.train.steps``, else ``epochs`` passes over the ``n_train`` cached
    tokens, else (streaming) ``data.max_tokens`` worth of batches."""
    batch = spec.train.batch_size
    if spec.train.steps:
        return spec.train.steps
    if n_train is None:
        return max(1, spec.data.max_tokens // batch)
    return max(1, int(spec.epochs * n_train) // batch)


def open_source(specs: list[RunSpec], ctx, device, keep_model: bool) -> DataSource:
    """The data source of ``probsae train``: a model stream at every hook point of ``specs``
    (``spec.stream``), else the caches of the first spec (extracted once by the main rank).
    ``keep_model``: load the model here and keep it (CE/KL at the end)."""
    t0 = time.perf_counter()
    src = _streamed(specs, ctx, device) if specs[0].stream else _cached(specs[0], ctx, device, keep_model)
    src.seconds = time.perf_counter() - t0
    return src


def _streamed(specs: list[RunSpec], ctx, device) -> DataSource:
    from ..data.prepare import model_stream, prepare_caches
    from ..training import distributed

    first = specs[0]
    hooks = list(dict.fromkeys(s.data.hook for s in specs))
    batch = first.train.batch_size
    handle = first.data.load(device)
    stream = model_stream(first.data, batch, handle, hooks, first.stream_buffer * batch, first.train.seed)
    # held-out tokens: the small held-out cache `probsae eval` reads too, so both report the same numbers
    heldout = {h: distributed.main_first(ctx, lambda h=h: prepare_caches(
        replace(first.data, hook=h), first.cache_dir, progress=False, parts=("holdout",), handle=handle))[0]
        for h in hooks}
    return DataSource(stream, heldout, steps_for(first, None), handle=handle, hooks=hooks)


def _cached(first: RunSpec, ctx, device, keep_model: bool) -> DataSource:
    from ..data.prepare import prepare_caches
    from ..training import distributed

    # A causal LM measures CE/KL at the end: load it once, for the extraction and for that.
    handle = first.data.load(device) if ctx.is_main and keep_model else None
    # rank 0 extracts, the others then open the caches (run `probsae cache` first for long extractions)
    train, held = distributed.main_first(
        ctx, lambda: prepare_caches(first.data, first.cache_dir, progress=ctx.is_main, device=device, handle=handle))
    batch = first.train.batch_size
    if train.n_tokens < batch:
        raise ConfigError(f"the training cache has {train.n_tokens} tokens, fewer than batch_size={batch}")
    return cached_source(first, train, held, handle=handle)


def cached_source(spec: RunSpec, train, held, handle=None) -> DataSource:
    """A source over existing caches (``train``, held-out ``held``) for runs like ``spec``."""
    hook = spec.data.hook
    return DataSource(train, {hook: held}, steps_for(spec, train.n_tokens), n_train=train.n_tokens,
                      handle=handle, hooks=[hook])
