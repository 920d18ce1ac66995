"""Typed configs shared by all architectures. Each architecture adds its own fields.

A config holds hyperparameters only: the sizes (d_in, d_sae) and the seed are the SAE
constructor's arguments (``SAE(cfg, d_in, d_sae, seed=0)``). A config is validated once, when it
is constructed (``validate``); the checks that need the sizes (``check_sizes``, e.g. k ≤ d_sae)
run once, where the SAE is built. ``parse`` builds one from the hyperparameters a user gave
(CLI, TOML, run.json) and remembers which they were (``given``: what run.json records)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..errors import ConfigError
from .normalization import NORMALIZATIONS

#: The default seed of a run (``TrainConfig.seed``), which draws its SAE's initial weights.
SEED = 0

#: Weight initialisation schemes (``SAEConfig.init``); 'auto' resolves per architecture.
INITS = ("auto", "unit", "orthogonal")


@dataclass
class SAEConfig:
    """Fields every SAE has."""

    normalize: str = "unit"
    """Input normalisation: 'unit' (paper: per token subtract the mean over the hidden dimension,
    scale to unit L2 norm), 'scalar' (one factor fitted so that E‖x‖² = d_in) or 'none'."""
    init: str = "auto"
    """Weight initialisation; W_enc = W_decᵀ in every scheme. 'unit': decoder rows (latent
    directions) are random directions at unit norm (Gao et al. 2025 for TopK). 'orthogonal': the
    paper's App. A literally, orthogonal(d_sae, d_in) with orthonormal columns, so at d_sae = 16 ×
    d_in the rows have norm √(d_in/d_sae) = 0.25. 'auto': the architecture's own default
    (``SAE.default_init``: 'orthogonal' for prob_topk, as measured in docs/results/offline-en-cpu-quick,
    and for jumprelu, whose penalty defaults are tuned to it; 'unit' for the others). A built SAE
    records the resolved scheme."""

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def parse(cls, hparams: Mapping[str, Any], architecture: str = ""):
        """The config holding ``hparams`` (the others at their defaults), validated, remembering
        which were given (``given``). An unknown name is a ``ConfigError`` listing the valid ones."""
        known = cls.field_names()
        unknown = sorted(set(hparams) - set(known))
        if unknown:
            raise ConfigError(f"unknown hyperparameter(s) {unknown} for architecture {architecture or cls.__name__!r}; "
                              f"valid: {', '.join(sorted(known))}")
        cfg = cls(**hparams)
        cfg._given = tuple(hparams)
        return cfg

    def given(self) -> dict[str, Any]:
        """The hyperparameters set explicitly, by name, with their values (run.json's ``hparams``):
        those ``parse`` was given; for a config constructed directly, those that differ from the defaults."""
        names = getattr(self, "_given", None)
        if names is None:
            names = [f.name for f in fields(self) if getattr(self, f.name) != f.default]
        return {name: getattr(self, name) for name in names}

    def __str__(self) -> str:
        """The given hyperparameters as a dict (how run logs print a run's hyperparameters)."""
        return str(self.given())

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first invalid field (the checks that need no sizes;
        called by the constructor)."""
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {INITS}, got {self.init!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")

    def check_sizes(self, d_in: int | None, d_sae: int) -> None:
        """Raise ``ConfigError`` unless the sizes are valid and these hyperparameters fit them
        (by the SAE constructor; before any data is extracted, ``RunSpec.validate`` checks a given
        ``d_sae`` with ``d_in=None``, the width not known yet)."""
        for name, value in (("d_in", d_in), ("d_sae", d_sae)):
            if value is None and name == "d_in":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass
class TopKConfig(SAEConfig):
    """Fields of the TopK family (exactly/averagely K active latents per token)."""

    k: int = 32
    """Number of latents kept per token."""

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ConfigError(f"k must be a positive integer, got {self.k!r}")

    def check_sizes(self, d_in: int | None, d_sae: int) -> None:
        super().check_sizes(d_in, d_sae)
        if self.k > d_sae:
            raise ConfigError(f"k={self.k} is larger than d_sae={d_sae}")


def check_seed(seed: int) -> None:
    """Raise ``ConfigError`` unless ``seed`` is a 64-bit integer (an SAE's initialisation seed)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not -(1 << 63) <= seed < 1 << 63:
        raise ConfigError(f"seed must be an integer (64-bit), got {seed!r}")
