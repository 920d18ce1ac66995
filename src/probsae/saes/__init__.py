"""SAE architectures: one module each, one registry, one interface (``base.SAE``)."""

from . import abstopk, batchtopk, gated, jumprelu, prob_topk, relu, topk, vsae_topk  # noqa: F401  (register)
from .base import SAE
from .config import SAEConfig, TopKConfig
from .metadata import SAEMetadata
from .normalization import NormStats
from .output import SAEOutput
from .registry import architectures, build_sae, get_class, hyperparameters, load_sae

ARCHITECTURES: tuple[str, ...] = architectures()

__all__ = ["SAE", "SAEConfig", "SAEMetadata", "TopKConfig", "SAEOutput", "NormStats", "ARCHITECTURES", "build_sae",
           "load_sae", "get_class", "hyperparameters"]
