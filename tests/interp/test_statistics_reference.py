"""The hand-written statistics against their library equivalents (scipy, scikit-learn are dev
dependencies for exactly this; docs/ARCHITECTURE.md says why the package does not depend on them)."""

import numpy as np
import pytest

from probsae.interp import classification_metrics, pearson, roc_auc
from probsae.stats import t_quantile_975


def test_t_quantile_matches_scipy():
    from scipy.stats import t

    for df in list(range(1, 61)) + [75, 100, 200, 500, 1000]:
        assert t_quantile_975(df) == pytest.approx(t.ppf(0.975, df), abs=1e-3), df


def test_roc_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for n in (5, 40, 301):
        scores = np.round(rng.normal(size=n), 1)                 # rounding makes ties
        labels = rng.random(n) < 0.4
        labels[:2] = [True, False]
        assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_pearson_and_classification_metrics_match_the_libraries():
    from scipy.stats import pearsonr
    from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score

    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, 200), rng.random(200)
    assert pearson(x, y) == pytest.approx(pearsonr(x, y)[0], abs=1e-12)
    pred, truth = rng.random(50) < 0.5, rng.random(50) < 0.5
    m = classification_metrics(pred.astype(int).tolist(), truth.tolist())
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, pred))
    assert m["precision"] == pytest.approx(precision_score(truth, pred))
    assert m["recall"] == pytest.approx(recall_score(truth, pred))
    assert m["f1"] == pytest.approx(f1_score(truth, pred))
