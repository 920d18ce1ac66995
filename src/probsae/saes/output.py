"""What an architecture's forward returns (``Forward``) and what ``sae(x)`` returns (``SAEOutput``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import torch
from torch import Tensor

Codes = Union[Tensor, tuple[Tensor, Tensor]]
"""Latent codes of a batch: dense (B, d_sae), or sparse as (values, indices), each (B, K)."""


def densify(values: Tensor, indices: Tensor, d_sae: int) -> Tensor:
    """Sparse codes (..., K) and their latent indices → dense codes (..., d_sae)."""
    return values.new_zeros(*values.shape[:-1], d_sae).scatter(-1, indices, values)


@dataclass
class Forward:
    """What an architecture's ``forward_normalized`` returns. ``SAE.forward`` turns it into the
    ``SAEOutput``: it adds the reconstruction MSE, sums the losses and de-normalises ``recon``."""

    recon: Tensor
    """Reconstruction on the normalised scale (B, d_in)."""
    codes: Codes
    """The codes that produced it: dense (B, d_sae) or sparse (values, indices)."""
    losses: dict[str, Tensor] = field(default_factory=dict)
    """Loss terms besides the reconstruction MSE, already weighted (e.g. ``{"l1": λ·Σ f‖d‖}``)."""
    aux: dict[str, Tensor] = field(default_factory=dict)
    """Extra per-token outputs of the training forward, detached (e.g. prob_topk's gate values)."""


@dataclass
class SAEOutput:
    """Result of ``sae(x)``.

    ``recon`` is in the input's (raw) scale; ``recon_normalized`` and ``x_normalized`` are on the
    SAE's working scale, where the paper's metrics are computed. Sparse architectures fill
    ``top_values``/``top_indices`` (B, K) and build the dense ``codes`` only when asked.
    """

    recon: Tensor
    loss: Tensor
    losses: dict[str, Tensor]
    recon_normalized: Tensor
    x_normalized: Tensor
    top_values: Tensor | None = None
    top_indices: Tensor | None = None
    dense_codes: Tensor | None = None
    aux: dict[str, Tensor] = field(default_factory=dict)
    d_sae: int = 0

    @property
    def codes(self) -> Tensor:
        """Dense codes (B, d_sae)."""
        if self.dense_codes is None:
            assert self.top_values is not None and self.top_indices is not None
            self.dense_codes = densify(self.top_values, self.top_indices, self.d_sae)
        return self.dense_codes

    def fired(self) -> Tensor:
        """Bool mask (d_sae,) of latents with a non-zero code for any token of the batch."""
        if self.top_indices is not None and self.dense_codes is None:
            # No boolean-mask indexing (a host sync on GPUs): scatter "non-zero" with max.
            nonzero = (self.top_values.reshape(-1) != 0).to(torch.uint8)
            mask = torch.zeros(self.d_sae, dtype=torch.uint8, device=nonzero.device)
            return mask.scatter_reduce_(0, self.top_indices.reshape(-1), nonzero, "amax").bool()
        return (self.codes != 0).reshape(-1, self.d_sae).any(0)

    def l0(self) -> Tensor:
        """Mean number of non-zero codes per token."""
        if self.top_values is not None and self.dense_codes is None:
            return (self.top_values != 0).sum(-1).float().mean()
        return (self.codes != 0).sum(-1).float().mean()
