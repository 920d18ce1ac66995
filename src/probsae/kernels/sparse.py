"""Decoding from (values, indices) without building the dense (B, d_sae) code matrix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sparse_decode(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """Σ_j values[b, j] · W_dec[indices[b, j]] for each row b (no bias).

    Uses ``embedding_bag`` (a gather-and-sum whose backward touches only the K selected decoder
    rows and the K values per token)."""
    return F.embedding_bag(indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum")


def sparse_decode_reference(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """The dense reference: scatter into (B, d_sae), then a matmul."""
    dense = values.new_zeros(values.shape[0], W_dec.shape[0]).scatter(1, indices, values)
    return dense @ W_dec
