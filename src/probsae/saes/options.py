"""How one call of an SAE runs, chosen by its caller: ``ForwardOptions``.

The trainer, an evaluation or a test passes these to ``SAE.forward``/``encode`` instead of
setting attributes on the SAE: nothing here changes what the SAE is (its weights, config or saved
files), only how this call computes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..kernels import DEFAULT_POLICY, KernelPolicy

FINITE_CHECKS = ("auto", "always", "never")


@dataclass(frozen=True)
class ForwardOptions:
    policy: KernelPolicy = DEFAULT_POLICY
    """Which kernel path the call takes (``kernels.KernelPolicy``: fast/plain, backend, encoder
    precision, scatter, chunk, noise source)."""
    noise_row0: int = 0
    """Global row of the batch's first token: where an architecture with gate noise keyed by the
    token's position (the Triton path's Philox stream) starts; data-parallel ranks offset their
    shard by rank × local batch. Architectures without such noise ignore it."""
    finite_check: str = "auto"
    """NaN/inf check of the inputs: 'auto' (always, except a training forward on a GPU, where it
    would cost a host sync every step), 'always' or 'never' (``TrainConfig.check_finite``)."""

    def __post_init__(self) -> None:
        if self.finite_check not in FINITE_CHECKS:
            raise ConfigError(f"finite_check must be one of {FINITE_CHECKS}, got {self.finite_check!r}")


DEFAULT_OPTIONS = ForwardOptions()
"""The options of a call that passes none."""
