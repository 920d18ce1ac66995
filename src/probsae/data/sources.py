"""Where batches come from: the ``BatchSource`` Protocol and one adapter per kind of data.

A batch is a (B, d_in) tensor, or a dict ``{hook: (B, d_hook) tensor}`` when one model forward
feeds several hook points. ``batch_source(data)`` wraps what a user passes as ``data`` (to
``probsae.train`` or ``probsae.evaluate``) in its adapter:

* a (N, d_in) tensor → :class:`TensorSource` (shuffled each pass, seeded);
* an activation cache (``iter_batches``, e.g. ``ActivationCache``) → :class:`CacheSource`;
* a model stream (``stream_state`` + ``iter_from``, e.g. ``ModelStream``) → :class:`StreamSource`,
  which records its position and restarts there instead of replaying batches;
* any other iterable of batches → :class:`IterableSource` (used as given, re-iterated per pass).

An object that already implements ``BatchSource`` is used as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..errors import ConfigError, InputError

Batch = Tensor | dict[str, Tensor]


@runtime_checkable
class BatchSource(Protocol):
    """Batches for training (one pass at a time) and for evaluation (every row once, in order)."""

    one_shot: bool
    """True for data that can be read only once (a generator): it yields nothing after its first pass."""

    def check(self, batch_size: int) -> None:
        """Raise ``InputError``/``ConfigError`` if it cannot give training batches of ``batch_size`` rows."""

    def steps_per_pass(self, batch_size: int) -> int:
        """Training steps of one pass (when ``steps`` is not set); ``ConfigError`` if unknown."""

    def epoch(self, index: int, batch_size: int, seed: int) -> Iterator[Batch]:
        """The training batches of pass ``index`` (shuffled by ``seed`` and ``index`` where the
        source shuffles; full batches only)."""

    def first(self, batch_size: int, seed: int) -> Batch:
        """The first training batch (data-dependent initialisation); a one-shot source keeps it
        for its first pass."""

    def in_order(self, batch_size: int) -> Iterator[Batch]:
        """Evaluation: every row once, in stored order (the last batch may be short)."""


@runtime_checkable
class ResumableSource(BatchSource, Protocol):
    """A source that records its own position and restarts there (a model stream)."""

    def position(self) -> dict:
        """Where to restart to lose no row of the batches handed out so far (JSON-serialisable)."""

    def resume(self, position: dict) -> Iterator[Batch]:
        """Batches from ``position`` to the end of the pass."""


@runtime_checkable
class CacheLike(Protocol):
    """What an activation cache offers (``probsae.data.ActivationCache``)."""

    def iter_batches(self, batch_size: int, shuffle: bool = True, seed: int = 0,
                     drop_last: bool = False) -> Iterator[Tensor]: ...


@runtime_checkable
class StreamLike(Protocol):
    """What a model stream offers (``probsae.data.ModelStream``)."""

    batch_size: int

    def stream_state(self) -> dict: ...

    def iter_from(self, state: dict | None) -> Iterator[Batch]: ...


def is_batch(b: Any) -> bool:
    """A tensor, or a non-empty dict of tensors."""
    if isinstance(b, Tensor):
        return True
    return isinstance(b, dict) and bool(b) and all(isinstance(v, Tensor) for v in b.values())


def _checked(batches: Iterable[Any]) -> Iterator[Batch]:
    for batch in batches:
        if not is_batch(batch):
            raise InputError(f"data yielded a {type(batch).__name__}, expected a tensor batch "
                             "or a {hook: tensor} dict")
        yield batch


def _counted_steps(data: Any, batch_size: int) -> int:
    """Steps of one pass of data that counts its tokens (``n_tokens``) or its batches (``len``)."""
    try:
        return max(1, int(data.n_tokens) // batch_size)
    except AttributeError:  # no n_tokens (a ModelStream without max_tokens raises it too)
        pass
    if isinstance(data, Sized):
        return len(data)
    raise ConfigError("steps must be set when data is an iterable without a length")


class _Source:
    """What the adapters share: no training check, the first batch of pass 0."""

    one_shot = False

    def check(self, batch_size: int) -> None:
        pass

    def epoch(self, index: int, batch_size: int, seed: int) -> Iterator[Batch]:
        raise NotImplementedError

    def first(self, batch_size: int, seed: int) -> Batch:
        try:
            return next(iter(self.epoch(0, batch_size, seed)))
        except StopIteration:
            raise InputError("training data yielded no batches (empty data)") from None


class TensorSource(_Source):
    """A tensor of activations: shuffled each pass (seeded), full batches only."""

    def __init__(self, data: Tensor):
        self.data = data

    def check(self, batch_size: int) -> None:
        if self.data.ndim != 2:
            raise InputError(f"training data must be a (N, d_in) tensor, got shape {tuple(self.data.shape)}")
        if self.data.shape[0] < batch_size:
            raise InputError(f"training data has {self.data.shape[0]} rows, fewer than batch_size={batch_size}")

    def steps_per_pass(self, batch_size: int) -> int:
        return max(1, self.data.shape[0] // batch_size)

    def epoch(self, index: int, batch_size: int, seed: int) -> Iterator[Batch]:
        data = self.data
        gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
        perm = torch.randperm(data.shape[0], generator=gen).to(data.device)
        for i in range(0, data.shape[0] - batch_size + 1, batch_size):
            yield data[perm[i : i + batch_size]]

    def in_order(self, batch_size: int) -> Iterator[Batch]:
        data = self.data.unsqueeze(0) if self.data.ndim == 1 else self.data
        flat = data.reshape(-1, data.shape[-1])
        for i in range(0, flat.shape[0], batch_size):
            yield flat[i : i + batch_size]


class CacheSource(_Source):
    """An activation cache: shuffled shards and rows per pass (seed + pass), full batches only."""

    def __init__(self, cache: CacheLike):
        self.cache = cache

    def steps_per_pass(self, batch_size: int) -> int:
        return _counted_steps(self.cache, batch_size)

    def epoch(self, index: int, batch_size: int, seed: int) -> Iterator[Batch]:
        # full batches only: a short batch at each pass boundary would change the step's statistics
        yield from self.cache.iter_batches(batch_size, shuffle=True, seed=seed + index, drop_last=True)

    def in_order(self, batch_size: int) -> Iterator[Batch]:
        yield from self.cache.iter_batches(batch_size, shuffle=False)


class IterableSource(_Source):
    """Any iterable of batches, used as given and re-iterated per pass; a one-shot iterator (a
    generator) gives one pass, and keeps the batch ``first`` read."""

    def __init__(self, data: Iterable[Batch]):
        self.data = data
        self.one_shot = isinstance(data, Iterator)
        self._peeked: Batch | None = None

    def steps_per_pass(self, batch_size: int) -> int:
        return _counted_steps(self.data, batch_size)

    def epoch(self, index: int, batch_size: int, seed: int) -> Iterator[Batch]:
        if self.one_shot and index > 0:
            return
        if self._peeked is not None:
            peeked, self._peeked = self._peeked, None
            yield peeked
        yield from _checked(self.data)

    def first(self, batch_size: int, seed: int) -> Batch:
        batch = super().first(batch_size, seed)
        if self.one_shot:
            self._peeked = batch
        return batch

    def in_order(self, batch_size: int) -> Iterator[Batch]:
        return self.epoch(0, batch_size, 0)


class StreamSource(_Source):
    """A model stream: its own shuffling and batch size; it records its position and restarts
    there on resume instead of replaying the batches before it."""

    def __init__(self, stream: StreamLike):
        self.stream = stream

    def check(self, batch_size: int) -> None:
        own = self.stream.batch_size
        if isinstance(own, int) and own != batch_size:
            raise ConfigError(f"the data stream yields batches of {own} tokens but batch_size is "
                              f"{batch_size}: make them equal")

    def steps_per_pass(self, batch_size: int) -> int:
        return _counted_steps(self.stream, batch_size)

    def epoch(self, index: int, batch_size: int, seed: int) -> Iterator[Batch]:
        yield from _checked(self.stream)

    def in_order(self, batch_size: int) -> Iterator[Batch]:
        return self.epoch(0, batch_size, 0)

    def position(self) -> dict:
        return self.stream.stream_state()

    def resume(self, position: dict) -> Iterator[Batch]:
        return self.stream.iter_from(position)


def batch_source(data: Any) -> BatchSource:
    """The adapter of ``data`` (see the module docstring); ``InputError`` for anything else."""
    if isinstance(data, Tensor):
        return TensorSource(data)
    if isinstance(data, BatchSource):
        return data
    if isinstance(data, StreamLike):
        return StreamSource(data)
    if isinstance(data, CacheLike):
        return CacheSource(data)
    if isinstance(data, Iterable):
        return IterableSource(data)
    raise InputError(f"data must be a tensor, an activation cache or an iterable of batches, got {type(data).__name__}")
