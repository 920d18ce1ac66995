"""Training batches straight from a language model: the streaming (GPU) path of ``probsae.train``.

:class:`ModelStream` turns an :class:`~probsae.data.extract.ActivationStream` (one forward per
window batch, feeding every hook point) into fixed-size training batches ``{hook: (B, d)}``:

* no disk: activations go from the model to the SAE steps on the model's device;
* a shuffle buffer on that device mixes the tokens of many windows (an SAE never sees a whole
  document in order): it holds ``buffer_tokens`` tokens; each training batch is ``batch_size``
  tokens drawn from random slots of it, which the next tokens from the model then refill, so a
  token waits ``buffer_tokens / batch_size`` batches on average and each forward (about one
  batch of tokens) is followed by one training batch;
* no host sync: token counts are known on the host, slots are drawn on the host (seeded) and
  copied from pinned memory without blocking, so the next forward (queued on a side CUDA
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
        C, B = self.buffer_tokens, self.batch_size
        buf: dict[str, Tensor] = {}
        wins = torch.full((C,), -1, dtype=torch.long)  # window of the token in each slot (host)
        filled, fed = 0, start
        pend: dict[str, list[Tensor]] = {k: [] for k in self.hooks}
        pend_w: list[Tensor] = []
        n_pend = 0
        for ab in self.stream.batches(skip_windows=start):
            fed = ab.windows_end
            rows = int(ab.token_windows.shape[0])
            self.tokens_in += rows
            if not buf:
                buf = {k: torch.empty(C, v.shape[1], dtype=v.dtype, device=v.device) for k, v in ab.by_hook.items()}
            take = min(rows, C - filled)  # filling up: straight into the free slots
            if take:
                for k in self.hooks:
                    buf[k][filled:filled + take].copy_(ab.by_hook[k][:take])
                wins[filled:filled + take] = ab.token_windows[:take]
                filled += take
            if take < rows:
                for k in self.hooks:
                    pend[k].append(ab.by_hook[k][take:])
                pend_w.append(ab.token_windows[take:])
                n_pend += rows - take
            while filled == C and n_pend >= B:
                new = {k: torch.cat(v) if len(v) > 1 else v[0] for k, v in pend.items()}
                new_w = torch.cat(pend_w)
                slots = torch.randperm(C, generator=gen)[:B]
                dev_slots = self._to_device(slots, buf)
                batch = {k: buf[k].index_select(0, dev_slots) for k in self.hooks}
                for k in self.hooks:
                    buf[k].index_copy_(0, dev_slots, new[k][:B])
                wins[slots] = new_w[:B]
                pend, pend_w, n_pend = {k: [v[B:]] for k, v in new.items()}, [new_w[B:]], n_pend - B
                rest = pend_w[0]
                self._state = {"windows": min(int(wins.min()), int(rest.min()) if rest.numel() else fed)}
                self.tokens_out += B
                yield batch
        # the end of the pass: what is left, shuffled, in full batches
        if not buf or filled + n_pend < B:
            self._state = {"windows": fed}
            return
        left = {k: torch.cat([buf[k][:filled], *pend[k]]) for k in self.hooks}
        left_w = torch.cat([wins[:filled], *pend_w])
        perm = torch.randperm(int(left_w.shape[0]), generator=gen)
        left_w = left_w[perm]
        dev_perm = self._to_device(perm, buf)
        left = {k: v.index_select(0, dev_perm) for k, v in left.items()}
        first_left = left_w.flip(0).cummin(0).values.flip(0)  # first window among the rows not yet out
        n = int(left_w.shape[0])
        for end in range(B, n + 1, B):
            self._state = {"windows": int(first_left[end]) if end < n else fed}
            self.tokens_out += B
            yield {k: v[end - B:end] for k, v in left.items()}

    @staticmethod
    def _to_device(index: Tensor, like: dict[str, Tensor]) -> Tensor:
        dev = next(iter(like.values())).device
        return index.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else index
