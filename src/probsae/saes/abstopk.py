"""AbsTopK SAE (2025): keep the K pre-activations of largest magnitude, with their sign.
L0, density and liveness count codes ≠ 0 (not > 0)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .. import kernels
from .registry import register
from .topk import TopKSAE, TopKSAEConfig


@dataclass
class AbsTopKConfig(TopKSAEConfig):
    """Same fields as TopK (k, optional AuxK)."""


@register
class AbsTopKSAE(TopKSAE):
    architecture = "abstopk"
    config_class = AbsTopKConfig

    selection = kernels.Selection("abs")

    def activate(self, values: Tensor) -> Tensor:
        return values
