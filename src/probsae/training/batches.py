"""Turn what the user passes as ``data`` into a resumable stream of training batches.

A batch is a (B, d_in) tensor, or a dict ``{hook: (B, d_hook) tensor}`` when one model forward
feeds several hook points (``probsae.data.sources``: where batches come from); ``bind_hooks``/``pick``
give each SAE its tensor."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch import Tensor

from ..data.sources import Batch, BatchSource, ResumableSource, batch_source
from ..errors import ConfigError, InputError


def bind_hooks(hooks: Sequence[str | None] | str | None, n: int) -> list[str | None]:
    """One dict key (or None: the batch itself / a dict's only entry) per SAE."""
    if hooks is None or isinstance(hooks, str):
        return [hooks] * n
    hooks = list(hooks)
    if len(hooks) != n:
        raise ConfigError(f"got {len(hooks)} hooks for {n} SAEs: give one hook per SAE (or one for all)")
    return hooks


def pick(batch: Batch, key: str | None) -> Tensor:
    """The tensor an SAE bound to ``key`` trains on."""
    if isinstance(batch, Tensor):
        if key is not None:
            raise ConfigError(f"an SAE is bound to hook {key!r}, but the data yields plain tensors, not "
                              "{hook: tensor} dicts: leave hooks out")
        return batch
    if key is None:
        if len(batch) == 1:
            return next(iter(batch.values()))
        raise ConfigError(f"the data yields batches for several hooks {sorted(batch)}: pass hooks= "
                          "to say which one each SAE trains on")
    if key not in batch:
        raise ConfigError(f"an SAE is bound to hook {key!r}, but the data yields batches for {sorted(batch)}")
    return batch[key]


def map_batch(fn: Callable[[Tensor], Any], batch: Batch) -> Any:
    """``fn`` applied to a tensor batch, or to every entry of a dict batch."""
    if isinstance(batch, dict):
        return {k: fn(v) for k, v in batch.items()}
    return fn(batch)


def batch_rows(batch: Batch) -> int:
    """Tokens (rows) in a batch."""
    t = batch if isinstance(batch, Tensor) else next(iter(batch.values()))
    return int(t.shape[0])


class TrainingBatches:
    """The resumable stream of training batches from ``data`` (any ``data.sources.batch_source``:
    a tensor, an activation cache, a model stream or an iterable of batches), pass after pass.

    ``batches(start_step)`` skips the first ``start_step`` batches deterministically (resume);
    a ``ResumableSource`` (a model stream) restarts at a recorded position instead, without
    replaying the batches before it."""

    def __init__(self, data, batch_size: int, seed: int):
        self.source: BatchSource = batch_source(data)
        self.batch_size, self.seed = batch_size, seed
        self.source.check(batch_size)

    @property
    def streaming(self) -> bool:
        """True for a source that records and restarts at its own position (a model stream)."""
        return isinstance(self.source, ResumableSource)

    def default_steps(self) -> int:
        return self.source.steps_per_pass(self.batch_size)

    def checkpoint_extra(self) -> dict:
        """What a checkpoint written now must hold to resume the data here (JSON-serialisable):
        a streaming source's position, else nothing (other sources resume by skipping batches)."""
        return {"stream": self.source.position()} if self.streaming else {}

    def batches(self, start_step: int = 0, resume_state: dict | None = None) -> Iterator[Batch]:
        skipped = 0
        epoch = 0
        resumed = self.streaming and resume_state is not None
        if resumed:
            start_step = 0  # the stream restarts at its recorded position: nothing to skip
        while True:
            produced = False
            first = (self.source.resume(resume_state) if resumed and epoch == 0
                     else self.source.epoch(epoch, self.batch_size, self.seed))
            for batch in first:
                produced = True
                if skipped < start_step:
                    skipped += 1
                    continue
                yield batch
            if not produced:
                if epoch == 0 and resumed:
                    pass  # resumed at the very end of a pass: the next pass starts from the beginning
                elif epoch == 0 or not self.source.one_shot:
                    raise InputError("training data yielded no batches (empty data)")
                else:
                    raise InputError(f"training data ran out after {skipped} batches; set steps or pass re-iterable data")
            epoch += 1

    def peek(self) -> Batch:
        """The first batch (for data-dependent initialisation); a one-shot iterator keeps it."""
        return self.source.first(self.batch_size, self.seed)
