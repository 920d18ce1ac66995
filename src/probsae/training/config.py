"""Training hyperparameters (paper Appendix A / Table 1 defaults where the paper gives them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..devices import resolve_device
from ..errors import ConfigError
from ..saes.config import SEED, check_seed
from ..validators import is_number as _is_number, number, whole


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
    seed: int = SEED
    """The run's one seed: the SAE's initial weights (``RunSpec.build_sae`` passes it to the SAE),
    data shuffling and the stochastic gates' noise on CPU (on the Triton/CUDA path the gate noise is
    keyed by the SAE's seed, the same value, and the step: see kernels.GateNoise)."""
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
    checkpoint_every: int = 100
    """Write a resumable checkpoint every this many steps into each run directory (0 = only at the
    end). On by default, so that a killed run or sweep member resumes losing at most this many
    steps; a checkpoint (weights and Adam state) costs little next to 100 steps."""
    progress: bool = True
    """Show a progress bar with tokens/s."""
    device: str = "auto"
    """'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', …"""
    deterministic: bool = False
    """Replay exactly: run training with deterministic algorithms (``torch.use_deterministic_
    algorithms``), ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` and TF32 off (probsae.devices.deterministic_mode).
    On CUDA, without it, atomics in scatter/index_add/embedding_bag backward and cuBLAS split-K
    reductions may round differently from run to run; CPU runs are deterministic either way. Costs
    GPU throughput (see docs/DEVICES.md and benchmarks/pipeline_throughput.py)."""
    extra: dict = field(default_factory=dict)
    """Free-form metadata copied into the log header (e.g. model, hook point, corpus)."""
    precision: str = "auto"
    """'auto', 'fp32' or 'bf16'. 'auto': on CUDA GPUs with bf16 support the encoder matmul of the
    architectures that select latents through ``kernels.select_topk`` runs on bf16 tensor cores (fp32 master weights, fp32 accumulation; the K selected
    pre-activations are recomputed exactly in fp32, so only the choice of latents can differ from
    fp32, at near-ties); exact fp32 everywhere else (CPU: unchanged). 'fp32': the exact-fp32
    opt-out (GPU included). 'bf16': also runs the forward under ``torch.autocast(bfloat16)`` (all
    architectures' matmuls; on CPU that encoder matmul in bf16, which pays on CPUs
    with AMX/AVX512-BF16; see docs/results/speed-cpu.md)."""
    compile: bool = False
    """Run the SAE's forward through ``torch.compile`` (first steps pay the compile time; needs a
    C++ compiler on CPU). Off by default: see docs/results/speed-cpu.md for whether it pays."""
    cuda_graph: bool = True
    """Capture the whole training step (forward, backward, clipping, Adam) of an SAE whose
    architecture declares it capturable (``SAE.graphable``, and no dead-mask use) in a CUDA graph after 3 eager warm-up steps and
    replay it: removes the per-kernel launch overhead (on an H100 it doubles the steps/s of a
    16× GPT-2-sized SAE; docs/results/speed-gpu.md). Only where the step can be captured: CUDA,
    single process, no torch.compile; other SAEs and devices run eagerly. Adam then runs with
    ``capturable=True`` and a device learning rate. False: always eager."""
    check_finite: str = "auto"
    """NaN/inf check of each training batch: 'auto' (on CPU every batch, before its step; on CUDA
    on the device without a host sync: each step ands its batch's finiteness into a flag that is
    read once the loss is found non-finite at a log record or checkpoint, which then fails with
    InputError instead of TrainingDivergedError), 'always' (every batch before its step: one host
    sync per step on GPUs) or 'never'."""
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
        """Raise ``ConfigError`` naming the first invalid field (called before any data is read)."""
        if self.steps is not None:
            whole("steps", self.steps, 1, "a positive integer or None")
        whole("batch_size", self.batch_size, 1)
        number("lr", self.lr, positive=True)
        whole("warmup_steps", self.warmup_steps, 0)
        if self.lr_schedule not in ("cosine", "constant"):
            raise ConfigError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        number("min_lr_ratio", self.min_lr_ratio)
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        betas = self.adam_betas
        if not isinstance(betas, (tuple, list)) or len(betas) != 2 or not all(
                _is_number(b) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"adam_betas must be two numbers in [0, 1), e.g. 0.9,0.99; got {betas!r}")
        number("adam_eps", self.adam_eps, positive=True)
        number("grad_clip", self.grad_clip)
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be ≥ 0 (0 disables clipping), got {self.grad_clip!r}")
        whole("seed", self.seed, None, "an integer")
        check_seed(self.seed)  # the SAE's init seed too: its 64-bit range, before any extraction
        if self.b_dec_init not in ("geometric_median", "mean", "zeros"):
            raise ConfigError(f"b_dec_init must be geometric_median, mean or zeros, got {self.b_dec_init!r}")
        whole("dead_window_tokens", self.dead_window_tokens, 1)
        if self.alive_log_window is not None:
            whole("alive_log_window", self.alive_log_window, 1, "a positive integer or None")
        whole("log_every", self.log_every, 1)
        whole("checkpoint_every", self.checkpoint_every, 0, "an integer ≥ 0 (0: only at the end)")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if self.check_finite not in ("auto", "always", "never"):
            raise ConfigError(f"check_finite must be 'auto', 'always' or 'never', got {self.check_finite!r}")
        if self.distribute not in ("data", "members"):
            raise ConfigError(f"distribute must be 'data' or 'members', got {self.distribute!r}")
        number("dist_timeout_s", self.dist_timeout_s, positive=True)
        if self.wandb_mode not in (None, "online", "offline", "disabled"):
            raise ConfigError(f"wandb_mode must be None, 'online', 'offline' or 'disabled', got {self.wandb_mode!r}")
        resolve_device(self.device)

    def to_dict(self) -> dict:
        return asdict(self)
