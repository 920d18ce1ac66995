"""One switch for every progress display: bars, status lines and third-party loading bars.

Every long job (extraction, training, sweeps, latent caches, dashboards, LLM calls) draws its bar
through :func:`bar` and its status lines through :func:`say`. The command line sets the switch
once (``--progress/--no-progress`` on every command; default: on when stderr is a terminal) with
:func:`configure`; ``--no-progress`` then also silences transformers' and huggingface_hub's bars
("Loading weights", downloads). Library callers who never call :func:`configure` get the bars
they ask for (``TrainConfig.progress``, ``progress=True`` arguments).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_STATE: bool | None = None
"""None: not configured (library use: each caller decides); True/False: set by the command line."""


def terminal() -> bool:
    """True when stderr is an interactive terminal (the default of ``--progress``)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def configure(flag: bool | None) -> bool:
    """Set the process-wide switch (None: on when stderr is a terminal); returns the setting.
    Off also turns off transformers' and huggingface_hub's progress bars."""
    global _STATE
    _STATE = terminal() if flag is None else bool(flag)
    _third_party(_STATE)
    return _STATE


@contextmanager
def configured(flag: bool | None) -> Iterator[bool]:
    """:func:`configure` for the duration of a ``with`` block (one CLI command), then restore the
    previous switch and the third-party bars' previous state."""
    global _STATE
    before = (_STATE, _third_party_on())
    try:
        yield configure(flag)
    finally:
        _STATE = before[0]
        _third_party(before[1])


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


def bar(*, total: float | None = None, desc: str = "", unit: str = "it", requested: bool = True, **kw: Any):
    """A tqdm bar on stderr, or a silent stand-in when progress is off (or not ``requested``)."""
    if not enabled(requested):
        return _Silent()
    from tqdm.auto import tqdm

    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("mininterval", 0.5)
    return tqdm(total=total, desc=desc, unit=unit, **kw)


def status_line(desc: str, position: int, requested: bool = True):
    """A one-line text display under the bars (tqdm with no bar), updated with
    ``set_description_str``; a silent stand-in when progress is off."""
    if not enabled(requested):
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
