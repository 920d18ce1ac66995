"""SAE architectures: one module each, one registry, one interface (``base.SAE``).

The import below is the registry's list of architecture modules: importing one registers it, and
this order is the order reports, tables and ``ARCHITECTURES`` show them in."""

from . import topk, prob_topk, relu, gated, abstopk, batchtopk, jumprelu, vsae_topk, matryoshka_batchtopk, transcoder  # noqa: F401,I001
from .base import SAE
from .config import SAEConfig, TopKConfig
from .metadata import SAEMetadata
from .normalization import NormStats
from .output import SAEOutput
from .registry import architectures, build_sae, get_class, hyperparameters, load_sae, missing_declarations

ARCHITECTURES: tuple[str, ...] = architectures()

__all__ = ["SAE", "SAEConfig", "SAEMetadata", "TopKConfig", "SAEOutput", "NormStats", "ARCHITECTURES",
           "build_sae", "load_sae", "get_class", "hyperparameters", "missing_declarations"]
