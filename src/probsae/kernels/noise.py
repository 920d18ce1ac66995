"""Logistic noise log u − log(1 − u), u ~ U(0, 1), for the Binary Concrete gate, and the gate's
selection score computed in place without an autograd graph.

``logistic_noise`` draws u with ``uniform`` (the same stream as the reference: NumPy PCG64 streams
seeded from the torch generator by default, or ``torch.rand``; ``KernelPolicy.noise_source``) and maps it with
one ``logit`` (log(u / (1 − u)): one log instead of log + log1p and no temporaries); it agrees
with ``logistic_noise_reference`` to float rounding. The uniform draw itself (PyTorch's CPU
generator is serial) is the part that cannot be made cheaper without changing the random stream;
see docs/results/speed-cpu.md for the measured split.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-6


_PARTS = 2  # fixed, so the numbers never depend on the machine's core count
_PARALLEL_MIN = 1 << 18


def uniform(shape, generator: torch.Generator | None = None, device: torch.device | str = "cpu",
            source: str = "numpy") -> Tensor:
    """U(0, 1) float32 samples. On CPU with ``source == 'numpy'`` (``KernelPolicy.noise_source``): one 62-bit seed
    is drawn from the torch generator (so torch's RNG state still determines everything and
    checkpoints stay exact), and two PCG64 streams seeded (seed, 0) and (seed, 1) fill the two
    halves of the output, on two threads for large outputs (NumPy releases the GIL)."""
    if torch.device(device).type != "cpu" or source == "torch":
        return torch.rand(shape, device=device, dtype=torch.float32, generator=generator)
    seed = int(torch.randint(0, 1 << 62, (1,), generator=generator))
    out = torch.empty(shape, dtype=torch.float32)
    flat = out.view(-1).numpy()
    bounds = np.linspace(0, flat.size, _PARTS + 1).astype(np.int64)

    def fill(i: int) -> None:
        rng = np.random.Generator(np.random.PCG64([seed, i]))
        rng.random(out=flat[bounds[i]:bounds[i + 1]], dtype=np.float32)

    if flat.size >= _PARALLEL_MIN:
        list(_pool().map(fill, range(_PARTS)))
    else:
        for i in range(_PARTS):
            fill(i)
    return out


@cache
def _pool() -> ThreadPoolExecutor:
    """The two noise-filling threads, started on first use."""
    return ThreadPoolExecutor(max_workers=_PARTS, thread_name_prefix="probsae-noise")


def logistic_noise(like: Tensor, generator: torch.Generator | None = None, source: str = "numpy") -> Tensor:
    """Standard logistic samples with the shape of ``like`` (fp32 math, u clamped to [ε, 1−ε]);
    ``source``: where the uniforms come from (``uniform``)."""
    u = uniform(like.shape, generator, like.device, source)
    return u.logit_(_EPS).to(like.dtype)


def logistic_noise_reference(like: Tensor, generator: torch.Generator | None = None, source: str = "numpy") -> Tensor:
    """The straightforward formula (two logs and temporaries), kept for the tests."""
    u = uniform(like.shape, generator, like.device, source)
    u = u.clamp_(_EPS, 1.0 - _EPS)
    return (torch.log(u) - torch.log1p(-u)).to(like.dtype)


#: Selection scores of the Probabilistic TopK gate (``ProbTopKConfig.score``; see saes/prob_topk.py).
GATE_SCORES = ("paper", "stable", "logit")


def gate_score_(t: Tensor, a: Tensor, beta: Tensor | float, lambda_mag: float, score: str = "paper") -> Tensor:
    """The selection score, in place, from ``t`` = the gate's (noisy) logit ℓ + c·L (ℓ = LN(a)):

    * ``paper``:  s = σ(t/β) + λ|a|      (eq. 8; σ rounds to 1.0 in float32 once t/β ≳ 17)
    * ``stable``: s = λ|a| − σ(−t/β)     (the same order in exact arithmetic, since σ(x) = 1 − σ(−x),
      but σ(−x) keeps its resolution down to ~1e-38, i.e. until t/β ≈ 88 instead of 17)
    * ``logit``:  s = t + λ|a|           (the logit itself: never saturates; the caller scales the
      noise by c = β/β₀ so that annealing shrinks the noise instead of sharpening a sigmoid)

    This is the one place the score formula lives: the plain and CPU paths call it, and the Triton
    path's ``_score`` (kernels/_triton.py) mirrors exactly these lines (its SCORE mode).

    ``t`` is overwritten; the result is ``t`` or the λ|a| buffer. No tensor that autograd saved
    is modified afterwards (σ's output is added into λ|a|, not the other way round), so the plain
    path's differentiable selection (``straight_through``) can call it too."""
    if score not in GATE_SCORES:
        raise ValueError(f"unknown gate score {score!r}; choose one of {GATE_SCORES}")
    if score == "paper":
        t = t.div_(beta).sigmoid_()
    elif score == "stable":
        t = t.div_(beta).neg_().sigmoid_()  # σ(−t/β), subtracted from λ|a| below
    if score == "stable" or lambda_mag:
        m = a.abs().mul_(lambda_mag)
        return m.sub_(t) if score == "stable" else m.add_(t)
    return t


def gate_of_score(s: Tensor, a: Tensor, beta: Tensor | float, lambda_mag: float, score: str = "paper") -> Tensor:
    """The gate value z = σ(t/β) at latents whose ``gate_score_`` is ``s`` and pre-activation ``a``
    (the inverse of the score, to float rounding; differentiable)."""
    t = s - lambda_mag * a.abs() if lambda_mag else s
    if score == "paper":
        return t
    if score == "stable":
        return 1.0 + t
    return torch.sigmoid(t / beta)


@torch.no_grad()
def concrete_gate_score(a: Tensor, beta: Tensor | float, lambda_mag: float, ln_weight: Tensor | None,
                        ln_bias: Tensor | None, noisy: bool, generator: torch.Generator | None = None,
                        layernorm: bool = True, score: str = "paper",
                        noise_scale: Tensor | float | None = None, noise_source: str = "numpy") -> Tensor:
    """Selection score (``gate_score_``; the paper's s = σ((LN(a) + L)/β) + λ|a| by default) of a
    chunk of pre-activations (C, d_sae), with L logistic noise (times ``noise_scale`` when given)
    when ``noisy`` (uniforms from ``noise_source``); computed in one buffer, in place, without autograd.

    Same operations in the same order as ``Selection.dense_scores`` (so the same generator state
    gives the same noise), except that the noise uses ``logit``."""
    if layernorm:
        s = F.layer_norm(a, (a.shape[-1],), ln_weight, ln_bias)
    else:
        s = a.clone()
    if noisy:
        noise = logistic_noise(s, generator, noise_source)
        s.add_(noise if noise_scale is None else noise.mul_(noise_scale))
    return gate_score_(s, a, beta, lambda_mag, score)
