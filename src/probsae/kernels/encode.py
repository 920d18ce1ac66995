"""Encode-and-select for the TopK family with a sparse backward.

``sparse_encode`` computes the pre-activations ``pre = (x − b_dec) W_enc (+ b_enc)``, picks K latents
per token by a selection score (the pre-activations themselves, or any score derived from them),
and returns the pre-activations at the selected latents and their indices. Only those B·K entries
carry gradient, so the backward never builds the dense (B, d_sae) gradient nor runs the two dense
matmuls autograd would (grad W_enc = x_cᵀ G and grad x_c = G W_encᵀ, each as costly as the
forward matmul). Instead:

- grad W_enc[:, m] = Σ_{(b,j): idx[b,j]=m} g[b,j] · x_c[b]: a gather-and-sum per latent, done with
  ``embedding_bag`` over the token rows after sorting the B·K selections by latent;
- grad b_enc[m]   = Σ_{(b,j): idx[b,j]=m} g[b,j]   (``index_add_``);
- grad b_dec      = −W_enc · grad b_enc            (one (d_in × d_sae) mat-vec: x_c = x − b_dec);
- grad x (only if x requires grad) = ``embedding_bag`` of the selected encoder columns.

The forward may run in row chunks (``chunk``) so each chunk's (chunk, d_sae) pre-activations and
scores stay in cache and the full (B, d_sae) matrix is never held (lower peak memory). With
``mm_dtype=torch.bfloat16`` the encoder matmul runs in bf16 (fp32 master weights, fp32 selection
and backward). ``sparse_encode_reference`` is the plain autograd version the tests compare with.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .topk import topk_groups

ScoreFn = Callable[[Tensor], Tensor]
"""Maps a chunk of pre-activations (C, d_sae) to selection scores (C, d_sae), without gradient.
It must not modify its input; it may return a fresh tensor it owns."""


def _select(xc: Tensor, W_enc: Tensor, b_enc: Tensor | None, k: int, score_fn: ScoreFn | None,
            chunk: int | None, mm_dtype: torch.dtype | None, want_scores: bool, group_topk: bool = True):
    B = xc.shape[0]
    values = xc.new_empty(B, k)
    indices = torch.empty(B, k, dtype=torch.long, device=xc.device)
    scores = xc.new_empty(B, k) if want_scores and score_fn is not None else None
    W = W_enc
    lowp = mm_dtype is not None and mm_dtype != W.dtype
    if lowp:
        W, xc = W.to(mm_dtype), xc.to(mm_dtype)
    topk = topk_groups if group_topk else _torch_topk
    step = chunk_rows(B, W.shape[1], chunk)
    for s in range(0, B, step):
        e = min(B, s + step)
        if lowp:
            pre = (xc[s:e] @ W).to(values.dtype)
            if b_enc is not None:
                pre.add_(b_enc)
        else:
            pre = torch.addmm(b_enc, xc[s:e], W) if b_enc is not None else xc[s:e] @ W
        if score_fn is None:
            values[s:e], indices[s:e] = topk(pre, k)
        else:
            sc = score_fn(pre)
            top, idx = topk(sc, k)
            indices[s:e] = idx
            torch.gather(pre, 1, idx, out=values[s:e])
            if scores is not None:
                scores[s:e] = top
    return values, indices, scores


def chunk_rows(B: int, n_latents: int, chunk: int | str | None) -> int:
    """Rows per forward chunk for ``chunk`` = rows, None (all) or 'auto' (~6M pre-activations,
    a power of two ≥ 64 rows)."""
    if chunk == "auto":
        chunk = max(64, 1 << ((6 << 20) // max(1, n_latents)).bit_length() - 1)
    return B if not chunk or int(chunk) >= B else int(chunk)


def _torch_topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    return scores.topk(k, dim=1, sorted=False)


class SparseEncode(torch.autograd.Function):
    """Encode-and-select with a sparse backward, on any backend: ``select_fn(xc)`` returns
    (values, indices, scores or None) from the centred inputs, ``grads_fn(needs, g, xc, W_enc,
    indices)`` the gradients of (x, W_enc, b_enc, b_dec) (None where not needed)."""

    @staticmethod
    def forward(ctx, x, W_enc, b_enc, b_dec, select_fn, grads_fn):
        with torch.autocast(x.device.type, enabled=False):
            xc = x - b_dec if b_dec is not None else x
            values, indices, scores = select_fn(xc)
        ctx.save_for_backward(xc, W_enc, indices)
        ctx.grads_fn = grads_fn
        if scores is None:
            scores = values.detach()
        ctx.mark_non_differentiable(indices, scores)
        return values, indices, scores

    @staticmethod
    def backward(ctx, g, _g_idx, _g_scores):
        xc, W_enc, indices = ctx.saved_tensors
        return (*ctx.grads_fn(ctx.needs_input_grad[:4], g, xc, W_enc, indices), None, None)


def _cpu_grads(needs, g, xc, W_enc, indices):
    """grad W_enc by a per-latent gather-sum after one sort, grad b_enc by index_add_, grad b_dec
    as a mat-vec, grad x as an embedding_bag of the selected encoder columns."""
    need_x, need_W, need_be, need_bd = needs
    grad_x = grad_W = grad_be = grad_bd = None
    g = g.to(xc.dtype)
    M = W_enc.shape[1]
    if need_be or need_bd:
        per_latent = torch.zeros(M, dtype=g.dtype, device=g.device).index_add_(0, indices.reshape(-1), g.reshape(-1))
        if need_be:
            grad_be = per_latent
        if need_bd:
            grad_bd = -(W_enc @ per_latent)
    if need_W:
        grad_W = latent_bag_sum(indices, xc, g, M).t()  # the layout of a latent-major W_enc: no copy
    if need_x:
        grad_x = F.embedding_bag(indices, W_enc.t().contiguous(), per_sample_weights=g, mode="sum")
    return grad_x, grad_W, grad_be, grad_bd


def latent_order(indices: Tensor, n_latents: int) -> tuple[Tensor, Tensor, Tensor]:
    """The B·K selections of ``indices`` (B, K) grouped by latent: (order, tokens, offsets) with
    ``order`` a permutation of the flat selections sorted by latent, ``tokens = order // K`` and
    ``offsets[m]`` where latent m's group starts."""
    k = indices.shape[-1]
    flat = indices.reshape(-1)
    # int32 keys sort about twice as fast as int64 on CPU; any order within a latent is fine.
    keys = flat.to(torch.int32) if n_latents < 2**31 else flat
    order = torch.argsort(keys)
    counts = torch.bincount(flat, minlength=n_latents)
    offsets = counts.cumsum(0) - counts
    tokens = torch.div(order, k, rounding_mode="floor")
    return order, tokens, offsets


