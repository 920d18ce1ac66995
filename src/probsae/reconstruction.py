"""Reconstruction metrics from streaming sums: the one formula behind ``evaluate``'s MSE/FVU/EV,
the training log's per-batch MSE and explained variance, and their data-parallel global-batch
version (the sums of every rank's rows added up before the division).

    MSE = Σ‖x − x̂‖² / n      FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖²      EV = 1 − FVU

with Σ‖x − x̄‖² = Σ‖x‖² − ‖Σx‖²/n (x̄: the mean over every row added); every sum is float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The smallest total variance the training log's batch metrics divide by (a batch of equal rows).
MIN_BATCH_VARIANCE = 1e-12


class ReconstructionStats:
    """Σ‖x − x̂‖², Σ‖x‖², Σx and the row count n of the (x, x̂) rows added so far, on one device."""

    def __init__(self, d: int, device: torch.device | str = "cpu"):
        self.n = 0
        self.sse = torch.zeros((), dtype=torch.float64, device=device)
        self.sum_x = torch.zeros(d, dtype=torch.float64, device=device)
        self.sum_sq = torch.zeros((), dtype=torch.float64, device=device)

    @classmethod
    def of(cls, x: Tensor, recon: Tensor) -> "ReconstructionStats":
        """The sums of one batch of (n, d) rows, on their device."""
        stats = cls(x.shape[-1], x.device)
        stats.update(x, recon)
        return stats

    @torch.no_grad()
    def update(self, x: Tensor, recon: Tensor) -> None:
        """Add (n, d) rows and their reconstructions (any device; the sums stay on this one's)."""
        dev = self.sse.device
        x64, r64 = x.to(dev, torch.float64), recon.to(dev, torch.float64)
        self.n += x.shape[0]
        self.sse += (x64 - r64).pow_(2).sum()
        self.sum_x += x64.sum(0)
        self.sum_sq += x64.pow(2).sum()

    def to_vector(self) -> Tensor:
        """[Σ‖x − x̂‖², Σ‖x‖², n, Σx…] (float64): summed over ranks, it is the global batch's sums."""
        n = torch.tensor(float(self.n), dtype=torch.float64, device=self.sse.device)
        return torch.cat([torch.stack([self.sse, self.sum_sq, n]), self.sum_x])

    @classmethod
    def from_vector(cls, v: Tensor) -> "ReconstructionStats":
        """The sums ``to_vector`` packed (e.g. after an all-reduce)."""
        stats = cls(v.shape[0] - 3, v.device)
        stats.sse, stats.sum_sq, stats.n, stats.sum_x = v[0], v[1], int(v[2]), v[3:]
        return stats

    def total_variance(self) -> Tensor:
        """Σ‖x − x̄‖² around the mean of the rows added."""
        return self.sum_sq - self.sum_x.pow(2).sum() / self.n

    def mse(self) -> float:
        """Mean over rows of ‖x − x̂‖²."""
        return float(self.sse) / self.n

    def fvu(self) -> float:
        """Fraction of variance unexplained; NaN when the rows have no variance."""
        total = self.total_variance()
        return float(self.sse / total) if total > 0 else float("nan")

    def batch_metrics(self) -> tuple[float, float]:
        """(MSE, explained variance) as the training log records them: the total variance clamped
        to at least ``MIN_BATCH_VARIANCE``, so a batch of equal rows gives a number, not NaN."""
        return self.mse(), 1.0 - float(self.sse / self.total_variance().clamp_min(MIN_BATCH_VARIANCE))
