"""Feature density: the fraction of tokens on which each latent fires, and its histogram on a
log10 scale (SAEBench's core "feature density" panel; docs/BENCH.md)."""

from __future__ import annotations

import numpy as np

DENSITY_BINS = np.linspace(-6.0, 0.0, 25)
"""Edges of the log10-density histogram (a quarter decade each, 10⁻⁶ … 1)."""


def latent_density(sae, data, batch_size: int = 4096, max_tokens: int | None = None) -> np.ndarray:
    """(d_sae,) fraction of the tokens of ``data`` (raw activations: a tensor, a cache, batches)
    on which each latent's inference code is ≠ 0 (the first ``max_tokens`` tokens, as
    ``evaluate``; :func:`probsae.evaluation.metrics.accumulate` gives both from one pass)."""
    from .metrics import accumulate

    return accumulate(sae, data, batch_size, max_tokens).density()


def density_histogram(density: np.ndarray, edges: np.ndarray = DENSITY_BINS) -> dict:
    """Counts of the alive latents per log10-density bin (densities below the first edge in the
    first bin), and the dead latents (density 0) apart."""
    alive = density[density > 0]
    counts, _ = np.histogram(np.clip(np.log10(alive), edges[0], edges[-1]), bins=edges)
    return {"log10_edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
            "dead": int((density == 0).sum())}
