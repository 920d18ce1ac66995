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
    alive_log_window: int | None = None
    """Window (tokens) of the logged ``alive_recent`` count, the one the run's plot shows; None: a
    tenth of the run's tokens (so it can drop below d_sae even when the run is shorter than
    ``dead_window_tokens``). Only the log uses it; training does not."""
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
    precision: str = "fp32"
    """'fp32' or 'bf16'. 'bf16' runs the forward under ``torch.autocast(bfloat16)``: the TopK
    family's fast encoder then does only its encoder matmul in bf16 (selection, decoder, loss,
    gradients and Adam stay fp32, master weights fp32). Pays on CPUs with AMX/AVX512-BF16 and on
    GPUs; the selected latents can differ from fp32 where pre-activations are within bf16 rounding
    (see docs/results/speed-cpu.md)."""
    compile: bool = False
    """Run the SAE's forward through ``torch.compile`` (first steps pay the compile time; needs a
    C++ compiler on CPU). Off by default: see docs/results/speed-cpu.md for whether it pays."""
    distribute: str = "data"
    """Under ``torchrun`` (WORLD_SIZE > 1): 'data' (data-parallel: each rank takes a disjoint
    shard of every global batch, gradients are averaged; ``batch_size`` stays the GLOBAL batch and
    must be divisible by the world size) or 'members' (the SAEs of a sweep are spread over the
    ranks round-robin; every rank reads the same batches). Ignored in a single process."""
    dist_timeout_s: float = 600.0
    """Timeout of the process group's collectives: a rank that stops answering fails the job
    after this many seconds instead of hanging it."""
    wandb_project: str | None = None
    """Also log to Weights & Biases under this project (needs ``pip install probsae[wandb]``);
    None: only the JSONL log. ``WANDB_MODE=offline`` (or ``wandb_mode``) works without a network."""
    wandb_entity: str | None = None
    """W&B entity (user or team); None: wandb's default."""
    wandb_run_name: str | None = None
    """W&B run name; None: wandb's generated name."""
    wandb_mode: str | None = None
    """W&B mode: 'online', 'offline' or 'disabled'; None: wandb's default (honours WANDB_MODE)."""

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
        if self.alive_log_window is not None and self.alive_log_window < 1:
            raise ConfigError(f"alive_log_window must be ≥ 1 or None, got {self.alive_log_window!r}")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be ≥ 1, got {self.log_every!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.distribute not in ("data", "members"):
            raise ConfigError(f"distribute must be 'data' or 'members', got {self.distribute!r}")
        if not self.dist_timeout_s > 0:
            raise ConfigError(f"dist_timeout_s must be positive, got {self.dist_timeout_s!r}")
        if self.wandb_mode not in (None, "online", "offline", "disabled"):
            raise ConfigError(f"wandb_mode must be None, 'online', 'offline' or 'disabled', got {self.wandb_mode!r}")

    def to_dict(self) -> dict:
        return asdict(self)
