"""``select_topk``: the one entry point through which the TopK family picks its K latents.

An architecture states its selection rule once, as a ``Selection`` (the score whose K largest
entries per token are kept: the pre-activations, their magnitude, or the Probabilistic TopK gate),
and ``select_topk`` picks the path from the ``KernelPolicy`` it is given (``policy``) and the
tensors' device:

- fast path, CUDA (``policy.backend``): the encoder matmul in bf16 on tensor cores (fp32 master
  weights, fp32 accumulation; ``policy.encoder_precision``), the scores and their strided
  group maxima in one Triton kernel per row (gate: LayerNorm statistics, Philox noise times its
  scale, the ``gate_score`` formula of ``gate_score_``; no noise tensor), exact top-k among the best groups' members, the K selected
  pre-activations recomputed as exact fp32 dot products, and a sparse backward (Triton kernels:
  gradients only for the B·K selected latents);
- fast path, CPU: ``sparse_encode`` (row chunks, grouped top-k, NumPy noise streams);
- plain path (``policy.fast = False``, or a rule whose score needs gradient): dense
  pre-activations with autograd, the score, ``torch.topk``, gather.

All return (values, indices, scores), each (B, K): the pre-activations at the selected latents
(differentiable), the latents, and the score there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache, partial

import torch
import torch.nn.functional as F
from torch import Tensor

from .policy import DEFAULT_POLICY, KernelPolicy
from .encode import SparseEncode, chunk_rows, sparse_encode
from .noise import concrete_gate_score, gate_score_, logistic_noise
from .topk import gpu_group_members

SCORES = ("pre", "abs", "gate")


@dataclass
class GateNoise:
    """Where the gate's logistic noise comes from.

    CPU (PyTorch ops): drawn from ``generator`` (None: torch's global RNG) in row order, the
    stream checkpoints restore. Triton path: Philox, keyed by ``seed_lo`` (32 bits, from the SAE's
    seed) and the training step held in the device tensor ``step`` (int64 scalar), at counter
    (row0 + b)·d_sae + m for token b, latent m: the same noise for the same (seed, step, token
    offset) whatever the chunking, the other SAEs trained alongside, or a resume. The two
    streams differ (same distribution)."""

    generator: torch.Generator | None
    seed_lo: int
    step: Tensor
    row0: int = 0
    """Global row of the batch's first token (data-parallel ranks offset their shard)."""


@dataclass
class Selection:
    """A TopK-family selection rule: keep the K latents with the largest ``score``.

    'pre': the pre-activations a; 'abs': |a|; 'gate': the Probabilistic TopK gate's score of
    t = LN(a) + c·L (LN with ``ln_weight``/``ln_bias`` when given, L logistic noise when ``noise``
    is set, c = ``noise_scale``), by ``gate_score`` (``kernels.gate_score_``): the paper's
    σ(t/β) + λ|a|, 'stable' λ|a| − σ(−t/β) or 'logit' t + λ|a|."""

    score: str = "pre"
    beta: Tensor | float = 1.0
    lambda_mag: float = 0.0
    ln_weight: Tensor | None = None
    ln_bias: Tensor | None = None
    noise: GateNoise | None = None
    gate_score: str = "paper"
    """The gate's score formula (``GATE_SCORES``): 'paper', 'stable' or 'logit'."""
    noise_scale: Tensor | float | None = None
    """Multiplier c of the logistic noise (None: 1). A device scalar when it changes per step
    (score 'logit': β/β₀), so a captured CUDA graph reads the current value."""
    differentiable: bool = False
    """Keep autograd through the score (the returned scores carry gradient): plain path only."""

    def cpu_score_fn(self, noise_source: str = "numpy"):
        """The score as ``sparse_encode``'s per-chunk score function (None: the pre-activations);
        ``noise_source``: where the gate noise's uniforms come from (``KernelPolicy.noise_source``)."""
        if self.score == "pre":
            return None
        if self.score == "abs":
            return torch.abs
        return partial(concrete_gate_score, beta=self.beta, lambda_mag=self.lambda_mag, ln_weight=self.ln_weight,
                       ln_bias=self.ln_bias, noisy=self.noise is not None,
                       generator=self.noise.generator if self.noise is not None else None,
                       layernorm=self.ln_weight is not None, score=self.gate_score, noise_scale=self.noise_scale,
                       noise_source=noise_source)

    def gate_logits(self, pre: Tensor) -> Tensor:
        """The gate's noise-free logit ℓ = LN(a) (``pre`` itself without LayerNorm)."""
        return F.layer_norm(pre, (pre.shape[-1],), self.ln_weight, self.ln_bias) if self.ln_weight is not None else pre

    def dense_scores(self, pre: Tensor, policy: KernelPolicy = DEFAULT_POLICY) -> Tensor:
        """Scores of dense pre-activations (B, d_sae), with autograd (the plain path): the gate's
        through ``gate_score_``, which the Triton path's ``_score`` mirrors (noise: ``dense_noise``)."""
        if self.score == "pre":
            return pre
        if self.score == "abs":
            return pre.abs()
        t = self.gate_logits(pre)
        if self.noise is not None:
            noise = dense_noise(pre, self.noise, policy)
            t = t + (noise if self.noise_scale is None else noise * self.noise_scale)
        # gate_score_ works in place: never on ``pre`` itself (autograd handles the in-place ops).
        return gate_score_(t.clone() if t is pre else t, pre, self.beta, self.lambda_mag, self.gate_score)


def use_triton(t: Tensor, policy: KernelPolicy = DEFAULT_POLICY) -> bool:
    """Whether the Triton kernels serve tensor ``t`` (``policy.backend``)."""
    if policy.backend == "torch":
        return False
    if policy.backend == "triton":
        return t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"
    return t.is_cuda and triton_available()


@cache
def triton_available() -> bool:
    """Whether ``triton`` imports (asked once per process)."""
    try:
        import triton  # noqa: F401
        return True
    except Exception:  # not installed, or a broken install: the PyTorch path serves
        return False


def dense_noise(like: Tensor, noise: GateNoise, policy: KernelPolicy = DEFAULT_POLICY) -> Tensor:
    """The gate noise as a dense tensor shaped like ``like`` (B, d_sae): Philox on the Triton
    path (the values the fused kernels draw), else the generator's stream (``policy.noise_source``)."""
    if use_triton(like, policy):
        from . import _triton
        return _triton.logistic_noise(like.shape[0], like.shape[1], noise, noise.row0, like.device).to(like.dtype)
    return logistic_noise(like, noise.generator, policy.noise_source)


def encoder_dtype(t: Tensor, policy: KernelPolicy = DEFAULT_POLICY) -> torch.dtype:
    """The Triton path's encoder matmul dtype for tensor ``t`` (``policy.encoder_precision``)."""
    p = policy.encoder_precision
    if p == "bf16" or (p == "auto" and t.is_cuda and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float32


def scatter_deterministic(mode: str = "auto") -> bool:
    """Whether the Triton path's sparse gradients are summed in a fixed order (``KernelPolicy.scatter``)."""
    return mode == "sorted" or (mode == "auto" and torch.are_deterministic_algorithms_enabled())


def select_dense(pre: Tensor, k: int, rule: Selection,
                 policy: KernelPolicy = DEFAULT_POLICY) -> tuple[Tensor, Tensor, Tensor]:
    """Plain selection from dense pre-activations (with autograd): (values, indices, scores)."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and rule.differentiable):
        scores = rule.dense_scores(pre if rule.differentiable else pre.detach(), policy)
        top, indices = scores.topk(k, dim=-1, sorted=False)
    return pre.gather(-1, indices), indices, top


def select_topk(x: Tensor, W_enc: Tensor, b_enc: Tensor | None, b_dec: Tensor | None, k: int,
                rule: Selection, policy: KernelPolicy = DEFAULT_POLICY) -> tuple[Tensor, Tensor, Tensor]:
    """The K latents per row of ``x`` (B, d_in) with the largest ``rule`` score of the
    pre-activations a = (x − b_dec) W_enc (+ b_enc): (values, indices, scores), each (B, K).

    ``values`` = a at the selected latents (differentiable w.r.t. x, W_enc, b_enc, b_dec; on the
    fast path with a sparse backward). Order within a row is unspecified. ``policy`` picks the
    path (see the module docstring)."""
    if policy.fast and not rule.differentiable:
        if use_triton(x, policy):
            select_fn = partial(_triton_select, W_enc=W_enc, b_enc=b_enc, k=k, rule=rule, policy=policy)
            return SparseEncode.apply(x, W_enc, b_enc, b_dec, select_fn, partial(_triton_grads, scatter=policy.scatter))
        return sparse_encode(x, W_enc, b_enc, b_dec, k, rule.cpu_score_fn(policy.noise_source), policy.chunk,
                             group_topk=policy.group_topk)
    xc = x - b_dec if b_dec is not None else x
    pre = xc @ W_enc
    return select_dense(pre + b_enc if b_enc is not None else pre, k, rule, policy)


GPU_CHUNK_ELEMENTS = 1 << 23
"""The Triton path's 'auto' chunk holds about this many pre-activations (16 MiB in bf16)."""


def gpu_chunk_rows(B: int, n_latents: int) -> int:
    """Rows per encoder chunk on the Triton path for ``KernelPolicy.chunk = 'auto'``: a power of two
    near ``GPU_CHUNK_ELEMENTS / n_latents``, at least 1024 rows (so each matmul still fills the
    GPU and the bf16 W_enc, re-read once per chunk, is read a few times per step at most)."""
    rows = max(1024, 1 << max(0, (GPU_CHUNK_ELEMENTS // max(1, n_latents)).bit_length() - 1))
    return min(B, rows)


def _triton_select(xc: Tensor, W_enc: Tensor, b_enc: Tensor | None, k: int, rule: Selection, policy: KernelPolicy):
    """Forward of the Triton path (see the module docstring): (values, indices, scores)."""
    from . import _triton

    xc = xc.float().contiguous()
    B, M = xc.shape[0], W_enc.shape[1]
    mm = encoder_dtype(xc, policy)
    lowp = mm != W_enc.dtype
    W = W_enc.to(mm) if lowp else W_enc
    # Encoder columns as rows for the exact fp32 recompute (a view, no copy, for a latent-major W_enc).
    WT = W_enc.t().contiguous() if lowp else None
    members = gpu_group_members(M, k) if policy.group_topk else 1
    values = xc.new_empty(B, k)
    indices = torch.empty(B, k, dtype=torch.long, device=xc.device)
    scores = xc.new_empty(B, k)
    row0 = rule.noise.row0 if rule.noise is not None else 0
    step = gpu_chunk_rows(B, M) if policy.chunk == "auto" else chunk_rows(B, M, policy.chunk)
    for s in range(0, B, step):
        e = min(B, s + step)
        pre = xc[s:e].to(mm) @ W
        scores[s:e], indices[s:e] = _triton.score_select(pre, b_enc, k, rule, row0 + s, members)
        if lowp:
            values[s:e] = _triton.gather_dot(xc[s:e], WT, indices[s:e], b_enc)
        else:
            v = pre.gather(1, indices[s:e])
            values[s:e] = v + b_enc[indices[s:e]] if b_enc is not None else v
    return values, indices, scores


def _triton_grads(needs, g, xc, W_enc, indices, scatter: str = "auto"):
    """Sparse backward of the Triton path: grad W_enc (and the per-latent sums for b_enc/b_dec)
    in one ``scatter_outer`` written in W_enc's layout (``scatter``: ``KernelPolicy.scatter``);
    grad x by ``gather_sum``."""
    from . import _triton

    need_x, need_W, need_be, need_bd = needs
    grad_x = grad_W = grad_be = grad_bd = None
    g = g.float().contiguous()
    M = W_enc.shape[1]
    per_latent = None
    if need_W:
        grad_W, per_latent = _triton.scatter_outer(g, indices, xc, M, deterministic=scatter_deterministic(scatter),
                                                   transposed=True, want_wsum=need_be or need_bd)
    elif need_be or need_bd:
        _, per_latent = _triton.scatter_outer(g, indices, xc[:, :1], M, deterministic=True, want_wsum=True)
    if need_be:
        grad_be = per_latent
    if need_bd:
        grad_bd = -(W_enc @ per_latent)
    if need_x:
        grad_x = _triton.gather_sum(g, indices, W_enc.t().contiguous())
    return grad_x, grad_W, grad_be, grad_bd
