"""TopK SAE (Gao et al. 2025): keep the K largest pre-activations (ReLU on the kept values).
Optional AuxK loss on dead latents (off by default, as in the paper's baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import kernels
from ..kernels import DEFAULT_POLICY, KernelPolicy, sparse_decode
from .base import SAE
from ..errors import ConfigError
from ..validators import positive
from .config import TopKConfig
from .declarations import (
    Export, Imported, Presentation, fold_decoder_norms, positive_int, saelens_k, standard_encoder, state_tensors,
)
from .options import DEFAULT_OPTIONS, ForwardOptions
from .output import Codes, Forward
from .registry import register


@dataclass
class TopKSAEConfig(TopKConfig):
    aux_k: int = 0
    """Latents used by the AuxK loss (Gao et al. use d_in/2); 0 turns AuxK off (paper's baseline)."""
    aux_coeff: float = 1.0 / 32
    """Weight of the AuxK loss."""

    def validate(self) -> None:
        super().validate()
        positive("aux_coeff", self.aux_coeff, allow_zero=True)
        if not isinstance(self.aux_k, int) or self.aux_k < 0:
            raise ConfigError(f"aux_k must be a non-negative integer, got {self.aux_k!r}")


@register
class TopKSAE(SAE):
    architecture = "topk"
    config_class = TopKSAEConfig
    presentation = Presentation("TopK", "#0072B2", "o")
    sparsity = ("k", "K")
    toy_hparams = {"k": 8}
    reads = {"saelens": ("topk",), "sparsify": ("topk",)}
    graphable = True

    # The selection rule, stated once (kernels.select_topk picks the fast or plain path), and
    # the activation applied to the selected pre-activations.
    selection = kernels.Selection("pre")

    def activate(self, values: Tensor) -> Tensor:
        return values.relu()

    @property
    def uses_dead_mask(self) -> bool:
        """AuxK (``aux_k > 0``) reads the dead latents' pre-activations."""
        return self.cfg.aux_k > 0

    def forward_normalized(self, x_n: Tensor, target_n: Tensor, dead_mask: Tensor | None = None,
                           options: ForwardOptions = DEFAULT_OPTIONS) -> Forward:
        use_aux = self.uses_dead_mask and self.training and dead_mask is not None
        policy = options.policy
        if use_aux:  # AuxK needs the dense pre-activations of the dead latents
            pre = self.pre_acts(x_n)
            values, indices, _ = kernels.select_dense(pre, self.cfg.k, self.selection, policy)
        else:
            values, indices, _ = kernels.select_topk(x_n, self.W_enc, self.b_enc, self.b_dec, self.cfg.k, self.selection,
                                                     policy)
        values = self.activate(values)
        recon = sparse_decode(values, indices, self.W_dec, policy) + self.b_dec
        losses = {}
        if use_aux:
            losses["auxk"] = self.cfg.aux_coeff * auxk_loss(pre, target_n - recon.detach(), dead_mask, self.cfg.aux_k,
                                                            self.W_dec, policy)
        return Forward(recon, (values, indices), losses)

    def sparse_codes_normalized(self, x_n: Tensor, options: ForwardOptions = DEFAULT_OPTIONS) -> tuple[Tensor, Tensor]:
        """Inference codes of normalised inputs as (values, indices), each (B, K)."""
        with torch.no_grad():
            values, indices, _ = kernels.select_topk(x_n, self.W_enc, self.b_enc, self.b_dec, self.cfg.k, self.selection,
                                                     options.policy)
        return self.activate(values), indices

    def encode_normalized(self, x_n: Tensor, options: ForwardOptions = DEFAULT_OPTIONS) -> Codes:
        return self.sparse_codes_normalized(x_n, options)

    def _training_only(self) -> str:
        return f"aux_k={self.cfg.aux_k}, aux_coeff={self.cfg.aux_coeff} (training-only)"

    def to_saelens(self, state):
        return Export("topk", {"b_enc": state["b_enc"]}, {"k": self.cfg.k, "rescale_acts_by_decoder_norm": False},
                      dropped=[self._training_only()])

    def to_sparsify(self, state):
        return Export("topk", {"b_enc": state["b_enc"]}, {"k": self.cfg.k}, dropped=[self._training_only()])

    @classmethod
    def from_saelens(cls, source, cfg, tensors, block):
        k = saelens_k(source, cfg)
        if cfg.get("rescale_acts_by_decoder_norm"):
            fold_decoder_norms(tensors)
        return Imported({"k": k}, standard_encoder(cfg, tensors))

    @classmethod
    def from_sparsify(cls, source, cfg, tensors, block):
        return Imported({"k": positive_int(cfg, "k")}, state_tensors(tensors, "W_enc", "b_enc", "W_dec", "b_dec"))


def auxk_loss(pre: Tensor, residual: Tensor, dead_mask: Tensor, aux_k: int, W_dec: Tensor,
              policy: KernelPolicy = DEFAULT_POLICY) -> Tensor:
    """Gao et al.'s AuxK: reconstruct the residual from the top ``aux_k`` dead latents,
    normalised by the residual's variance; 0 when no latent is dead. No host sync: with fewer
    than ``aux_k`` dead latents the rest of the top ``aux_k`` are alive latents masked to −inf,
    whose ReLU'd code is 0 (no contribution, no gradient)."""
    k = min(aux_k, dead_mask.shape[-1])
    masked = pre.masked_fill(~dead_mask, float("-inf"))
    values, indices = masked.topk(k, dim=-1, sorted=False)
    recon = sparse_decode(values.relu(), indices, W_dec, policy)
    err = (recon - residual).pow(2).sum(-1).mean()
    var = (residual - residual.mean(0)).pow(2).sum(-1).mean()
    loss = torch.nan_to_num(err / var.clamp_min(1e-12), nan=0.0, posinf=0.0)
    return loss * dead_mask.any()
