"""ReLU SAE with an L1 penalty weighted by decoder norms (paper eq. 2–3; Bricken et al. 2023).

    f = ReLU(W_enc (x − b_dec) + b_enc);  x̂ = W_dec f + b_dec
    L = ‖x − x̂‖² + λ Σ_i f_i ‖d_i‖

λ is on this library's loss scale (unit-norm inputs, squared error summed over the hidden
dimension): the paper's values (5–40) come from an unstated loss scaling and would silence every
latent here; sweep presets choose λ so the L0 range matches the TopK runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import SAE
from ..validators import positive
from .config import SAEConfig
from .declarations import Export, Imported, NotExpressible, Presentation, standard_encoder
from .options import DEFAULT_OPTIONS, ForwardOptions
from .output import Forward
from .registry import register


@dataclass
class ReLUConfig(SAEConfig):
    l1_coeff: float = 0.05
    """λ of the decoder-norm-weighted L1 penalty."""

    def validate(self) -> None:
        super().validate()
        positive("l1_coeff", self.l1_coeff, allow_zero=True)


@register
class ReLUSAE(SAE):
    architecture = "relu"
    config_class = ReLUConfig
    presentation = Presentation("ReLU", "#009E73", "^")
    sparsity = ("l1_coeff", "λ")
    toy_hparams = {"l1_coeff": 0.1}
    reads = {"saelens": ("standard",)}

    def forward_normalized(self, x_n: Tensor, target_n: Tensor, dead_mask: Tensor | None = None,
                           options: ForwardOptions = DEFAULT_OPTIONS) -> Forward:
        f = self.pre_acts(x_n).relu()
        recon = self.decode_normalized(f)
        l1 = (f * self.W_dec.norm(dim=1)).sum(-1).mean()
        return Forward(recon, f, {"l1": self.cfg.l1_coeff * l1})

    def encode_normalized(self, x_n: Tensor, options: ForwardOptions = DEFAULT_OPTIONS) -> Tensor:
        return self.pre_acts(x_n).relu()

    def to_saelens(self, state):
        return Export("standard", {"b_enc": state["b_enc"]}, dropped=[f"l1_coeff={self.cfg.l1_coeff} (training-only)"])

    def to_sparsify(self, state):
        return NotExpressible("sparsify has no ReLU SAE (it only has TopK/GroupMax coders); export to SAELens instead")

    @classmethod
    def from_saelens(cls, source, cfg, tensors, block):
        return Imported({}, standard_encoder(cfg, tensors))
