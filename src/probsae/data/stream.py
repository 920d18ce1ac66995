"""Training batches straight from a language model: the streaming (GPU) path of ``probsae.train``.

:class:`ModelStream` turns an :class:`~probsae.data.extract.ActivationStream` (one forward per
window batch, feeding every hook point) into fixed-size training batches ``{hook: (B, d)}``:

* no disk: activations go from the model to the SAE steps on the model's device;
* a shuffle buffer on that device mixes the tokens of many windows (an SAE never sees a whole
  document in order): once it holds ``buffer_tokens`` tokens it is permuted, batches are taken
  from the front until half of it is left, and the rest waits for new tokens;
* no host sync: token counts are known on the host, permutations are drawn on the host (seeded)
  and copied from pinned memory without blocking, so the next forward (queued on a side CUDA
  stream) overlaps the SAE steps of the current batch;
* resumable: ``stream_state()`` is the position to restart from (the first window with a token
  still in the buffer), stored in each checkpoint; ``iter_from(state)`` restarts there. A resumed
  run replays the tokens of the windows that were partly consumed; it never skips a token.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ..errors import ConfigError
from .extract import ActivationStream


class ModelStream:
    """Fixed-size shuffled training batches ``{str(hook): (batch_size, d_hook) float32}`` from
    ``stream``, on the model's device; see the module docstring.

    Args:
        stream: a resumable :class:`ActivationStream` (``ActivationStream.from_corpus``).
        batch_size: tokens per training batch (``TrainConfig.batch_size``).
        buffer_tokens: shuffle-buffer size in tokens (default 16 batches; at least 2).
        seed: seed of the buffer's permutations.
        max_tokens: sizes a run (``max_tokens // batch_size`` steps, see ``n_tokens``); the
            stream itself runs until the corpus ends (``probsae.train`` then starts another pass).
    """

    def __init__(self, stream: ActivationStream, batch_size: int, buffer_tokens: int | None = None,
                 seed: int = 0, max_tokens: int | None = None) -> None:
        if not stream.resumable:
            raise ConfigError("ModelStream needs a resumable ActivationStream (ActivationStream.from_corpus)")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.stream, self.batch_size, self.seed, self.max_tokens = stream, int(batch_size), int(seed), max_tokens
        self.buffer_tokens = max(2 * self.batch_size, int(buffer_tokens or 16 * self.batch_size))
        self.hooks = [str(h) for h in stream.hooks]
        self._state: dict = {"windows": 0}
        self.tokens_in = 0  # tokens extracted (model forwards) so far
        self.tokens_out = 0  # tokens handed out in training batches so far

    @property
    def n_tokens(self) -> int:
        """Tokens of the run (``max_tokens``): ``probsae.train`` makes ``n_tokens // batch_size``
        steps when ``steps`` is not set. Absent (AttributeError) without ``max_tokens``."""
        if self.max_tokens is None:
            raise AttributeError("this ModelStream has no max_tokens: set TrainConfig.steps")
        return int(self.max_tokens)

    @property
    def forward_seconds(self) -> float:
        """Time spent in model forwards so far (device time on CUDA)."""
        return self.stream.forward_seconds

    def stream_state(self) -> dict:
        """Where to restart to lose no token of the batches handed out so far (JSON-serialisable)."""
        return dict(self._state)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        return self.iter_from(None)

    def iter_from(self, state: dict | None) -> Iterator[dict[str, Tensor]]:
        """Batches from the position ``state`` (from :meth:`stream_state`; None: the start)."""
        start = int((state or {}).get("windows", 0))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + start)
        self._state = {"windows": start}
        chunks: dict[str, list[Tensor]] = {k: [] for k in self.hooks}
        wins: list[Tensor] = []
        n, fed = 0, start
        for ab in self.stream.batches(skip_windows=start):
            fed = ab.windows_end
            rows = int(ab.token_windows.shape[0])
            if not rows:
                continue
            for k in self.hooks:
                chunks[k].append(ab.by_hook[k])
            wins.append(ab.token_windows)
            n += rows
            self.tokens_in += rows
            if n >= self.buffer_tokens:
                chunks, wins, n = yield from self._emit(chunks, wins, gen, self.buffer_tokens // 2, fed)
        if n >= self.batch_size:
            yield from self._emit(chunks, wins, gen, 0, fed)
        self._state = {"windows": fed}

    def _emit(self, chunks, wins, gen, keep: int, fed: int):
        """Permute the buffer, hand out full batches until ``keep`` tokens (or less than a batch)
        are left, and return the rest as the new buffer."""
        B = self.batch_size
        win = torch.cat(wins)
        n = int(win.shape[0])
        perm = torch.randperm(n, generator=gen)
        win = win[perm]
        dev = chunks[self.hooks[0]][0].device
        if dev.type == "cuda":
            perm = perm.pin_memory().to(dev, non_blocking=True)
        x = {k: torch.cat(v).index_select(0, perm) for k, v in chunks.items()}
        m = (n - keep) // B
        # first window still in the buffer after each batch: the restart position
        left = win.flip(0).cummin(0).values.flip(0)
        for j in range(m):
            end = (j + 1) * B
            self._state = {"windows": int(left[end]) if end < n else fed}
            self.tokens_out += B
            yield {k: v[end - B:end] for k, v in x.items()}
        cut = m * B
        return {k: [v[cut:]] for k, v in x.items()}, [win[cut:]], n - cut
