"""How every figure and the dashboard show an architecture: its colour, marker and display name.

They come from the architecture module's ``presentation`` (the registry is their one home; the
colours are colour-blind-safe Okabe–Ito hues, Probabilistic TopK and TopK, compared in every figure,
the two most distinct ones), and legends and tables follow the registry's order. Look them up here
(training curves, the sweep report, autointerp's Figure 5, the dashboard), never inline a colour.
"""

from __future__ import annotations

from .declarations import Presentation
from .registry import architectures, get_class

_UNKNOWN = ("#999933", "#44AA99", "#332288", "#AA4499")
"""Stable fallback colours of names no registered architecture has (e.g. results of a newer version)."""


def _registered() -> dict[str, Presentation]:
    return {a: get_class(a).presentation for a in architectures()}


def _arch(name: str | None) -> str | None:
    """The registered architecture called ``name`` or displayed as ``name``; None if neither."""
    reg = _registered()
    if name in reg:
        return name
    return next((a for a, p in reg.items() if p.label == name), None)


def known(name: str | None) -> bool:
    """Whether ``name`` is a registered architecture's name or display name."""
    return _arch(name) is not None


def style(arch: str | None) -> Presentation:
    """The presentation of an architecture name (``prob_topk``) or of its display name
    (``Probabilistic TopK``); an unknown name gets a stable fallback colour and itself as label."""
    known = _arch(arch)
    if known is not None:
        return get_class(known).presentation
    name = str(arch)
    return Presentation(name, _UNKNOWN[sum(map(ord, name)) % len(_UNKNOWN)], "o")


def colour(arch: str | None) -> str:
    """Hex colour of an architecture (by name or display name)."""
    return style(arch).color


def label(arch: str) -> str:
    """Display name of an architecture (``prob_topk`` → ``Probabilistic TopK``)."""
    return style(arch).label


def arch_order(arch: str) -> int:
    """Position of an architecture (by name or display name) in legends and tables: the registry's
    order; unknown names last."""
    names = architectures()
    known = _arch(arch)
    return names.index(known) if known is not None else len(names)
