"""Logistic noise log u − log(1 − u), u ~ U(0, 1), for the Binary Concrete gate."""

from __future__ import annotations

import torch
from torch import Tensor

_EPS = 1e-6


def logistic_noise(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard logistic samples with the shape of ``like`` (fp32 math, u clamped to [ε, 1−ε])."""
    u = torch.rand(like.shape, device=like.device, dtype=torch.float32, generator=generator)
    u = u.clamp_(_EPS, 1.0 - _EPS)
    return (torch.log(u) - torch.log1p(-u)).to(like.dtype)
