"""Gated SAE (Rajamanoharan et al. 2024a), DeepMind's convention (see METHODS.md).

    x̃ = x − b_dec;  π_gate = W_enc x̃ + b_gate;  π_mag = (exp(r_mag) ⊙ W_enc) x̃ + b_mag
    f = 1[π_gate > 0] ⊙ ReLU(π_mag);  x̂ = W_dec f + b_dec
    L = ‖x − x̂‖² + λ ‖ReLU(π_gate)‖₁ + ‖x − (sg(W_dec) ReLU(π_gate) + sg(b_dec))‖²

Decoder rows are kept at unit norm after every optimiser step (the L1 is therefore unweighted).
``W_enc`` is the shared gate weight (named as in SAELens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import SAE
from ..validators import positive
from .config import SEED, SAEConfig
from .declarations import Export, Imported, NotExpressible, Presentation, fold_b_dec_into_biases, state_tensors
from .options import DEFAULT_OPTIONS, ForwardOptions
from .output import Forward
from .registry import register


@dataclass
class GatedConfig(SAEConfig):
    l1_coeff: float = 0.05
    """λ of the L1 penalty on ReLU(π_gate) (paper: 0.05–0.1)."""

    def validate(self) -> None:
        super().validate()
        positive("l1_coeff", self.l1_coeff, allow_zero=True)


@register
class GatedSAE(SAE):
    architecture = "gated"
    config_class = GatedConfig
    has_encoder_bias = False
    presentation = Presentation("Gated", "#CC79A7", "D")
    sparsity = ("l1_coeff", "λ")
    toy_hparams = {"l1_coeff": 0.3}
    reads = {"saelens": ("gated",)}

    def __init__(self, cfg: GatedConfig, d_in: int, d_sae: int, seed: int = SEED):
        super().__init__(cfg, d_in, d_sae, seed)
        self.b_gate = nn.Parameter(torch.zeros(d_sae))
        self.b_mag = nn.Parameter(torch.zeros(d_sae))
        self.r_mag = nn.Parameter(torch.zeros(d_sae))
        self.after_optimizer_step()  # unit-norm decoder rows from the start

    def _pis(self, x_n: Tensor) -> tuple[Tensor, Tensor]:
        x_c = x_n - self.b_dec
        pi_gate = x_c @ self.W_enc + self.b_gate
        pi_mag = x_c @ (self.W_enc * self.r_mag.exp()) + self.b_mag
        return pi_gate, pi_mag

    def forward_normalized(self, x_n: Tensor, target_n: Tensor, dead_mask: Tensor | None = None,
                           options: ForwardOptions = DEFAULT_OPTIONS) -> Forward:
        pi_gate, pi_mag = self._pis(x_n)
        f = (pi_gate > 0).to(pi_mag.dtype) * pi_mag.relu()
        recon = self.decode_normalized(f)
        gate_act = pi_gate.relu()
        aux_recon = gate_act @ self.W_dec.detach() + self.b_dec.detach()
        losses = {
            "l1": self.cfg.l1_coeff * gate_act.sum(-1).mean(),
            "aux": (aux_recon - target_n).pow(2).sum(-1).mean(),
        }
        return Forward(recon, f, losses)

    def encode_normalized(self, x_n: Tensor, options: ForwardOptions = DEFAULT_OPTIONS) -> Tensor:
        pi_gate, pi_mag = self._pis(x_n)
        return (pi_gate > 0).to(pi_mag.dtype) * pi_mag.relu()

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    def to_saelens(self, state):
        return Export("gated", {k: state[k] for k in ("b_gate", "r_mag", "b_mag")},
                      dropped=[f"l1_coeff={self.cfg.l1_coeff} (training-only)"])

    def to_sparsify(self, state):
        return NotExpressible("sparsify has no Gated SAE (it only has TopK/GroupMax coders); export to SAELens instead")

    @classmethod
    def from_saelens(cls, source, cfg, tensors, block):
        w = tensors["W_enc"]
        fold_b_dec_into_biases(cfg, tensors, {"b_gate": w, "b_mag": w * tensors["r_mag"].exp()})
        return Imported({}, state_tensors(tensors, "W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"))
