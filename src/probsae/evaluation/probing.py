"""Sparse probing math (SAEBench's method, docs/BENCH.md): mean pooling over a text's tokens,
one-vs-rest binary tasks with balanced negatives, top-k features by class-mean difference, and
an L2-regularised logistic regression.

Pure functions of tensors (no model, no SAE): ``probsae.bench.probing`` feeds them pooled
activations and pooled latents.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import InputError

PROBE_C = 1.0
"""Inverse L2 strength of the logistic regression (SAEBench: scikit-learn's default C = 1)."""
PROBE_MAX_ITER = 100
"""Newton iterations at most (it converges in about ten; SAEBench gives L-BFGS max_iter = 1000)."""


def mean_pool(acts: Tensor, keep: Tensor) -> Tensor:
    """(B, T, D) per-token values and a (B, T) mask of the tokens that count → (B, D) the mean
    over each row's kept tokens (a row without any kept token gives zeros)."""
    w = keep.to(acts.dtype).unsqueeze(-1)
    return (acts * w).sum(1) / w.sum(1).clamp_min(1)


def top_k_mean_diff(x: Tensor, y: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` features with the largest |mean over positives − mean over negatives|
    (``y`` is 1/0), largest first; ties go to the lower index."""
    diff = (x[y == 1].mean(0) - x[y == 0].mean(0)).abs()
    return torch.sort(diff, descending=True, stable=True).indices[:min(k, x.shape[1])]


def fit_logistic(x: Tensor, y: Tensor, c: float = PROBE_C, max_iter: int = PROBE_MAX_ITER,
                 sample_weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Weights (D,) and bias () of a binary logistic regression: the minimiser of
    Σᵢ vᵢ log(1 + exp(−sᵢ(w·xᵢ + b))) + ‖w‖² / (2c), sᵢ = ±1, vᵢ = ``sample_weight`` (default 1),
    the bias not penalised — scikit-learn's ``LogisticRegression(C=c)`` objective (with
    ``class_weight`` as the weights) — found by Newton's method with step halving, in float64
    (the objective is strictly convex in w; a probe has at most a few thousand features)."""
    xb = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
    t = y.double()
    v = torch.ones_like(t) if sample_weight is None else sample_weight.double()
    ridge = torch.full((xb.shape[1],), 1.0 / c, dtype=torch.float64)
    ridge[-1] = 1e-12  # the bias: unpenalised (a tiny ridge keeps the Hessian invertible)

    def objective(w: Tensor) -> Tensor:
        z = xb @ w
        return (v * (torch.nn.functional.softplus(z) - t * z)).sum() + 0.5 * (ridge[:-1] * w[:-1].square()).sum()

    w = torch.zeros(xb.shape[1], dtype=torch.float64)
    f = objective(w)
    for _ in range(max_iter):
        p = torch.sigmoid(xb @ w)
        grad = xb.T @ (v * (p - t)) + ridge * w
        hess = (xb.T * (v * p * (1 - p))) @ xb + torch.diag(ridge)
        step = torch.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-10:
            new = objective(w - scale * step)
            if new <= f:
                break
            scale /= 2
        w, f_old, f = w - scale * step, f, new
        if (scale * step).abs().max() < 1e-10 or f_old - f < 1e-13 * max(1.0, abs(float(f))):
            break
    return w[:-1], w[-1]


def accuracy(w: Tensor, b: Tensor, x: Tensor, y: Tensor) -> float:
    """Fraction of rows whose sign of w·x + b (> 0: class 1) matches ``y``."""
    return float(((x.double() @ w + b > 0).long() == y.long()).double().mean())


def one_vs_rest(features: dict[str, Tensor], positive: str, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """A balanced binary task: every row of ``positive`` (label 1) against as many rows drawn from
    the other classes (label 0): ⌈n/(classes−1)⌉ drawn at random from each, then n of those at
    random; the rows shuffled. As SAEBench's ``prepare_probe_data``."""
    pos = features[positive]
    others = [c for c in features if c != positive]
    if not others:
        raise InputError("one-vs-rest probing needs at least two classes")
    per = math.ceil(len(pos) / len(others))
    neg = torch.cat([features[c][torch.randperm(len(features[c]), generator=gen)[:per]] for c in others])
    neg = neg[torch.randperm(len(neg), generator=gen)[:len(pos)]]
    x = torch.cat([pos, neg])
    y = torch.cat([torch.ones(len(pos), dtype=torch.long), torch.zeros(len(neg), dtype=torch.long)])
    order = torch.randperm(len(x), generator=gen)
    return x[order], y[order]


def probe_accuracies(train: dict[str, Tensor], test: dict[str, Tensor], k: int | None, seed: int = 0,
                     c: float = PROBE_C) -> dict[str, float]:
    """Test accuracy per class of a one-vs-rest probe on pooled features ({class: (n, D)}): with
    ``k``, on the top ``k`` features by class-mean difference on the class's training task only;
    ``None``: on all D features. The negatives of every class's task are drawn with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for cls in train:
        xtr, ytr = one_vs_rest(train, cls, gen)
        xte, yte = one_vs_rest(test, cls, gen)
        if k is not None:
            idx = top_k_mean_diff(xtr, ytr, k)
            xtr, xte = xtr[:, idx], xte[:, idx]
        w, b = fit_logistic(xtr, ytr, c)
        out[cls] = accuracy(w, b, xte, yte)
    return out
