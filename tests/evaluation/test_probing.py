"""Sparse probing math with known answers: a planted direction, labels independent of every
feature, and scikit-learn's LogisticRegression on the same data."""

import numpy as np
import pytest
import torch

from probsae.errors import InputError
from probsae.evaluation.probing import (accuracy, fit_logistic, mean_pool, one_vs_rest, probe_accuracies,
                                        top_k_mean_diff)


def planted(n_per_class: int, n_classes: int = 3, d: int = 50, seed: int = 0, signal: float = 3.0):
    """{class: (n, d)} non-negative sparse-ish features; class c lights latent 7 + c."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for c in range(n_classes):
        x = torch.rand(n_per_class, d, generator=g) * (torch.rand(n_per_class, d, generator=g) < 0.2)
        x[:, 7 + c] += signal
        out[f"class{c}"] = x
    return out


def test_mean_pool_ignores_masked_tokens():
    acts = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    keep = torch.tensor([[True, True, False]])
    assert torch.allclose(mean_pool(acts, keep), torch.tensor([[2.0, 3.0]]))
    assert torch.equal(mean_pool(acts, torch.zeros(1, 3, dtype=torch.bool)), torch.zeros(1, 2))


def test_top_k_mean_diff_finds_the_planted_latent():
    x, y = one_vs_rest(planted(100), "class1", torch.Generator().manual_seed(0))
    assert top_k_mean_diff(x, y, 1).tolist() == [8]
    assert set(top_k_mean_diff(x, y, 3).tolist()) >= {8}


def test_planted_direction_gives_k1_accuracy_one():
    tr, te = planted(100, seed=0), planted(50, seed=1)
    accs = probe_accuracies(tr, te, k=1)
    assert set(accs) == {"class0", "class1", "class2"}
    assert min(accs.values()) >= 0.99


def test_labels_independent_of_features_give_chance():
    g = torch.Generator().manual_seed(0)
    noise = {c: torch.rand(400, 30, generator=g) for c in ("a", "b")}
    test = {c: torch.rand(400, 30, generator=g) for c in ("a", "b")}
    for k in (1, 5, None):
        accs = probe_accuracies(noise, test, k=k)
        assert all(abs(a - 0.5) < 0.08 for a in accs.values()), (k, accs)


def test_one_vs_rest_is_balanced_and_seeded():
    feats = planted(60, n_classes=4)
    x, y = one_vs_rest(feats, "class0", torch.Generator().manual_seed(3))
    assert int(y.sum()) == 60 and len(y) == 120
    x2, y2 = one_vs_rest(feats, "class0", torch.Generator().manual_seed(3))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    with pytest.raises(InputError):
        one_vs_rest({"only": feats["class0"]}, "only", torch.Generator())


def test_logistic_regression_matches_sklearn():
    sk = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 12, generator=g)
    y = ((x[:, 0] - 0.5 * x[:, 3] + 0.8 * torch.randn(300, generator=g)) > 0.2).long()
    w, b = fit_logistic(x, y, c=1.0)
    ref = sk.LogisticRegression(C=1.0, max_iter=1000, tol=1e-10).fit(x.numpy(), y.numpy())
    np.testing.assert_allclose(w.numpy(), ref.coef_[0], atol=1e-4)
    np.testing.assert_allclose(float(b), ref.intercept_[0], atol=1e-4)
    assert accuracy(w, b, x, y) == pytest.approx(ref.score(x.numpy(), y.numpy()))
