"""Activations from a model at a hook point, as a stream of (N_tokens, d_model) tensors."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from probsae.data.corpus import WindowBatch, token_windows
from probsae.data.hooks import HookPoint, capture
from probsae.data.models import ModelHandle


@dataclass
class ActivationBatch:
    """Activations of the kept tokens of one window batch.

    Attributes:
        acts: (N, d) float32 activations (tokens with ``token_mask`` True, row-major order).
        windows_end: number of windows of the whole stream consumed once this batch is done.
        tokens_end: number of tokens yielded by the stream once this batch is done.
    """

    acts: torch.Tensor
    windows_end: int
    tokens_end: int


def activations_of(handle: ModelHandle, hook: str | HookPoint, batch: WindowBatch,
                   exclude_special: bool = True) -> torch.Tensor:
    """Activations at ``hook`` of the tokens of ``batch`` as an (N, d) float32 tensor.

    Keeps tokens with ``batch.token_mask`` if ``exclude_special``, else every non-pad token.
    """
    dev = handle.device
    with torch.inference_mode():
        x = capture(handle, hook, batch.input_ids.to(dev), batch.attention_mask.to(dev))
        keep = batch.token_mask if exclude_special else batch.attention_mask.bool()
        if x.dim() != 3 or x.shape[:2] != keep.shape:
            raise ValueError(f"hook point {hook}: activation has shape {tuple(x.shape)}, expected "
                             f"(batch, tokens, d) = ({keep.shape[0]}, {keep.shape[1]}, d)")
        return x[keep.to(dev)].float()


class ActivationStream:
    """A deterministic, resumable stream of activations.

    Args:
        handle: the model.
        hook: hook point (string or :class:`HookPoint`).
        windows: a callable ``skip -> iterator of WindowBatch`` that starts after ``skip`` windows
            (see :meth:`from_corpus`), or a plain iterable of :class:`WindowBatch` (not resumable).
        max_tokens: stop after this many tokens (the last batch is truncated to hit it exactly).
        exclude_special: drop special tokens' activations (default) or keep every non-pad token.
        progress: show a tqdm progress bar (in tokens).
    """

    def __init__(self, handle: ModelHandle, hook: str | HookPoint,
                 windows: Callable[[int], Iterable[WindowBatch]] | Iterable[WindowBatch],
                 max_tokens: int | None = None, exclude_special: bool = True,
                 progress: bool = False) -> None:
        self.handle = handle
        self.hook = HookPoint.parse(hook)
        self.hook.validate(handle)
        self.windows = windows
        self.max_tokens = max_tokens
        self.exclude_special = exclude_special
        self.progress = progress

    @property
    def resumable(self) -> bool:
        """True if the stream can start after a number of windows (``windows`` is a factory)."""
        return callable(self.windows)

    @classmethod
    def from_corpus(cls, handle: ModelHandle, hook: str | HookPoint, docs: Iterable[str],
                    context_length: int, batch_size: int = 8, max_tokens: int | None = None,
                    exclude_special: bool = True, progress: bool = False, style: str = "auto",
                    prepend_bos: bool = True) -> "ActivationStream":
        """Stream over ``docs`` (a re-iterable, e.g. a :class:`~probsae.data.corpus.Corpus`)
        packed in windows of ``context_length`` (capped at the model's max positions); ``style``
        and ``prepend_bos`` are passed to :func:`~probsae.data.corpus.token_windows`."""
        def factory(skip: int) -> Iterator[WindowBatch]:
            return token_windows(docs, handle.tokenizer, context_length, batch_size=batch_size,
                                 max_length=handle.max_length, style=style,
                                 prepend_bos=prepend_bos, exclude_special=exclude_special,
                                 skip_windows=skip)
        return cls(handle, hook, factory, max_tokens=max_tokens, exclude_special=exclude_special,
                   progress=progress)

    def batches(self, skip_windows: int = 0, tokens_done: int = 0) -> Iterator[ActivationBatch]:
        """Yield :class:`ActivationBatch` es, starting after ``skip_windows`` windows and counting
        ``tokens_done`` tokens as already produced (for the ``max_tokens`` budget)."""
        if skip_windows and not self.resumable:
            raise ValueError("this ActivationStream was built from a plain iterable of windows and "
                             "cannot skip windows; build it with a factory (from_corpus) to resume")
        src = self.windows(skip_windows) if callable(self.windows) else self.windows
        total = tokens_done
        from ..progress import bar as progress_bar

        bar = progress_bar(total=self.max_tokens, initial=tokens_done, unit="tok", desc=str(self.hook),
                           requested=self.progress)
        try:
            for wb in src:
                if self.max_tokens is not None and total >= self.max_tokens:
                    break
                acts = activations_of(self.handle, self.hook, wb, self.exclude_special)
                if self.max_tokens is not None:
                    acts = acts[: self.max_tokens - total]
                total += acts.shape[0]
                bar.update(acts.shape[0])
                yield ActivationBatch(acts, wb.first_window + len(wb), total)
        finally:
            bar.close()

    def __iter__(self) -> Iterator[torch.Tensor]:
        for b in self.batches():
            yield b.acts


def iter_activations(handle: ModelHandle, hook: str | HookPoint, windows: Iterable[WindowBatch],
                     batch_size: int | None = None, exclude_special: bool = True,
                     max_tokens: int | None = None, progress: bool = False
                     ) -> Iterator[torch.Tensor]:
    """Yield (N_tokens, d_model) float32 activations at ``hook`` for each window batch.

    ``windows`` is an iterable of :class:`WindowBatch` (from
    :func:`~probsae.data.corpus.token_windows`). If ``batch_size`` is given, window batches are
    re-split into chunks of at most that many windows before the forward pass.
    """
    def rebatched() -> Iterator[WindowBatch]:
        for wb in windows:
            if batch_size is None or len(wb) <= batch_size:
                yield wb
                continue
            for s in range(0, len(wb), batch_size):
                sl = slice(s, s + batch_size)
                yield WindowBatch(wb.input_ids[sl], wb.attention_mask[sl], wb.token_mask[sl],
                                  wb.first_window + s)

    stream = ActivationStream(handle, hook, rebatched(), max_tokens=max_tokens,
                              exclude_special=exclude_special, progress=progress)
    return iter(stream)
