"""AbsTopK SAE (2025): keep the K pre-activations of largest magnitude, with their sign.
L0, density and liveness count codes ≠ 0 (not > 0)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .registry import register
from .topk import TopKSAE, TopKSAEConfig


@dataclass
class AbsTopKConfig(TopKSAEConfig):
    """Same fields as TopK (k, optional AuxK)."""


@register
class AbsTopKSAE(TopKSAE):
    architecture = "abstopk"
    config_class = AbsTopKConfig

    score_fn = staticmethod(torch.abs)

    def activate(self, values: Tensor) -> Tensor:
        return values

    def select(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        indices = pre.abs().topk(self.cfg.k, dim=-1, sorted=False).indices
        return pre.gather(-1, indices), indices
