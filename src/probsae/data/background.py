"""Run an iterator on a background thread, a bounded queue ahead of its consumer.

Used for the host side of extraction (tokenisation, padding, pinning): the Rust tokenizer and
most torch CPU ops release the GIL, so this work overlaps the model forward and the SAE steps.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetch(Generic[T]):
    """Iterate ``source`` on a daemon thread, at most ``depth`` items ahead (``depth=0``: on the
    caller's thread, no thread at all). Exceptions in the source are re-raised in the consumer;
    ``close()`` (or leaving a ``with`` block) stops the thread and waits for it."""

    def __init__(self, source: Iterable[T], depth: int = 4, name: str = "probsae-prefetch"):
        self._source = source if depth <= 0 else None
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = None
        if depth > 0:
            self._thread = threading.Thread(target=self._run, args=(source,), name=name, daemon=True)
            self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterable[T]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._put(e)

    def __iter__(self) -> Iterator[T]:
        if self._thread is None:
            yield from self._source  # type: ignore[misc]
            return
        while True:
            item = self._q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self, timeout: float = 60.0) -> None:
        """Stop the thread (it exits once its current item is made), drop what it queued and wait
        for it, so that no thread is left running library code when the interpreter exits."""
        if self._thread is None:
            return
        self._stop.set()
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout)

    def __enter__(self) -> "Prefetch[T]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
