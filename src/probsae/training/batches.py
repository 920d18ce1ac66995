"""Turn what the user passes as ``data`` into a resumable stream of (B, d_in) batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from ..errors import ConfigError, InputError


class BatchSource:
    """Batches from a tensor (shuffled each epoch, seeded), an object with ``iter_batches``
    (an activation cache), or any iterable of batches (used as given, re-iterated per epoch).

    ``batches(start_step)`` skips the first ``start_step`` batches deterministically (resume)."""

    def __init__(self, data, batch_size: int, seed: int):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self._one_shot = isinstance(data, Iterator)  # a generator can be read only once
        self._peeked: Tensor | None = None
        if isinstance(data, Tensor):
            if data.ndim != 2:
                raise InputError(f"training data must be a (N, d_in) tensor, got shape {tuple(data.shape)}")
            if data.shape[0] < batch_size:
                raise InputError(f"training data has {data.shape[0]} rows, fewer than batch_size={batch_size}")
        elif not (hasattr(data, "iter_batches") or isinstance(data, Iterable)):
            raise InputError(f"data must be a tensor, an activation cache or an iterable of batches, got {type(data).__name__}")

    def default_steps(self) -> int:
        if isinstance(self.data, Tensor):
            return max(1, self.data.shape[0] // self.batch_size)
        if hasattr(self.data, "n_tokens"):
            return max(1, int(self.data.n_tokens) // self.batch_size)
        if hasattr(self.data, "__len__"):
            return len(self.data)
        raise ConfigError("steps must be set when data is an iterable without a length")

    def batches(self, start_step: int = 0) -> Iterator[Tensor]:
        skipped = 0
        epoch = 0
        while True:
            produced = False
            for batch in self._epoch(epoch):
                produced = True
                if skipped < start_step:
                    skipped += 1
                    continue
                yield batch
            if not produced:
                if epoch == 0 or not self._one_shot:
                    raise InputError("training data yielded no batches (empty data)")
                raise InputError(f"training data ran out after {skipped} batches; set steps or pass re-iterable data")
            epoch += 1

    def _epoch(self, epoch: int) -> Iterator[Tensor]:
        data = self.data
        if isinstance(data, Tensor):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(data.shape[0], generator=gen)
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
                if not isinstance(batch, Tensor):
                    raise InputError(f"data yielded a {type(batch).__name__}, expected a tensor batch")
                yield batch

    def peek(self) -> Tensor:
        """The first batch (for data-dependent initialisation); a one-shot iterator keeps it."""
        try:
            first = next(iter(self._epoch(0)))
        except StopIteration:
            raise InputError("training data yielded no batches (empty data)") from None
        if self._one_shot:
            self._peeked = first
        return first
