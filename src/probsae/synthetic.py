"""Toy activations with a known dictionary, and a feature-recovery metric.

Sparse features in superposition: ``n_features`` > ``d_in`` random unit directions; feature i is
active with probability p_i (Zipf-skewed frequencies summing to ``avg_active`` per token) with a
positive magnitude; plus a constant offset and Gaussian noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class SyntheticConfig:
    d_in: int = 64
    """Dimension of the activations."""
    n_features: int = 256
    """Number of ground-truth features (directions)."""
    avg_active: float = 4.0
    """Expected number of active features per token."""
    zipf_exponent: float = 0.5
    """Skew of feature frequencies: p_i ∝ (i + 1)^(−exponent), rescaled so Σ p_i = avg_active."""
    max_prob: float = 0.5
    """Upper bound of any single feature's firing probability."""
    magnitude_min: float = 0.5
    """Active features' magnitudes are uniform on [magnitude_min, magnitude_max]."""
    magnitude_max: float = 1.5
    noise_std: float = 0.01
    """Standard deviation of isotropic Gaussian noise (per dimension)."""
    offset_norm: float = 0.5
    """Norm of a constant offset added to every token (what b_dec should learn)."""
    seed: int = 0


class SyntheticActivations:
    """Sampler of toy activations; ``dictionary`` holds the true directions (n_features, d_in).
    Everything is drawn and held on the CPU; ``sample(..., device=)`` returns it elsewhere."""

    def __init__(self, cfg: SyntheticConfig | None = None, **overrides):
        cfg = cfg or SyntheticConfig(**overrides)
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        d = torch.randn(cfg.n_features, cfg.d_in, generator=gen)
        self.dictionary = d / d.norm(dim=1, keepdim=True)
        ranks = torch.arange(cfg.n_features, dtype=torch.float64)
        p = (ranks + 1).pow(-cfg.zipf_exponent)
        p = p / p.sum() * cfg.avg_active
        self.probs = p.clamp(max=cfg.max_prob).float()
        off = torch.randn(cfg.d_in, generator=gen)
        self.offset = off / off.norm() * cfg.offset_norm
        self._gen = torch.Generator().manual_seed(cfg.seed + 1)

    def sample_codes(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        gen = generator or self._gen
        cfg = self.cfg
        active = torch.rand(n, cfg.n_features, generator=gen) < self.probs
        mags = torch.empty(n, cfg.n_features).uniform_(cfg.magnitude_min, cfg.magnitude_max, generator=gen)
        return active * mags

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> Tensor:
        """(n, d_in) activations, drawn on the CPU (``generator`` is a CPU generator, so a seed
        gives the same sample on every machine) and returned on ``device`` (default: the CPU)."""
        gen = generator or self._gen
        codes = self.sample_codes(n, gen)
        noise = torch.randn(n, self.cfg.d_in, generator=gen) * self.cfg.noise_std
        x = codes @ self.dictionary + self.offset + noise
        return x if device is None else x.to(device)


def feature_recovery(true_dirs: Tensor, learned_dirs: Tensor, absolute: bool = False) -> float:
    """Mean over true features of the max cosine similarity to any learned direction (rows).
    ``absolute``: count anti-aligned directions too (for SAEs with signed codes, e.g. AbsTopK,
    which may represent a feature as −d with negative codes). The two may live on different
    devices (computed on ``true_dirs``'s, in float32); returns a Python float."""
    t = true_dirs.float()
    l = learned_dirs.detach().to(t.device, torch.float32)
    t = t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)
    l = l / l.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = t @ l.t()
    return float((cos.abs() if absolute else cos).max(dim=1).values.mean())
