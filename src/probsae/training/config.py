"""Training hyperparameters (paper Appendix A / Table 1 defaults where the paper gives them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import ConfigError


@dataclass
class TrainConfig:
    steps: int | None = None
    """Optimiser steps. None: one pass over tensor data (N // batch_size), or len(data) batches."""
    batch_size: int = 4096
    """Tokens per batch when data is a tensor or an activation cache (the paper: 8 × 1024)."""
    lr: float = 5e-4
    """Peak Adam learning rate (Table 1: 5e-4)."""
    warmup_steps: int = 0
    """Linear LR warm-up steps; the gate temperature is held at β_0 meanwhile (paper: 20,000)."""
    lr_schedule: str = "cosine"
    """'cosine' decay after warm-up (paper) or 'constant'."""
    min_lr_ratio: float = 0.0
    """Final LR as a fraction of ``lr`` for the cosine schedule."""
    adam_betas: tuple[float, float] = (0.9, 0.99)
    """Adam β₁, β₂ (paper: 0.9, 0.99)."""
    adam_eps: float = 1e-8
    """Adam ε."""
    grad_clip: float = 10.0
    """Clip the global gradient norm to this value (paper: 10); 0 disables."""
    seed: int = 0
    """Seed of data shuffling and of the stochastic gates' noise."""
    b_dec_init: str = "geometric_median"
    """Initial decoder bias from the first batch: 'geometric_median', 'mean' or 'zeros'."""
    dead_window_tokens: int = 10_000_000
    """A latent is alive if it fired within this many most recent tokens (or the whole run so far)."""
    log_every: int = 50
    """Write a log record every this many steps (and at the last step)."""
    log_path: str | None = None
    """JSONL log of a single-SAE run (``run_dirs`` of ``train`` overrides it)."""
    checkpoint_every: int = 0
    """Write a resumable checkpoint every this many steps into each run directory (0 = only at the end)."""
    progress: bool = True
    """Show a progress bar with tokens/s."""
    device: str = "auto"
    """'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', …"""
    extra: dict = field(default_factory=dict)
    """Free-form metadata copied into the log header (e.g. model, hook point, corpus)."""

    def validate(self) -> None:
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ConfigError(f"steps must be a positive integer or None, got {self.steps!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be ≥ 0, got {self.warmup_steps!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ConfigError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if self.b_dec_init not in ("geometric_median", "mean", "zeros"):
            raise ConfigError(f"b_dec_init must be geometric_median, mean or zeros, got {self.b_dec_init!r}")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be ≥ 1, got {self.log_every!r}")

    def to_dict(self) -> dict:
        return asdict(self)
