"""Field validators shared by every config's ``validate()``: each raises a ``ConfigError`` naming
the field and the offending value, and returns nothing when the value is fine."""

from __future__ import annotations

import math
import numbers

from .errors import ConfigError


def is_number(v) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def number(name: str, value, positive: bool = False) -> None:
    """Raise ConfigError unless ``value`` is a finite number (and > 0 if ``positive``)."""
    if not is_number(value) or (positive and not value > 0):
        kind = "a finite number > 0" if positive else "a finite number"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


def whole(name: str, value, minimum: int | None, kind: str | None = None) -> None:
    """Raise ConfigError unless ``value`` is an integer ≥ ``minimum``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or (minimum is not None and value < minimum):
        raise ConfigError(f"{name} must be {kind or f'an integer ≥ {minimum}'}, got {value!r}")


def positive(name: str, value: float, allow_zero: bool = False) -> None:
    """Raise ConfigError unless ``value`` is a positive (or non-negative) int or float."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{name} must be a {kind} number, got {value!r}")


def choice(name: str, value: str, options: tuple[str, ...]) -> None:
    """Raise ConfigError unless ``value`` is one of ``options``."""
    if value not in options:
        raise ConfigError(f"{name} must be one of {options}, got {value!r}")
