"""Fast paths used by the SAEs. Each has a plain reference next to it and a test that the two agree.

``select_topk`` is the TopK family's (topk, abstopk, prob_topk) one way to pick K latents per
token: each architecture states its rule as a ``Selection`` and the path follows from the
``KernelPolicy`` passed in (an immutable value: there is no global switch) and the tensors'
device: Triton kernels on CUDA (``_triton.py``: bf16 tensor-core encoder, fused gate/score +
group-max kernel, sparse decoder and sparse gradients), the CPU fast path (``sparse_encode``:
chunks, grouped top-k, NumPy noise) or the plain autograd path (``KernelPolicy(fast=False)``).
``sparse_decode`` decodes (values, indices) on the same backends. Triton is imported only when a
CUDA tensor (or a test under ``TRITON_INTERPRET=1``) needs it: the library works without it.
"""

from __future__ import annotations

from .encode import chunk_rows, latent_bag_sum, latent_order, sparse_encode, sparse_encode_reference
from .noise import GATE_SCORES, concrete_gate_score, gate_of_score, gate_score_, logistic_noise, logistic_noise_reference
from .policy import BACKENDS, DEFAULT_POLICY, NOISE_SOURCES, PRECISIONS, SCATTERS, KernelPolicy, training_policy
from .select import GateNoise, Selection, select_dense, select_topk, triton_available, use_triton
from .sparse import sparse_decode, sparse_decode_reference

__all__ = ["KernelPolicy", "DEFAULT_POLICY", "training_policy", "BACKENDS", "PRECISIONS", "SCATTERS", "NOISE_SOURCES",
           "select_topk", "select_dense", "Selection", "GateNoise",
           "use_triton", "triton_available", "sparse_encode", "sparse_encode_reference", "latent_bag_sum",
           "latent_order", "sparse_decode", "sparse_decode_reference", "logistic_noise", "logistic_noise_reference",
           "concrete_gate_score", "gate_score_", "gate_of_score", "GATE_SCORES", "chunk_rows"]
