"""JumpReLU SAE (Rajamanoharan et al. 2024b).

    π = W_enc (x − b_dec) + b_enc;  f = π ⊙ H(π − θ);  L = ‖x − x̂‖² + λ Σ_i H(π_i − θ_i)

θ = exp(log_threshold) per latent. H has zero gradient, so θ learns through straight-through
pseudo-derivatives with a rectangle kernel K of bandwidth ε:
    ∂f/∂θ = −(θ/ε) K((π − θ)/ε),   ∂H/∂θ = −(1/ε) K((π − θ)/ε).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import SAE
from ..validators import positive
from .config import SEED, SAEConfig
from .declarations import Export, Imported, NotExpressible, Presentation, standard_encoder, state_tensors
from .options import DEFAULT_OPTIONS, ForwardOptions
from .output import Forward
from .registry import register


def rectangle(u: Tensor) -> Tensor:
    """K(u) = 1[|u| < 1/2]."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


def _save(ctx, pre: Tensor, log_threshold: Tensor, bandwidth: float) -> Tensor:
    """Keep what the backward needs; returns θ = exp(log θ)."""
    theta = log_threshold.exp()
    ctx.save_for_backward(pre, theta)
    ctx.bandwidth = bandwidth
    return theta


def _log_threshold_grad(coeff: Tensor | float, pre: Tensor, theta: Tensor, eps: float, grad: Tensor) -> Tensor:
    """Σ_b −coeff · K((π − θ)/ε) · grad, times θ (chain rule through θ = exp(log θ))."""
    return (-coeff * rectangle((pre - theta) / eps) * grad).sum(0) * theta


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre: Tensor, log_threshold: Tensor, bandwidth: float) -> Tensor:
        theta = _save(ctx, pre, log_threshold, bandwidth)
        return pre * (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_pre = grad * (pre > theta).to(pre.dtype)
        return grad_pre, _log_threshold_grad(theta / eps, pre, theta, eps, grad), None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre: Tensor, log_threshold: Tensor, bandwidth: float) -> Tensor:
        theta = _save(ctx, pre, log_threshold, bandwidth)
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        pre, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        return None, _log_threshold_grad(1.0 / eps, pre, theta, eps, grad), None


@dataclass
class JumpReLUConfig(SAEConfig):
    l0_coeff: float = 5e-3
    """λ of the L0 penalty Σ H(π − θ)."""
    threshold_init: float = 0.05
    """Initial threshold θ of every latent (on the unit-normalised scale: Gemma Scope's 1e-3
    belongs to inputs of norm √d_in and learns too slowly here)."""
    bandwidth: float = 0.05
    """ε, the width of the rectangle kernel of the straight-through gradients."""

    def validate(self) -> None:
        super().validate()
        positive("l0_coeff", self.l0_coeff, allow_zero=True)
        positive("threshold_init", self.threshold_init)
        positive("bandwidth", self.bandwidth)


@register
class JumpReLUSAE(SAE):
    architecture = "jumprelu"
    # Not re-measured with unit rows: its l0_coeff/threshold_init are tuned to the orthogonal init (the toy
    # recovery test falls from ≥ 0.8 to 0.72 with "unit"), so it keeps the init it was tuned with.
    default_init = "orthogonal"
    config_class = JumpReLUConfig
    presentation = Presentation("JumpReLU", "#E69F00", "P")
    sparsity = ("l0_coeff", "λ")
    toy_hparams = {"l0_coeff": 5e-3}
    reads = {"saelens": ("jumprelu",)}

    def __init__(self, cfg: JumpReLUConfig, d_in: int, d_sae: int, seed: int = SEED):
        super().__init__(cfg, d_in, d_sae, seed)
        self.log_threshold = nn.Parameter(torch.full((d_sae,), math.log(cfg.threshold_init)))

    def forward_normalized(self, x_n: Tensor, target_n: Tensor, dead_mask: Tensor | None = None,
                           options: ForwardOptions = DEFAULT_OPTIONS) -> Forward:
        pre = self.pre_acts(x_n)
        f = _JumpReLU.apply(pre, self.log_threshold, self.cfg.bandwidth)
        recon = self.decode_normalized(f)
        l0 = _Step.apply(pre, self.log_threshold, self.cfg.bandwidth).sum(-1).mean()
        return Forward(recon, f, {"l0": self.cfg.l0_coeff * l0})

    def encode_normalized(self, x_n: Tensor, options: ForwardOptions = DEFAULT_OPTIONS) -> Tensor:
        pre = self.pre_acts(x_n)
        return pre * (pre > self.log_threshold.exp())

    def to_saelens(self, state):
        return Export("jumprelu", {"b_enc": state["b_enc"], "threshold": state["log_threshold"].exp()},
                      dropped=[f"l0_coeff={self.cfg.l0_coeff}, bandwidth={self.cfg.bandwidth} (training-only)"])

    def to_sparsify(self, state):
        return NotExpressible("sparsify has no JumpReLU SAE (it only has TopK/GroupMax coders); export to SAELens instead")

    @classmethod
    def from_saelens(cls, source, cfg, tensors, block):
        out = standard_encoder(cfg, tensors)
        # θ ≤ 0 behaves like θ = 0 in SAELens (ReLU(pre)·1[pre > θ]); log 0 = -inf keeps that exactly
        out["log_threshold"] = state_tensors(tensors, "threshold")["threshold"].clamp_min(0).log()
        return Imported({}, out)
