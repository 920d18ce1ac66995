"""Reconstruction and sparsity metrics on the SAE's normalised scale (as the paper reports them).

    MSE  = mean over tokens of ‖x − x̂‖²
    FVU  = Σ‖x − x̂‖² / Σ‖x − x̄‖²   (x̄: mean over the evaluation set; accumulated in float64
                                   by ``probsae.reconstruction.ReconstructionStats``)
    EV   = 1 − FVU
    L0   = mean count of codes ≠ 0 per token
    alive = latents with a non-zero code on at least one evaluation token; dead = d_sae − alive
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..reconstruction import ReconstructionStats
from ..data.sources import batch_source
from ..saes.options import DEFAULT_OPTIONS, ForwardOptions


class MetricAccumulator:
    """Streaming sums for ``evaluate`` (the reconstruction sums of ``ReconstructionStats``, L0 and
    how often each latent fired); usable on its own to score batches as they come."""

    def __init__(self, d_in: int, d_sae: int, device: torch.device | str = "cpu"):
        self.recon = ReconstructionStats(d_in, device)
        self.l0_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.fire_counts = torch.zeros(d_sae, dtype=torch.int64, device=device)
        """Tokens on which each latent's code was ≠ 0."""
        self.d_sae = d_sae

    @property
    def n(self) -> int:
        """Tokens added so far."""
        return self.recon.n

    def update(self, x_n: Tensor, recon_n: Tensor, codes: Tensor) -> None:
        """Add a batch (tensors on any device; the sums stay on the accumulator's device)."""
        self.recon.update(x_n, recon_n)
        nz = codes.to(self.fire_counts.device) != 0
        self.l0_sum += nz.sum()
        self.fire_counts += nz.sum(0)

    def density(self) -> np.ndarray:
        """(d_sae,) fraction of the tokens added on which each latent fired (SAEBench's feature density)."""
        return (self.fire_counts.double() / max(self.n, 1)).cpu().numpy()

    def result(self) -> dict[str, float]:
        if self.n == 0:
            raise InputError("no tokens were evaluated: the evaluation data is empty")
        fvu = self.recon.fvu()
        alive = int((self.fire_counts > 0).sum())
        return {
            "mse": self.recon.mse(),
            "fvu": fvu,
            "explained_variance": 1.0 - fvu,
            "l0": float(self.l0_sum) / self.n,
            "alive": alive,
            "dead": self.d_sae - alive,
            "n_tokens": self.n,
        }


def evaluate(sae, data, batch_size: int = 4096, max_tokens: int | None = None,
             options: ForwardOptions = DEFAULT_OPTIONS) -> dict[str, float]:
    """MSE, FVU, explained variance, L0, alive and dead latents of ``sae`` on ``data`` (raw
    activations: a (N, d_in) tensor, an activation cache or an iterable of batches), using the
    deterministic inference path. Runs on the SAE's device (batches on any device are moved
    there) and returns Python numbers; the same SAE, data and device give the same numbers.
    ``options``: how the SAE runs (e.g. an exact-fp32 ``KernelPolicy``)."""
    return accumulate(sae, data, batch_size, max_tokens, options).result()


@torch.no_grad()
def accumulate(sae, data, batch_size: int = 4096, max_tokens: int | None = None,
               options: ForwardOptions = DEFAULT_OPTIONS) -> MetricAccumulator:
    """The :class:`MetricAccumulator` of :func:`evaluate`'s pass (its ``result()`` and, from the
    same pass, each latent's ``density()``)."""
    was_training = sae.training
    sae.eval()
    device = sae.W_dec.device
    acc = MetricAccumulator(sae.d_in, sae.d_sae, device)
    try:
        for batch in batch_source(data).in_order(batch_size):
            if max_tokens is not None and acc.n >= max_tokens:
                break
            if max_tokens is not None:
                batch = batch[: max_tokens - acc.n]
            out = sae(batch.to(device), options=options)
            d_in = out.x_normalized.shape[-1]
            acc.update(out.x_normalized.reshape(-1, d_in), out.recon_normalized.reshape(-1, d_in),
                       out.codes.reshape(-1, sae.d_sae))
    finally:
        sae.train(was_training)
    return acc
