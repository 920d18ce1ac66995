"""Input normalisation owned by the SAE (saved with it), and its inverse.

Modes:
- ``unit`` (paper §4.1, default): per token, subtract the mean over the hidden dimension and
  scale to unit L2 norm. The per-token mean and norm are returned as ``NormStats`` so the
  reconstruction can be put back in the input's scale.
- ``scalar``: one scalar ``s`` fitted on a data sample so that E‖s·x‖² = d_in (SAELens'
  "expected_average_only_in"); stateless at run time.
- ``none``: identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ConfigError

NORMALIZATIONS = ("unit", "scalar", "none")
_EPS = 1e-8


@dataclass
class NormStats:
    """Per-token statistics needed to undo ``unit`` normalisation (shapes ``(..., 1)``)."""

    mean: Tensor
    norm: Tensor


class InputNormalizer(nn.Module):
    """Maps raw activations to the SAE's working scale and back."""

    def __init__(self, mode: str, d_in: int):
        super().__init__()
        if mode not in NORMALIZATIONS:
            raise ConfigError(f"unknown normalisation {mode!r}; choose one of {NORMALIZATIONS}")
        self.mode = mode
        self.d_in = d_in
        # Used by mode "scalar" only; saved with the SAE either way so files have one layout.
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, sample: Tensor) -> None:
        """Fit the ``scalar`` mode's factor on a sample of raw activations (no-op otherwise)."""
        if self.mode != "scalar":
            return
        mean_sq = sample.float().pow(2).sum(-1).mean()
        self.scale.fill_(float((self.d_in / mean_sq.clamp_min(_EPS)).sqrt()))
        self.fitted.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, NormStats | None]:
        if self.mode == "unit":
            mean = x.mean(-1, keepdim=True)
            centred = x - mean
            norm = centred.norm(dim=-1, keepdim=True).clamp_min(_EPS)
            return centred / norm, NormStats(mean, norm)
        if self.mode == "scalar":
            return x * self.scale, None
        return x, None

    def apply(self, y: Tensor, stats: NormStats | None) -> Tensor:
        """``y`` mapped with the statistics of another activation (``stats`` from ``forward``):
        what the working scale of that activation makes of ``y`` (a transcoder's target)."""
        if self.mode == "unit":
            if stats is None:
                raise ConfigError("unit normalisation needs the NormStats of the input to map another activation")
            return (y - stats.mean) / stats.norm
        return y * self.scale if self.mode == "scalar" else y

    def inverse(self, x_n: Tensor, stats: NormStats | None) -> Tensor:
        if self.mode == "unit":
            if stats is None:
                raise ConfigError("unit normalisation needs the NormStats of the encoded input to de-normalise")
            return x_n * stats.norm + stats.mean
        if self.mode == "scalar":
            return x_n / self.scale
        return x_n
