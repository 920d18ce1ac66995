"""Turn what the user passes as ``data`` into a resumable stream of batches.

A batch is a (B, d_in) tensor, or a dict ``{hook: (B, d_hook) tensor}`` when one model forward
feeds several hook points; ``bind_hooks``/``pick`` give each SAE its tensor."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError, InputError

Batch = Tensor | dict[str, Tensor]


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


def _is_batch(b: Any) -> bool:
    if isinstance(b, Tensor):
        return True
    return isinstance(b, dict) and bool(b) and all(isinstance(v, Tensor) for v in b.values())


class BatchSource:
    """Batches from a tensor (shuffled each epoch, seeded), an object with ``iter_batches``
    (an activation cache), or any iterable of batches (used as given, re-iterated per epoch).

    ``batches(start_step)`` skips the first ``start_step`` batches deterministically (resume);
    a streaming source (``stream_state()`` + ``iter_from(state)``) restarts at a recorded
    position instead, without replaying the batches before it."""

    def __init__(self, data, batch_size: int, seed: int):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self._one_shot = isinstance(data, Iterator)  # a generator can be read only once
        self._peeked: Batch | None = None
        if isinstance(data, Tensor):
            if data.ndim != 2:
                raise InputError(f"training data must be a (N, d_in) tensor, got shape {tuple(data.shape)}")
            if data.shape[0] < batch_size:
                raise InputError(f"training data has {data.shape[0]} rows, fewer than batch_size={batch_size}")
        elif not (hasattr(data, "iter_batches") or isinstance(data, Iterable)):
            raise InputError(f"data must be a tensor, an activation cache or an iterable of batches, got {type(data).__name__}")
        stream_batch = getattr(data, "batch_size", None)
        if self.streaming and isinstance(stream_batch, int) and stream_batch != batch_size:
            raise ConfigError(f"the data stream yields batches of {stream_batch} tokens but batch_size is "
                              f"{batch_size}: make them equal")

    @property
    def streaming(self) -> bool:
        """True for a source that records and restarts at its own position (a model stream)."""
        return hasattr(self.data, "stream_state") and hasattr(self.data, "iter_from")

    def default_steps(self) -> int:
        if isinstance(self.data, Tensor):
            return max(1, self.data.shape[0] // self.batch_size)
        if hasattr(self.data, "n_tokens"):
            return max(1, int(self.data.n_tokens) // self.batch_size)
        if hasattr(self.data, "__len__"):
            return len(self.data)
        raise ConfigError("steps must be set when data is an iterable without a length")

    def checkpoint_extra(self) -> dict:
        """What a checkpoint written now must hold to resume the data here (JSON-serialisable):
        a streaming source's position, else nothing (other sources resume by skipping batches)."""
        return {"stream": self.data.stream_state()} if self.streaming else {}

    def batches(self, start_step: int = 0, resume_state: dict | None = None) -> Iterator[Batch]:
        skipped = 0
        epoch = 0
        resumed = self.streaming and resume_state is not None
        if resumed:
            start_step = 0  # the stream restarts at its recorded position: nothing to skip
        while True:
            produced = False
            first = self.data.iter_from(resume_state) if resumed and epoch == 0 else self._epoch(epoch)
            for batch in first:
                produced = True
                if skipped < start_step:
                    skipped += 1
                    continue
                yield batch
            if not produced:
                if epoch == 0 and resumed:
                    pass  # resumed at the very end of a pass: the next pass starts from the beginning
                elif epoch == 0 or not self._one_shot:
                    raise InputError("training data yielded no batches (empty data)")
                else:
                    raise InputError(f"training data ran out after {skipped} batches; set steps or pass re-iterable data")
            epoch += 1

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        data = self.data
        if isinstance(data, Tensor):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(data.shape[0], generator=gen).to(data.device)
            for i in range(0, data.shape[0] - self.batch_size + 1, self.batch_size):
                yield data[perm[i : i + self.batch_size]]
        elif hasattr(data, "iter_batches"):
            # full batches only: a short batch at each pass boundary would change the step's statistics
            yield from data.iter_batches(self.batch_size, shuffle=True, seed=self.seed + epoch, drop_last=True)
        else:
            if self._one_shot and epoch > 0:
                return
            if self._peeked is not None:
                peeked, self._peeked = self._peeked, None
                yield peeked
            for batch in data:
                if not _is_batch(batch):
                    raise InputError(f"data yielded a {type(batch).__name__}, expected a tensor batch "
                                     "or a {hook: tensor} dict")
                yield batch

    def peek(self) -> Batch:
        """The first batch (for data-dependent initialisation); a one-shot iterator keeps it."""
        try:
            first = next(iter(self._epoch(0)))
        except StopIteration:
            raise InputError("training data yielded no batches (empty data)") from None
        if self._one_shot:
            self._peeked = first
        return first
