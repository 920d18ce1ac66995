"""The switches of the fast paths (one global instance, ``probsae.kernels.settings``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Settings:
    fast: bool = True
    """Route the TopK family (topk, abstopk, prob_topk) through the sparse-backward encoder."""
    chunk: int | str | None = "auto"
    """Row chunk of the fast encoder's forward: rows per chunk, None (the whole batch at once) or
    'auto' (about 6M pre-activations, ~1024 rows at 6144 latents: each chunk's scores and
    temporaries stay below glibc's 32 MiB mmap threshold, so the allocator reuses them instead of
    faulting in fresh pages every step, and the full (B, d_sae) matrix is never held)."""
    group_topk: bool = True
    """Select with ``topk_groups`` (exact top-k via strided group maxima) instead of torch.topk."""
    noise_source: str = "numpy"
    """Uniforms of the gate noise on CPU: 'numpy' (PCG64 streams seeded from the torch
    generator, filled by two threads: ~3× faster than 'torch', PyTorch's serial CPU generator) or
    'torch' (``torch.rand``). Both are reproducible from the torch RNG state (checkpoints restore
    it). CUDA tensors always use ``torch.rand``."""
    noise_prefetch: bool = False
    """prob_topk: draw the gate's uniforms on a background thread (``UniformPrefetch``, same
    random stream) while the encoder matmuls run. Off: not shown to pay on the 2-core test
    machine (docs/results/speed-cpu.md)."""
    decoder_backward: str = "embedding_bag"
    """Backward of ``sparse_decode``: 'embedding_bag' (PyTorch's own) or 'bags' (by-latent
    gather-sum sharing the encoder's sort + ATen's per-sample-weight kernel). 'bags' measured
    equal on the full step (docs/results/speed-cpu.md), so the simpler one is the default."""


settings = Settings()
