"""The statistics behind every interval probsae reports: Student-t confidence intervals of a mean
(over seeds, latents), Pearson's r with its Fisher-z interval, and percentile-bootstrap intervals
(over windows). NumPy only; every interval is two-sided 95 %."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: The standard normal's 97.5 % quantile (two-sided 95 %).
Z975 = 1.959964

_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_quantile_975(df: int) -> float:
    """Two-sided 95 % Student-t critical value (table up to 30 df, Cornish–Fisher beyond)."""
    if df < 1:
        return float("nan")
    if df <= 30:
        return _T975[df - 1]
    z = Z975
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def mean_ci(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """(mean, ci_low, ci_high) of the finite values (None and NaN/inf left out): a Student-t 95 %
    interval with n − 1 degrees of freedom; the CI is None for fewer than 2 values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if len(v) == 0:
        return None, None, None
    m = float(v.mean())
    if len(v) < 2:
        return m, None, None
    half = t_quantile_975(len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return m, m - half, m + half


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r; None for fewer than 3 pairs or a constant side."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def fisher_ci(r: float | None, n: int) -> tuple[float | None, float | None]:
    """95 % CI of a Pearson r over n pairs (Fisher z; None when undefined)."""
    if r is None or n < 4 or abs(r) >= 1:
        return None, None
    z, se = math.atanh(r), 1.0 / math.sqrt(n - 3)
    return math.tanh(z - Z975 * se), math.tanh(z + Z975 * se)


def bootstrap_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) float64: how often each of ``n`` units is drawn in each resample (drawn with
    replacement, ``n`` draws per resample); a statistic of sums is then ``counts @ per_unit``."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def percentile_interval(values: np.ndarray) -> list[float] | None:
    """[2.5 %, 97.5 %] quantiles of the finite ``values`` (bootstrap replicates); None if none is finite."""
    v = values[np.isfinite(values)]
    return [float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))] if len(v) else None
