"""AbsTopK SAE (2025): keep the K pre-activations of largest magnitude, with their sign.
L0, density and liveness count codes ≠ 0 (not > 0)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .. import kernels
from .declarations import Export, Presentation
from .registry import register
from .topk import TopKSAE, TopKSAEConfig


@dataclass
class AbsTopKConfig(TopKSAEConfig):
    """Same fields as TopK (k, optional AuxK)."""


@register
class AbsTopKSAE(TopKSAE):
    architecture = "abstopk"
    config_class = AbsTopKConfig
    presentation = Presentation("AbsTopK", "#7F7F7F", "X")
    reads = {"saelens": ("abstopk",)}
    toy_hparams = {"k": 8}

    selection = kernels.Selection("abs")

    def activate(self, values: Tensor) -> Tensor:
        return values

    def to_saelens(self, state):
        export = super().to_saelens(state)
        export.target = "abstopk"
        export.notes.append("needs a SAELens version that registers the 'abstopk' architecture (6.54.12 does)")
        return export

    def to_sparsify(self, state):
        return Export("topk", {"b_enc": state["b_enc"]}, {"k": self.cfg.k}, changes=[
            "selection: probsae keeps the K largest |pre-activations| with their sign; sparsify keeps the K largest "
            "signed pre-activations and applies ReLU, so negative codes are lost"])
