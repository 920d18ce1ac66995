"""One colour, marker and display name per architecture, used by every figure (training curves,
sweep report, autointerp's Figure 5, the dashboard). Look them up here, never inline a colour.

(When the registry carries per-architecture declarations, :func:`style` can read them from there;
every caller already goes through this function.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchStyle:
    label: str
    """Display name (legends, tables)."""
    colour: str
    """Matplotlib colour; also used as CSS colour by the dashboard (hex)."""
    marker: str
    """Matplotlib marker."""


# Colour-blind-safe (Okabe–Ito) hues; Probabilistic TopK and TopK, compared in every figure, get
# the two most distinct ones (vermillion vs blue).
STYLES: dict[str, ArchStyle] = {
    "prob_topk": ArchStyle("Probabilistic TopK", "#D55E00", "s"),
    "topk": ArchStyle("TopK", "#0072B2", "o"),
    "relu": ArchStyle("ReLU", "#009E73", "^"),
    "gated": ArchStyle("Gated", "#CC79A7", "D"),
    "batchtopk": ArchStyle("BatchTopK", "#56B4E9", "v"),
    "jumprelu": ArchStyle("JumpReLU", "#E69F00", "P"),
    "abstopk": ArchStyle("AbsTopK", "#7F7F7F", "X"),
    "vsae_topk": ArchStyle("vSAE TopK", "#8C564B", "*"),
}
_UNKNOWN = ("#999933", "#882255", "#44AA99", "#332288")
_BY_LABEL = {s.label: a for a, s in STYLES.items()}


def style(arch: str | None) -> ArchStyle:
    """The style of an architecture name (``prob_topk``) or of its display name
    (``Probabilistic TopK``); an unknown name gets a stable fallback colour."""
    if arch in STYLES:
        return STYLES[arch]
    if arch in _BY_LABEL:
        return STYLES[_BY_LABEL[arch]]
    name = str(arch)
    return ArchStyle(name, _UNKNOWN[sum(map(ord, name)) % len(_UNKNOWN)], "o")


def colour(arch: str | None) -> str:
    return style(arch).colour


def label(arch: str) -> str:
    """Display name of an architecture (``prob_topk`` → ``Probabilistic TopK``)."""
    return style(arch).label


def arch_order(arch: str) -> int:
    """Position of an architecture in legends and tables (the order of ``STYLES``)."""
    key = arch if arch in STYLES else _BY_LABEL.get(arch, arch)
    return list(STYLES).index(key) if key in STYLES else len(STYLES)
