"""Variational TopK SAE (vSAE, 2025): a Gaussian posterior per latent, TopK on a sample.

    μ = ReLU(W_enc (x − b_dec) + b_enc);  log σ² = W_var (x − b_dec) + b_var  (or fixed)
    training: z = μ + σ ⊙ ε;  inference: z = μ;  codes = ReLU(TopK(z))
    L = ‖x − x̂‖² + c · Σ_i KL(N(μ_i, σ_i²) ‖ N(0, 1))   (summed over latents, mean over tokens)

The paper cites it as a probabilistic SAE that kills latents; it is a comparison point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..kernels import sparse_decode
from .base import SAE
from ..validators import positive
from .config import SEED, TopKConfig
from .declarations import Export, Presentation
from .options import DEFAULT_OPTIONS, ForwardOptions
from .output import Codes, Forward
from .registry import register


@dataclass
class VSAETopKConfig(TopKConfig):
    kl_coeff: float = 1e-4
    """Weight c of the KL term (summed over latents)."""
    learn_var: bool = True
    """Learn log σ² with a linear head; False keeps σ fixed at ``init_std``."""
    init_std: float = 0.05
    """Initial (or fixed) posterior standard deviation σ."""

    def validate(self) -> None:
        super().validate()
        positive("kl_coeff", self.kl_coeff, allow_zero=True)
        positive("init_std", self.init_std)


@register
class VSAETopKSAE(SAE):
    architecture = "vsae_topk"
    config_class = VSAETopKConfig
    presentation = Presentation("vSAE TopK", "#8C564B", "<")
    sparsity = ("k", "K")
    toy_hparams = {"k": 8, "kl_coeff": 1e-5}

    def __init__(self, cfg: VSAETopKConfig, d_in: int, d_sae: int, seed: int = SEED):
        super().__init__(cfg, d_in, d_sae, seed)
        log_var = 2 * math.log(cfg.init_std)
        if cfg.learn_var:
            self.W_var = nn.Parameter(torch.zeros(d_in, d_sae))
            self.b_var = nn.Parameter(torch.full((d_sae,), log_var))
        else:
            self.register_buffer("b_var", torch.full((d_sae,), log_var))
        self.noise_generator: torch.Generator | None = None

    def log_var(self, x_n: Tensor) -> Tensor:
        if self.cfg.learn_var:
            return (x_n - self.b_dec) @ self.W_var + self.b_var
        return self.b_var.expand(x_n.shape[0], -1)

    def forward_normalized(self, x_n: Tensor, target_n: Tensor, dead_mask: Tensor | None = None,
                           options: ForwardOptions = DEFAULT_OPTIONS) -> Forward:
        mu = self.pre_acts(x_n).relu()
        log_var = self.log_var(x_n)
        z = mu
        if self.training:
            eps = torch.randn(mu.shape, generator=self.noise_generator, device=mu.device, dtype=mu.dtype)
            z = mu + (0.5 * log_var).exp() * eps
        values, indices = z.topk(self.cfg.k, dim=-1, sorted=False)
        values = values.relu()
        recon = sparse_decode(values, indices, self.W_dec, options.policy) + self.b_dec
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1).mean()
        return Forward(recon, (values, indices), {"kl": self.cfg.kl_coeff * kl})

    def encode_normalized(self, x_n: Tensor, options: ForwardOptions = DEFAULT_OPTIONS) -> Codes:
        mu = self.pre_acts(x_n).relu()
        values, indices = mu.topk(self.cfg.k, dim=-1, sorted=False)
        return values.relu(), indices

    # Inference (TopK of μ = ReLU(W_enc(x − b_dec) + b_enc)) is exactly a TopK SAE's.
    def to_saelens(self, state):
        return Export("topk", {"b_enc": state["b_enc"]}, {"k": self.cfg.k, "rescale_acts_by_decoder_norm": False},
                      dropped=["the variance head (W_var, b_var) and kl_coeff: training-only (inference codes use μ, "
                               "i.e. TopK of ReLU(W_enc(x − b_dec) + b_enc), which SAELens 'topk' computes)"])

    def to_sparsify(self, state):
        return Export("topk", {"b_enc": state["b_enc"]}, {"k": self.cfg.k},
                      dropped=["the variance head (W_var, b_var) and kl_coeff: training-only (inference uses μ)"])
