"""Fast paths used by the SAEs. Each has a plain reference next to it and a test that the two agree.

``select_topk`` is the TopK family's (topk, abstopk, prob_topk) one way to pick K latents per
token: each architecture states its rule as a ``Selection`` and the path follows from
``settings`` and the tensors' device: Triton kernels on CUDA (``_triton.py``: bf16 tensor-core
encoder, fused gate/score + group-max kernel, sparse decoder and sparse gradients), the CPU fast
path (``sparse_encode``: chunks, grouped top-k, NumPy noise) or the plain autograd path
(``settings.fast = False``; ``use(fast=False)`` as a context manager). ``sparse_decode`` decodes
(values, indices) on the same backends. Triton is imported only when a CUDA tensor (or a test
under ``TRITON_INTERPRET=1``) needs it: the library works without it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import fields

from ..errors import ConfigError
from ._settings import BACKENDS, PRECISIONS, SCATTERS, Settings, settings
from .encode import chunk_rows, latent_bag_sum, latent_order, sparse_encode, sparse_encode_reference
from .noise import GATE_SCORES, concrete_gate_score, gate_of_score, gate_score_, logistic_noise, logistic_noise_reference
from .select import GateNoise, Selection, select_dense, select_topk, triton_available, use_triton
from .sparse import sparse_decode, sparse_decode_reference

_CHOICES = {"backend": BACKENDS, "encoder_precision": PRECISIONS, "scatter": SCATTERS,
            "noise_source": ("numpy", "torch")}


@contextmanager
def use(**overrides):
    """Temporarily change ``settings`` fields, e.g. ``with kernels.use(fast=False): ...``."""
    names = {f.name for f in fields(Settings)}
    for key, value in overrides.items():
        if key not in names:
            raise ConfigError(f"unknown kernel setting {key!r}; choose from {sorted(names)}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"kernel setting {key} must be one of {_CHOICES[key]}, got {value!r}")
    old = {key: getattr(settings, key) for key in overrides}
    for key, value in overrides.items():
        setattr(settings, key, value)
    try:
        yield settings
    finally:
        for key, value in old.items():
            setattr(settings, key, value)


def use_fast(enabled: bool = True, chunk: int | str | None = ...):  # type: ignore[assignment]
    """Temporarily switch the fast paths on/off (and optionally the chunk size)."""
    return use(fast=enabled) if chunk is ... else use(fast=enabled, chunk=chunk)


__all__ = ["Settings", "settings", "use", "use_fast", "select_topk", "select_dense", "Selection", "GateNoise",
           "use_triton", "triton_available", "sparse_encode", "sparse_encode_reference", "latent_bag_sum",
           "latent_order", "sparse_decode", "sparse_decode_reference", "logistic_noise", "logistic_noise_reference",
           "concrete_gate_score", "gate_score_", "gate_of_score", "GATE_SCORES", "chunk_rows"]
