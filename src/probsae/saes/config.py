"""Typed configs shared by all architectures. Each architecture adds its own fields."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import ConfigError
from .normalization import NORMALIZATIONS

#: Weight initialisation schemes (``SAEConfig.init``); 'auto' resolves per architecture.
INITS = ("auto", "unit", "orthogonal")


@dataclass
class SAEConfig:
    """Fields every SAE has."""

    d_in: int
    """Width of the input activations (the model's hidden size)."""
    d_sae: int
    """Number of latents (dictionary size). The paper uses 16 × d_in."""
    normalize: str = "unit"
    """Input normalisation: 'unit' (paper: per token subtract the mean over the hidden dimension,
    scale to unit L2 norm), 'scalar' (one factor fitted so that E‖x‖² = d_in) or 'none'."""
    seed: int = 0
    """Seed of the weight initialisation (the same seed gives the same initial weights)."""
    init: str = "auto"
    """Weight initialisation; W_enc = W_decᵀ in every scheme. 'unit': decoder rows (latent
    directions) are random directions at unit norm (Gao et al. 2025 for TopK). 'orthogonal': the
    paper's App. A literally, orthogonal(d_sae, d_in) with orthonormal columns, so at d_sae = 16 ×
    d_in the rows have norm √(d_in/d_sae) = 0.25. 'auto': the architecture's own default
    (``SAE.default_init``: 'orthogonal' for prob_topk, as measured in docs/results/offline-en-cpu-quick,
    and for jumprelu, whose penalty defaults are tuned to it; 'unit' for the others). A built SAE
    records the resolved scheme."""

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first invalid field."""
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {INITS}, got {self.init!r}")
        for name in ("d_in", "d_sae"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not -(1 << 63) <= self.seed < 1 << 63:
            raise ConfigError(f"seed must be an integer (64-bit), got {self.seed!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")

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
        if self.k > self.d_sae:
            raise ConfigError(f"k={self.k} is larger than d_sae={self.d_sae}")
