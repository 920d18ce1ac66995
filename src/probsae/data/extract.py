"""Activations from a model at one or more hook points, as a stream of (N_tokens, d_model) tensors.

The host side of each window batch (tokenisation, padding, the indices of the kept tokens,
pinning for CUDA) is prepared on a background thread when the model is on CUDA
(:class:`~probsae.data.background.Prefetch`; inline on the CPU, whose cores the forward uses);
the device side is one forward pass per window batch that stops after the deepest hook point,
then a gather of the kept tokens. No step of it waits for the device (no host sync): the number of
kept tokens is known on the host, and copies to CUDA come from pinned memory with
``non_blocking=True``. With ``overlap`` on CUDA the forward runs on a side stream, so the forward
of the next batch can run while the SAE steps of the previous one do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch

from probsae.data.background import Prefetch
from probsae.data.corpus import WindowBatch, token_windows
from probsae.data.errors import HookPointError
from probsae.data.hooks import HookPoint, capture_many
from probsae.data.models import ModelHandle


@dataclass
class ActivationBatch:
    """Activations of the kept tokens of one window batch.

    Attributes:
        acts: (N, d) float32 activations at the (first) hook point (tokens with ``token_mask``
            True, row-major order), on the model's device.
        windows_end: number of windows of the whole stream consumed once this batch is done.
        tokens_end: number of tokens yielded by the stream once this batch is done.
        by_hook: ``{str(hook): (N, d_hook)}`` for every hook point of the stream (same tokens).
        token_windows: (N,) CPU int64: the index of the window each token comes from.
    """

    acts: torch.Tensor
    windows_end: int
    tokens_end: int
    by_hook: dict[str, torch.Tensor] = field(default_factory=dict)
    token_windows: torch.Tensor | None = None


@dataclass
class HostBatch:
    """A window batch prepared on the host for one forward: ``attention_mask`` is None when no
    window is padded (then the model takes its unmasked fast path), ``keep`` holds the flat
    indices of the kept tokens; tensors are pinned when bound for CUDA."""

    windows: WindowBatch
    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    keep: torch.Tensor
    token_windows: torch.Tensor

    @property
    def n_keep(self) -> int:
        return int(self.keep.shape[0])


def prepare_host(wb: WindowBatch, exclude_special: bool = True, pin: bool = False) -> HostBatch:
    """The host-side work of one window batch (runs on the prefetch thread)."""
    mask = wb.token_mask if exclude_special else wb.attention_mask.bool()
    keep = mask.reshape(-1).nonzero().squeeze(1)
    rows = torch.div(keep, wb.input_ids.shape[1], rounding_mode="floor") + wb.first_window
    att = None if bool(wb.attention_mask.all()) else wb.attention_mask
    ids = wb.input_ids
    if pin:
        ids, keep = ids.pin_memory(), keep.pin_memory()
        att = att.pin_memory() if att is not None else None
    return HostBatch(wb, ids, att, keep, rows)


class ModelForward:
    """Runs one prepared window batch through the model up to the deepest hook point and returns
    the kept tokens' activations per hook point, ``float32`` on the model's device.

    ``overlap`` (CUDA only): launch the copies and the forward on a side CUDA stream and make the
    caller's stream wait for it, so that device work queued before (the SAE steps of the previous
    batch) and the forward run concurrently. ``seconds`` is the time spent in forwards: device
    time from CUDA events (read without waiting for the device) or host time on the CPU."""

    def __init__(self, handle: ModelHandle, hooks: list[HookPoint], overlap: bool = True):
        self.handle, self.hooks = handle, hooks
        dev = handle.device
        self.cuda = dev.type == "cuda"
        self.side = torch.cuda.Stream(device=dev) if self.cuda and overlap else None
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._seconds = 0.0

    def __call__(self, hb: HostBatch) -> dict[str, torch.Tensor]:
        if not self.cuda:
            t0 = time.perf_counter()
            out = self._run(hb)
            self._seconds += time.perf_counter() - t0
            return out
        main = torch.cuda.current_stream(self.handle.device)
        stream = self.side or main
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(stream):
            start.record(stream)
            out = self._run(hb)
            end.record(stream)
        if self.side is not None:
            main.wait_stream(self.side)
            for t in out.values():
                t.record_stream(main)  # made on the side stream, used on the main one
        self._events.append((start, end))
        if len(self._events) > 64:
            self._fold()
        return out

    def _run(self, hb: HostBatch) -> dict[str, torch.Tensor]:
        dev = self.handle.device
        ids = hb.input_ids.to(dev, non_blocking=True)
        att = hb.attention_mask.to(dev, non_blocking=True) if hb.attention_mask is not None else None
        keep = hb.keep.to(dev, non_blocking=True)
        with torch.inference_mode():
            xs = capture_many(self.handle, self.hooks, ids, att)
        out = {}
        B, T = hb.input_ids.shape
        with torch.no_grad():  # outside inference mode: the results are ordinary tensors
            for key, x in xs.items():
                if x.dim() != 3 or tuple(x.shape[:2]) != (B, T):
                    raise HookPointError(f"hook point {key}: activation has shape {tuple(x.shape)}, expected "
                                         f"(batch, tokens, d) = ({B}, {T}, d)")
                out[key] = x.reshape(B * T, x.shape[-1]).index_select(0, keep).float()
        return out

    def _fold(self) -> None:
        """Add the finished forwards' device time to the total (never waits for the device)."""
        pending = []
        for start, end in self._events:
            if end.query():
                self._seconds += start.elapsed_time(end) / 1000.0
            else:
                pending.append((start, end))
        self._events = pending

    @property
    def seconds(self) -> float:
        """Seconds spent in forward passes so far (finished ones, on CUDA)."""
        if self._events:
            self._fold()
        return self._seconds


