"""One switch for every progress display: bars, status lines and third-party loading bars.

Every long job (extraction, training, sweeps, latent caches, dashboards, LLM calls) draws its bar
through :func:`bar` and its status lines through :func:`say`. The command line sets the switch
once (``--progress/--no-progress`` on every command) with :func:`configure`:

* ``--progress``, or the default when stderr is a terminal: tqdm bars;
* the default when stderr is not a terminal (a log file, a pipe, a batch job): each bar becomes a
  plain status line every :data:`LOG_EVERY_S` seconds (``[probsae] train: 1.2M/3M tok (40 %),
  2,310 tok/s, 13 min left``) plus one when it ends, so a log never stays silent through a long
  extraction or training, and holds no carriage-return animation;
* ``--no-progress``: nothing (warnings and errors still print).

Third-party bars (transformers' "Loading weights", downloads) show only with tqdm bars. Library
callers who never call :func:`configure` get the tqdm bars they ask for (``TrainConfig.progress``,
``progress=True`` arguments).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_STATE: bool | None = None
"""None: not configured (library use: each caller decides); True/False: set by the command line."""
_LOG_LINES = False
"""True when progress is on but stderr is not a terminal: bars print plain status lines."""

LOG_EVERY_S = float(os.environ.get("PROBSAE_LOG_EVERY_S", "60"))
"""Seconds between the status lines of a bar when stderr is not a terminal (env PROBSAE_LOG_EVERY_S)."""


def terminal() -> bool:
    """True when stderr is an interactive terminal (the default of ``--progress``)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def configure(flag: bool | None) -> bool:
    """Set the process-wide switch (None: tqdm bars on a terminal, else periodic status lines);
    returns whether progress is shown. Anything but tqdm bars also turns off transformers' and
    huggingface_hub's progress bars."""
    global _STATE, _LOG_LINES
    _STATE = True if flag is None else bool(flag)
    _LOG_LINES = flag is None and not terminal()
    _third_party(_STATE and not _LOG_LINES)
    return _STATE


@contextmanager
def configured(flag: bool | None) -> Iterator[bool]:
    """:func:`configure` for the duration of a ``with`` block (one CLI command), then restore the
    previous switch and the third-party bars' previous state."""
    global _STATE, _LOG_LINES
    before = (_STATE, _LOG_LINES, _third_party_on())
    try:
        yield configure(flag)
    finally:
        _STATE, _LOG_LINES = before[0], before[1]
        _third_party(before[2])


def _third_party_on() -> bool:
    try:
        from transformers.utils import logging as tlog

        return tlog.is_progress_bar_enabled()
    except ImportError:  # pragma: no cover
        return True


def enabled(requested: bool = True) -> bool:
    """Whether a display the caller asked for (``requested``) may be shown."""
    return bool(requested) and _STATE is not False


def _third_party(on: bool) -> None:
    try:
        from transformers.utils import logging as tlog

        tlog.enable_progress_bar() if on else tlog.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

        enable_progress_bars() if on else disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass


class _Silent:
    """Stands in for a tqdm bar when progress is off: every method is a no-op."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *a: Any, **kw: Any) -> None:
        pass

    def set_postfix_str(self, *a: Any, **kw: Any) -> None:
        pass

    def set_description_str(self, *a: Any, **kw: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def _count(n: float, unit: str) -> str:
    if unit == "tok" or n >= 1e4:
        return f"{n / 1e6:.3g}M" if n >= 1e6 else (f"{n / 1e3:.3g}k" if n >= 1e3 else f"{n:g}")
    return f"{n:,.0f}"


def _duration(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 5400 else (f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s")


class LogBar(_Silent):
    """A bar for logs: a plain status line every ``every`` seconds (count, rate, time left, the
    bar's postfix) and one when it closes, instead of tqdm's redrawn line."""

    def __init__(self, total: float | None, desc: str, unit: str, initial: float = 0, every: float | None = None,
                 clock=time.monotonic, write=None):
        self.total, self.desc, self.unit, self.n = total, desc or "progress", unit, initial
        self.every = LOG_EVERY_S if every is None else every
        self.clock, self.start_n, self.postfix, self.closed = clock, initial, "", False
        self.t0 = self.last = clock()
        self._write = write or (lambda line: print(line, file=sys.stderr, flush=True))

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.clock() - self.last >= self.every:
            self._line()

    def set_postfix_str(self, s: str = "", *a: Any, **kw: Any) -> None:
        self.postfix = str(s)

    def set_postfix(self, *a: Any, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def _line(self, done: bool = False, stopped: bool = False) -> None:
        now = self.clock()
        self.last = now
        rate = (self.n - self.start_n) / max(now - self.t0, 1e-9)
        parts = [f"{_count(self.n, self.unit)}" + (f"/{_count(self.total, self.unit)} {self.unit} "
                                                   f"({100 * self.n / self.total:.0f} %)" if self.total else f" {self.unit}")]
        parts.append(f"{rate:,.0f} {self.unit}/s")
        if done or stopped:
            parts.append(f"{'stopped after' if stopped else 'done in'} {_duration(now - self.t0)}")
        elif self.total and rate > 0:
            parts.append(f"{_duration((self.total - self.n) / rate)} left")
        if self.postfix:
            parts.append(self.postfix)
        self._write(f"[probsae] {self.desc}: " + ", ".join(parts))

    def close(self, stopped: bool = False) -> None:
        if not self.closed:
            self.closed = True
            self._line(done=not stopped, stopped=stopped)

    def __exit__(self, exc_type: Any = None, *exc: Any) -> None:
        self.close(stopped=exc_type is not None)


def bar(*, total: float | None = None, desc: str = "", unit: str = "it", requested: bool = True, **kw: Any):
    """A tqdm bar on stderr, a :class:`LogBar` when stderr is not a terminal (and progress was not
    asked for explicitly), or a silent stand-in when progress is off (or not ``requested``)."""
    if not enabled(requested):
        return _Silent()
    if _LOG_LINES:
        return LogBar(total, desc, unit, initial=kw.get("initial", 0) or 0)
    from tqdm.auto import tqdm

    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("mininterval", 0.5)
    return tqdm(total=total, desc=desc, unit=unit, **kw)


def status_line(desc: str, position: int, requested: bool = True):
    """A one-line text display under the bars (tqdm with no bar), updated with
    ``set_description_str``; a silent stand-in when progress is off."""
    if not enabled(requested) or _LOG_LINES:  # in a log the bar's status line says it
        return _Silent()
    from tqdm.auto import tqdm

    return tqdm(total=0, desc=desc, position=position, bar_format="{desc}", leave=False, dynamic_ncols=True)


def say(msg: str, prefix: str = "probsae") -> None:
    """A status line on stderr (``[probsae] msg``), silenced by ``--no-progress``."""
    if _STATE is not False:
        print(f"[{prefix}] {msg}", file=sys.stderr, flush=True)


def warn(msg: str, prefix: str = "probsae") -> None:
    """A warning on stderr (``[probsae] warning: msg``): a result that may not mean what it seems.
    Printed even with ``--no-progress``."""
    print(f"[{prefix}] warning: {msg}", file=sys.stderr, flush=True)


def note(msg: str, prefix: str = "probsae") -> None:
    """A note on stderr (``[probsae] note: msg``): something done differently from what the user
    may expect. Printed even with ``--no-progress``."""
    print(f"[{prefix}] note: {msg}", file=sys.stderr, flush=True)
