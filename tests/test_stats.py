"""probsae.stats: the one home of confidence intervals (Student t, Fisher z, percentile bootstrap)."""

import math

import numpy as np
import pytest

from probsae.stats import (Z975, bootstrap_counts, fisher_ci, mean_ci, pearson, percentile_interval,
                           t_quantile_975)


def test_mean_ci_is_a_student_t_interval_over_the_finite_values():
    m, lo, hi = mean_ci([1.0, 2.0, None, float("nan"), 3.0])
    half = 4.303 * 1.0 / math.sqrt(3)  # t(2) = 4.303, sample sd = 1
    assert (m, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert mean_ci([5.0]) == (5.0, None, None) and mean_ci([]) == (None, None, None)
    assert t_quantile_975(0) != t_quantile_975(0)  # NaN without degrees of freedom


def test_fisher_ci_and_pearson():
    lo, hi = fisher_ci(0.5, 28)
    se = 1 / 5
    assert (lo, hi) == pytest.approx((math.tanh(math.atanh(0.5) - Z975 * se), math.tanh(math.atanh(0.5) + Z975 * se)))
    assert fisher_ci(None, 10) == (None, None) and fisher_ci(1.0, 10) == (None, None) and fisher_ci(0.2, 3) == (None, None)
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1])
    assert pearson([1, 2], [1, 2]) is None and pearson([1, 1, 1], [1, 2, 3]) is None


def test_bootstrap_counts_draw_n_units_per_resample_reproducibly():
    c = bootstrap_counts(5, 7, seed=3)
    assert c.shape == (7, 5) and c.dtype == np.float64 and (c.sum(1) == 5).all()
    assert np.array_equal(c, bootstrap_counts(5, 7, seed=3))


def test_percentile_interval_ignores_non_finite_replicates():
    v = np.array([np.nan, *range(101), np.inf])
    assert percentile_interval(v) == pytest.approx([2.5, 97.5])
    assert percentile_interval(np.array([np.nan])) is None
