"""Decoding from (values, indices) without building the dense (B, d_sae) code matrix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .policy import DEFAULT_POLICY, KernelPolicy


class _TritonDecode(torch.autograd.Function):
    """Triton path. Forward: gather the K decoder rows per token, weighted sum (``gather_sum``).
    Backward: grad values[b,j] = ⟨grad_out[b], W_dec[idx[b,j]]⟩ (``gather_dot``, B·K dot
    products) and grad W_dec only for the selected latents (``scatter_outer``: atomic adds, or
    sorted by latent and deterministic; ``KernelPolicy.scatter``)."""

    @staticmethod
    def forward(ctx, values, indices, W_dec, scatter):
        from . import _triton

        ctx.save_for_backward(values, indices, W_dec)
        ctx.scatter = scatter
        return _triton.gather_sum(values, indices, W_dec).to(W_dec.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        from . import _triton
        from .select import scatter_deterministic

        values, indices, W_dec = ctx.saved_tensors
        grad_values = grad_W = None
        grad_out = grad_out.float().contiguous()
        if ctx.needs_input_grad[0]:
            grad_values = _triton.gather_dot(grad_out, W_dec, indices).to(values.dtype)
        if ctx.needs_input_grad[2]:
            grad_W, _ = _triton.scatter_outer(values, indices, grad_out, W_dec.shape[0],
                                              deterministic=scatter_deterministic(ctx.scatter))
            grad_W = grad_W.to(W_dec.dtype)
        return grad_values, None, grad_W, None


def sparse_decode(values: Tensor, indices: Tensor, W_dec: Tensor, policy: KernelPolicy = DEFAULT_POLICY) -> Tensor:
    """Σ_j values[b, j] · W_dec[indices[b, j]] for each row b (no bias).

    A gather-and-sum whose backward touches only the K selected decoder rows and values per
    token: Triton kernels on the Triton path (``policy.backend``), else ``embedding_bag``."""
    from .select import use_triton

    values = values.to(W_dec.dtype)
    if use_triton(W_dec, policy):
        return _TritonDecode.apply(values, indices, W_dec, policy.scatter)
    return F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum")


def sparse_decode_reference(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """The dense reference: scatter into (B, d_sae), then a matmul."""
    dense = values.new_zeros(values.shape[0], W_dec.shape[0]).scatter(1, indices, values)
    return dense @ W_dec
