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
PROBE_MAX_ITER = 1000
"""L-BFGS iterations at most (SAEBench: max_iter = 1000)."""


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


def fit_logistic(x: Tensor, y: Tensor, c: float = PROBE_C, max_iter: int = PROBE_MAX_ITER
                 ) -> tuple[Tensor, Tensor]:
    """Weights (D,) and bias () of a binary logistic regression: the minimiser of
    Σᵢ log(1 + exp(−sᵢ(w·xᵢ + b))) + ‖w‖² / (2c), sᵢ = ±1, the bias not penalised — scikit-learn's
    ``LogisticRegression(penalty='l2', C=c)`` objective — found by L-BFGS in float64."""
    x64, s = x.double(), y.double() * 2 - 1
    w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        margin = s * (x64 @ w[:-1] + w[-1])
        loss = torch.nn.functional.softplus(-margin).sum() + w[:-1].square().sum() / (2 * c)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w = w.detach()
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