def pair_width(hook: str, d_hook: int, target_hook: str, d_target: int) -> int:
    """The width of ``[input | target]`` rows, or the ``HookPointError`` naming both widths when
    they differ (a transcoder's rows split in equal halves)."""
    if d_hook != d_target:
        raise HookPointError(f"width mismatch: hook point {hook} has width {d_hook} but target hook point "
                             f"{target_hook} has {d_target}; a transcoder needs equal widths")
    return d_hook + d_target


def activations_of(handle: ModelHandle, hook: str | HookPoint | list, batch: WindowBatch,
                   exclude_special: bool = True):
    """Activations at ``hook`` of the tokens of ``batch`` as an (N, d) float32 tensor on the
    model's device; for a list of hooks, ``{str(hook): (N, d)}`` from one forward pass.

    Keeps tokens with ``batch.token_mask`` if ``exclude_special``, else every non-pad token.
    """
    hooks = [HookPoint.parse(h) for h in (hook if isinstance(hook, list) else [hook])]
    out = ModelForward(handle, hooks, overlap=False)(prepare_host(batch.to_cpu(), exclude_special))
    return out if isinstance(hook, list) else out[str(hooks[0])]


class ActivationStream:
    """A deterministic, resumable stream of activations at one or more hook points.

    Args:
        handle: the model.
        hook: hook point (string or :class:`HookPoint`), or a list of them (one forward feeds all;
            ``ActivationBatch.by_hook`` holds each, ``acts`` the first).
        windows: a callable ``skip -> iterator of WindowBatch`` that starts after ``skip`` windows
            (see :meth:`from_corpus`), or a plain iterable of :class:`WindowBatch` (not resumable).
        max_tokens: stop after this many tokens (the last batch is truncated to hit it exactly).
        exclude_special: drop special tokens' activations (default) or keep every non-pad token.
        progress: show a tqdm progress bar (in tokens).
        prefetch: window batches prepared ahead on a background thread; None (default): 4 when
            the model is on CUDA (the host is idle while the device works), 0 on the CPU (the
            forward already uses every core; tokenisation then runs inline).
        overlap: run forwards on a side CUDA stream (see :class:`ModelForward`); ignored on the CPU.
        target_hook: a second hook point read in the same forward (a transcoder's target, e.g.
            the MLP's output): each row is then the pair ``[x | y]`` of the input ``hook`` and the
            target, of width d_hook + d_target, under the input hook's key. One input hook only.
    """

    def __init__(self, handle: ModelHandle, hook: str | HookPoint | list,
                 windows: Callable[[int], Iterable[WindowBatch]] | Iterable[WindowBatch],
                 max_tokens: int | None = None, exclude_special: bool = True,
                 progress: bool = False, prefetch: int | None = None, overlap: bool = True,
                 target_hook: str | HookPoint | None = None) -> None:
        self.handle = handle
        self.hooks = list(dict.fromkeys(HookPoint.parse(h) for h in (hook if isinstance(hook, list) else [hook])))
        if not self.hooks:
            raise HookPointError("ActivationStream: no hook points given")
        self.target_hook = HookPoint.parse(target_hook) if target_hook is not None else None
        if self.target_hook is not None and (len(self.hooks) != 1 or self.target_hook == self.hooks[0]):
            raise HookPointError(f"a target hook point ({self.target_hook}) pairs with one other input hook point, "
                                 f"got {', '.join(map(str, self.hooks))}")
        captured = self.hooks + ([self.target_hook] if self.target_hook is not None else [])
        for hp in captured:
            hp.validate(handle)
        self.hook = self.hooks[0]
        self.windows = windows
        self.max_tokens = max_tokens
        self.exclude_special = exclude_special
        self.progress = progress
        self.prefetch = prefetch if prefetch is not None else (4 if handle.device.type == "cuda" else 0)
        self.forward = ModelForward(handle, captured, overlap=overlap)

    @property
    def resumable(self) -> bool:
        """True if the stream can start after a number of windows (``windows`` is a factory)."""
        return callable(self.windows)

    @property
    def forward_seconds(self) -> float:
        """Time spent in model forwards so far (device time on CUDA)."""
        return self.forward.seconds

    @classmethod
    def from_corpus(cls, handle: ModelHandle, hook: str | HookPoint | list, docs: Iterable[str],
                    context_length: int, batch_size: int = 8, max_tokens: int | None = None,
                    exclude_special: bool = True, progress: bool = False, style: str = "auto",
                    prepend_bos: bool = True, overlap: bool = True,
                    target_hook: str | HookPoint | None = None) -> "ActivationStream":
        """Stream over ``docs`` (a re-iterable, e.g. a :class:`~probsae.data.corpus.Corpus`)
        packed in windows of ``context_length`` (capped at the model's max positions); ``style``
        and ``prepend_bos`` are passed to :func:`~probsae.data.corpus.token_windows`."""
        def factory(skip: int) -> Iterator[WindowBatch]:
            return token_windows(docs, handle.tokenizer, context_length, batch_size=batch_size,
                                 max_length=handle.max_length, style=style,
                                 prepend_bos=prepend_bos, exclude_special=exclude_special,
                                 skip_windows=skip)
        return cls(handle, hook, factory, max_tokens=max_tokens, exclude_special=exclude_special,
                   progress=progress, overlap=overlap, target_hook=target_hook)

    def batches(self, skip_windows: int = 0, tokens_done: int = 0) -> Iterator[ActivationBatch]:
        """Yield :class:`ActivationBatch` es, starting after ``skip_windows`` windows and counting
        ``tokens_done`` tokens as already produced (for the ``max_tokens`` budget)."""
        if skip_windows and not self.resumable:
            raise ValueError("this ActivationStream was built from a plain iterable of windows and "
                             "cannot skip windows; build it with a factory (from_corpus) to resume")
        src = self.windows(skip_windows) if callable(self.windows) else self.windows
        pin = self.handle.device.type == "cuda"
        host = Prefetch((prepare_host(wb.to_cpu(), self.exclude_special, pin) for wb in src), depth=self.prefetch,
                        name="probsae-tokenize")
        total = tokens_done
        from ..progress import bar as progress_bar

        bar = progress_bar(total=self.max_tokens, initial=tokens_done, unit="tok", desc=",".join(map(str, self.hooks)),
                           requested=self.progress)
        first = str(self.hook)
        try:
            for hb in host:
                if self.max_tokens is not None and total >= self.max_tokens:
                    break
                acts = self.forward(hb)
                if self.target_hook is not None:
                    y = acts[str(self.target_hook)]
                    pair_width(first, acts[first].shape[-1], str(self.target_hook), y.shape[-1])
                    acts = {first: torch.cat([acts[first], y], dim=-1)}
                n, rows = hb.n_keep, hb.token_windows
                if self.max_tokens is not None and total + n > self.max_tokens:
                    n = self.max_tokens - total
                    acts, rows = {k: v[:n] for k, v in acts.items()}, rows[:n]
                total += n
                bar.update(n)
                wb = hb.windows
                yield ActivationBatch(acts[first], wb.first_window + len(wb), total, acts, rows)
        finally:
            host.close()
            bar.close()

    def __iter__(self) -> Iterator[torch.Tensor]:
        for b in self.batches():
            yield b.acts


def iter_activations(handle: ModelHandle, hook: str | HookPoint, windows: Iterable[WindowBatch],
                     batch_size: int | None = None, exclude_special: bool = True,
                     max_tokens: int | None = None, progress: bool = False
                     ) -> Iterator[torch.Tensor]:
    """Yield (N_tokens, d_model) float32 activations at ``hook`` for each window batch, on the
    model's device.

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
