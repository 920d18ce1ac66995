"""Fast paths used by the SAEs. Each has a plain reference next to it and a test that the two agree.

``settings.fast`` (default True) routes the TopK family (topk, abstopk, prob_topk) through the
sparse-backward encoder (``sparse_encode``); set it to False (or use ``use_fast(False)`` as a
context manager) to run the plain autograd path, e.g. to compare the two.
``settings.chunk`` is the row-chunk size of the fast encoder's forward ('auto', rows, or None:
whole batch); ``settings.group_topk`` and ``settings.decoder_backward`` pick the top-k and the
decoder backward (see ``_settings.py``).
"""

from __future__ import annotations

from contextlib import contextmanager

from ._settings import Settings, settings
from .encode import chunk_rows, clear_order_cache, latent_bag_sum, latent_order, sparse_encode, sparse_encode_reference
from .noise import GATE_SCORES, UniformPrefetch, concrete_gate_score, gate_score_, logistic_noise, logistic_noise_reference
from .sparse import sparse_decode, sparse_decode_embedding_bag, sparse_decode_reference


@contextmanager
def use_fast(enabled: bool = True, chunk: int | str | None = ...):  # type: ignore[assignment]
    """Temporarily switch the fast paths on/off (and optionally the chunk size)."""
    old = (settings.fast, settings.chunk)
    settings.fast = enabled
    if chunk is not ...:
        settings.chunk = chunk
    try:
        yield settings
    finally:
        settings.fast, settings.chunk = old


__all__ = ["Settings", "settings", "use_fast", "sparse_encode", "sparse_encode_reference", "latent_bag_sum", "latent_order", "clear_order_cache",
           "sparse_decode_embedding_bag",
           "sparse_decode", "sparse_decode_reference", "logistic_noise", "logistic_noise_reference",
           "concrete_gate_score", "gate_score_", "GATE_SCORES", "UniformPrefetch", "chunk_rows"]