def latent_bag_sum(indices: Tensor, rows: Tensor, weights: Tensor, n_latents: int) -> Tensor:
    """(n_latents, d): out[m] = Σ_{(b,j): indices[b,j] = m} weights[b,j] · rows[b].

    Groups the B·K selections by latent (``latent_order``), then one ``embedding_bag`` with a bag
    per latent: a gather-and-sum that writes each output row once (no (B·K, d) intermediate, no
    atomics, parallel over latents)."""
    order, tokens, offsets = latent_order(indices, n_latents)
    return F.embedding_bag(tokens, rows, offsets, mode="sum", per_sample_weights=weights.reshape(-1)[order])


def sparse_encode(x: Tensor, W_enc: Tensor, b_enc: Tensor | None, b_dec: Tensor | None, k: int,
                  score_fn: ScoreFn | None = None, chunk: int | None = None,
                  mm_dtype: torch.dtype | None = None, group_topk: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Select K latents per row of ``x`` (B, d_in); returns (values, indices, scores), each (B, K).

    ``values`` are the pre-activations at the selected latents (differentiable w.r.t. x, W_enc,
    b_enc, b_dec with a sparse backward); ``indices`` the latents; ``scores`` the selection scores
    there (= values when ``score_fn`` is None). Order within a row is unspecified. Under CPU/CUDA
    autocast the encoder matmul runs in the autocast dtype unless ``mm_dtype`` says otherwise.
    ``group_topk``: rank through strided group maxima (``topk_groups``; ``KernelPolicy.group_topk``)."""
    if mm_dtype is None and torch.is_autocast_enabled(x.device.type):
        mm_dtype = torch.get_autocast_dtype(x.device.type)
    select_fn = partial(_select, W_enc=W_enc, b_enc=b_enc, k=k, score_fn=score_fn, chunk=chunk, mm_dtype=mm_dtype,
                        want_scores=True, group_topk=group_topk)
    return SparseEncode.apply(x, W_enc, b_enc, b_dec, select_fn, _cpu_grads)


def sparse_encode_reference(x: Tensor, W_enc: Tensor, b_enc: Tensor | None, b_dec: Tensor | None, k: int,
                            score_fn: ScoreFn | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Plain autograd version of ``sparse_encode`` (dense pre-activations, dense backward)."""
    xc = x - b_dec if b_dec is not None else x
    pre = xc @ W_enc
    if b_enc is not None:
        pre = pre + b_enc
    if score_fn is None:
        values, indices = pre.topk(k, dim=1, sorted=False)
        return values, indices, values.detach()
    with torch.no_grad():
        scores, indices = score_fn(pre.detach()).topk(k, dim=1, sorted=False)
    return pre.gather(1, indices), indices, scores
