"""The kernel policy: which path the fast kernels take, as an immutable value passed explicitly.

There is no process-global switch: whoever runs an SAE owns its ``KernelPolicy`` and hands it to
``select_topk``/``sparse_decode`` (through ``saes.ForwardOptions``). The trainer builds one from
its ``TrainConfig`` (``training_policy``); inference and evaluation use ``DEFAULT_POLICY``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..errors import ConfigError
from ..validators import choice

BACKENDS = ("auto", "triton", "torch")
PRECISIONS = ("auto", "fp32", "bf16")
SCATTERS = ("auto", "sorted", "atomic")
NOISE_SOURCES = ("numpy", "torch")

_CHOICES = {"backend": BACKENDS, "encoder_precision": PRECISIONS, "scatter": SCATTERS, "noise_source": NOISE_SOURCES}


@dataclass(frozen=True)
class KernelPolicy:
    fast: bool = True
    """Route the TopK family (topk, abstopk, prob_topk) through the sparse-backward encoder
    (``select_topk``'s fast path); False: the plain autograd path."""
    chunk: int | str | None = "auto"
    """Row chunk of the fast encoder's forward: rows per chunk, None (the whole batch at once) or
    'auto'. On CPU 'auto' is about 6M pre-activations (~1024 rows at 6144 latents: each chunk's
    scores and temporaries stay below glibc's 32 MiB mmap threshold, so the allocator reuses them
    instead of faulting in fresh pages every step, and the full (B, d_sae) matrix is never held);
    on the Triton path 'auto' is about 8M pre-activations and at least 1024 rows
    (``select.gpu_chunk_rows``: the (B, d_sae) bf16 matrix is never held whole, which keeps the
    step's peak memory below sparsify's at small widths, while each matmul still fills the GPU)."""
    group_topk: bool = True
    """Select through strided group maxima (exact top-k: the k groups with the largest maxima
    hold the row's k largest scores; only their members are ranked) instead of one torch.topk
    over every latent. CPU: ``topk_groups``; Triton path: the score kernel writes group maxima."""
    noise_source: str = "numpy"
    """Uniforms of the gate noise on CPU: 'numpy' (PCG64 streams seeded from the torch
    generator, filled by two threads: ~3× faster than 'torch', PyTorch's serial CPU generator) or
    'torch' (``torch.rand``). Both are reproducible from the torch RNG state (checkpoints restore
    it). The Triton path draws Philox noise inside its kernels instead (a different stream: see
    ``GateNoise``)."""
    backend: str = "auto"
    """'auto': Triton kernels for CUDA tensors when ``triton`` is installed, PyTorch ops
    otherwise; 'triton': always the Triton kernels (on CPU tensors only under Triton's
    interpreter, TRITON_INTERPRET=1: the tests); 'torch': never Triton."""
    encoder_precision: str = "auto"
    """Triton path's encoder matmul: 'auto' (bf16 tensor cores with fp32 accumulation on CUDA GPUs
    that support bf16, else fp32), 'bf16', or 'fp32' (exact: the plain path's selection). With
    bf16 the K selected pre-activations are recomputed as exact fp32 dot products, so only the
    choice of latents can differ from fp32, where scores are within bf16 rounding of each other.
    ``TrainConfig.precision='fp32'`` sets 'fp32' for training (``training_policy``)."""
    scatter: str = "auto"
    """Triton path's sparse gradient accumulation (grad W_dec, grad W_enc): 'sorted'
    (deterministic: selections sorted by latent, each output row written once), 'atomic'
    (atomic adds: float summation order varies run to run), or 'auto' ('sorted' when
    ``torch.are_deterministic_algorithms_enabled()``, else 'atomic')."""

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            choice(f"kernel setting {key}", getattr(self, key), allowed)

    def replace(self, **changes) -> "KernelPolicy":
        """A copy with ``changes`` (field → value), e.g. ``policy.replace(fast=False)``."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"unknown kernel setting {unknown[0]!r}; choose from {sorted(names)}")
        return replace(self, **changes)


DEFAULT_POLICY = KernelPolicy()
"""The policy of a call that names none (inference, evaluation, a bare ``sae(x)``)."""


def training_policy(precision: str, base: KernelPolicy = DEFAULT_POLICY) -> KernelPolicy:
    """The policy a training step runs under for ``TrainConfig.precision``: 'fp32' is the
    exact-fp32 opt-out of the GPU path's bf16 encoder matmul; other precisions keep ``base``."""
    return base.replace(encoder_precision="fp32") if precision == "fp32" else base
