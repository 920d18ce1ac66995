"""What an architecture module declares besides its forward: how reports show it and how other
libraries' file formats express it. ``formats/`` and ``experiments/`` read these declarations
through the registry and never name an architecture themselves.

Export (``SAE.to_saelens`` / ``SAE.to_sparsify``, required): an ``Export`` (the target library's
architecture name, the tensors beyond ``W_enc``/``W_dec``/``b_dec``, config fields, and what
changes or is dropped) or ``NotExpressible`` with the reason. Import (optional): ``reads`` names
the other libraries' SAE kinds the architecture reads, and ``from_saelens`` / ``from_sparsify``
convert their tensors into its state (``Imported``). The helpers below are the conversions several
architectures share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ..errors import SAEFileError


@dataclass(frozen=True)
class Presentation:
    """How reports, figures and the dashboard show an architecture (looked up through
    :func:`probsae.saes.style.style`)."""

    label: str
    """Name in legends and tables (e.g. 'Probabilistic TopK')."""
    color: str
    """Hex colour ``#RRGGBB`` of its lines and markers (matplotlib) and of its dashboard chip (CSS)."""
    marker: str
    """Matplotlib marker of its points."""


@dataclass
class Export:
    """How an SAE is written in another library's format; inference there is identical unless
    ``changes`` lists differences (a lossy export, refused without ``allow_lossy``)."""

    target: str
    """The target library's architecture name (SAELens 'topk', 'jumprelu', …; sparsify 'topk')."""
    tensors: dict[str, Tensor] = field(default_factory=dict)
    """Tensors besides W_enc, W_dec and b_dec, in the target's names, on the SAE's working scale."""
    config: dict[str, Any] = field(default_factory=dict)
    """Architecture fields of the target's cfg.json (e.g. ``k``)."""
    changes: list[str] = field(default_factory=list)
    """How inference in the target differs (empty: identical)."""
    dropped: list[str] = field(default_factory=list)
    """State or hyperparameters not written (training-only or not representable)."""
    notes: list[str] = field(default_factory=list)
    """Other facts a user of the exported files must know."""
    decoder_scale: float = 1.0
    """The factor the exporter multiplies W_dec and b_dec by: an output scale the target has no
    field for, folded into the decoder (a transcoder's 1/target_scale; 1 for an autoencoder)."""


@dataclass(frozen=True)
class NotExpressible:
    """The target format has no form of this SAE at all, even a lossy one."""

    reason: str
    """Why, and what to use instead."""


@dataclass
class Imported:
    """An architecture's reading of another library's SAE: the hyperparameters the file implies
    and the state tensors in probsae's names (before the input-scale folding, which the format
    module undoes)."""

    hparams: dict[str, Any]
    tensors: dict[str, Tensor]


# ---- conversions several architectures share -----------------------------------------------------
def state_tensors(tensors: dict[str, Tensor], *names: str) -> dict[str, Tensor]:
    """The named tensors of an imported file (a missing one is the file's error)."""
    missing = [n for n in names if n not in tensors]
    if missing:
        raise SAEFileError(f"weights {missing} are missing")
    return {n: tensors[n] for n in names}


def positive_int(cfg: dict[str, Any], key: str, where: Any = None, default: Any = None) -> int:
    """``cfg[key]`` of an imported (untrusted) config as a positive integer (an integral float is
    accepted), else a ``SAEFileError`` naming the key (and ``where``, a file, when given)."""
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v) or v < 1:
        raise SAEFileError(f"{where}: " * (where is not None) + f"{key} must be a positive integer, got {v!r}")
    return int(v)


FLOAT_RANGE = (1e-30, 1e30)
"""The magnitudes a float read from an imported (untrusted) config may have (0 aside, where the field
allows it): finite, no subnormal, nothing whose reciprocal or square overflows float64."""


def finite_float(value: Any, key: str, where: Any = None, positive: bool = False,
                 limits: tuple[float, float] = FLOAT_RANGE) -> float:
    """``value`` of an imported (untrusted) config as a float: a number (not a bool, not a string),
    finite, 0 or of magnitude within ``limits``, and > 0 when ``positive``; else a ``SAEFileError``
    naming ``key`` (and ``where``, a file, when given)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    try:
        v = float(value) if ok else math.nan
    except OverflowError:  # an int too large for a float
        v = math.nan
    lo, hi = limits
    if not (math.isfinite(v) and (v == 0 or lo <= abs(v) <= hi) and (v > 0 or not positive)):
        want = "a positive" if positive else "a finite"
        raise SAEFileError(f"{where}: " * (where is not None) + f"{key} must be {want} number "
                           f"{'in' if positive else 'of magnitude in'} [{lo:g}, {hi:g}]{'' if positive else ' or 0'}, "
                           f"got {value!r:.60}")
    return v


def check_flags(cfg: dict[str, Any], keys: tuple[str, ...], where: Any = None) -> None:
    """Each of ``keys`` in an imported (untrusted) config must be true, false or null/absent (a
    string "false" would read as true); else a ``SAEFileError`` naming the key."""
    for key in keys:
        v = cfg.get(key)
        if v is not None and not isinstance(v, bool):
            raise SAEFileError(f"{where}: " * (where is not None) + f"{key} must be true or false, got {v!r:.60}")


def saelens_k(source: str, cfg: dict[str, Any]) -> int:
    """The k of a SAELens TopK-family config (v6 top level or pre-6 activation_fn_kwargs), a positive integer."""
    kwargs = cfg.get("activation_fn_kwargs")
    return positive_int({"k": cfg.get("k", kwargs.get("k") if isinstance(kwargs, dict) else None)}, "k",
                        f"SAELens {source!r} SAE")


def fold_decoder_norms(tensors: dict[str, Tensor]) -> None:
    """SAELens ``rescale_acts_by_decoder_norm``: fold the decoder row norms into the encoder (exact
    for TopK selection: codes scale with the norms, decoder rows become unit norm)."""
    n = tensors["W_dec"].norm(dim=1)
    tensors["W_enc"] = tensors["W_enc"] * n
    if "b_enc" in tensors:
        tensors["b_enc"] = tensors["b_enc"] * n
    tensors["W_dec"] = tensors["W_dec"] / n[:, None]


def standard_encoder(cfg: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """W_enc, b_enc, W_dec, b_dec of an encoder π = W_enc(x − b_dec) + b_enc, with b_dec folded into
    b_enc when the file's encoder does not subtract it."""
    fold_b_dec_into_biases(cfg, tensors, {"b_enc": tensors["W_enc"]})
    return state_tensors(tensors, "W_enc", "b_enc", "W_dec", "b_dec")


def fold_b_dec_into_biases(cfg: dict[str, Any], tensors: dict[str, Tensor], weights: dict[str, Tensor]) -> None:
    """SAELens ``apply_b_dec_to_input: false`` encodes x without subtracting b_dec; probsae always
    subtracts it, so add b_dec·W to each encoder bias (``weights``: bias name → its encoder weight)."""
    if not cfg.get("apply_b_dec_to_input", True):
        for bias, w in weights.items():
            tensors[bias] = tensors[bias] + tensors["b_dec"] @ w
