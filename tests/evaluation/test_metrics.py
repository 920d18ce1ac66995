"""evaluate() against metrics computed by hand."""

import pytest
import torch

import probsae
from probsae.evaluation.metrics import MetricAccumulator


def test_evaluate_matches_hand_computation():
    torch.manual_seed(0)
    sae = probsae.build_sae("topk", d_in=4, d_sae=6, k=2, normalize="none").eval()
    x = torch.randn(50, 4)
    with torch.no_grad():
        codes = sae.encode(x)
        recon = codes @ sae.W_dec + sae.b_dec
    err = ((x - recon) ** 2).sum(1)
    total = ((x - x.mean(0)) ** 2).sum()
    expected_fvu = float(err.sum() / total)
    metrics = probsae.evaluate(sae, x, batch_size=7)  # batches that don't divide N
    assert metrics["mse"] == pytest.approx(float(err.mean()), rel=1e-5)
    assert metrics["fvu"] == pytest.approx(expected_fvu, rel=1e-5)
    assert metrics["explained_variance"] == pytest.approx(1 - expected_fvu, rel=1e-5)
    assert metrics["l0"] == pytest.approx(float((codes != 0).sum(1).float().mean()))
    assert 0 < metrics["l0"] <= 2
    fired = (codes != 0).any(0)
    assert metrics["alive"] == int(fired.sum()) and metrics["dead"] == 6 - int(fired.sum())
    assert metrics["n_tokens"] == 50


def test_fvu_uses_the_variance_around_the_mean_not_the_raw_second_moment():
    acc = MetricAccumulator(2, 3)
    x = torch.tensor([[10.0, 10.0], [12.0, 10.0]])  # large mean, small variance
    recon = torch.tensor([[11.0, 10.0], [11.0, 10.0]])  # predicts the mean: FVU must be exactly 1
    acc.update(x, recon, torch.zeros(2, 3))
    assert acc.result()["fvu"] == pytest.approx(1.0)
    assert acc.result()["mse"] == pytest.approx(1.0)


def test_metrics_are_on_the_normalised_scale():
    sae = probsae.build_sae("relu", d_in=8, d_sae=16)
    x = torch.randn(64, 8)
    a, b = probsae.evaluate(sae, x), probsae.evaluate(sae, x * 100.0 + 5.0)
    assert a["mse"] == pytest.approx(b["mse"], rel=1e-3)


def test_evaluate_respects_max_tokens_and_restores_mode():
    sae = probsae.build_sae("prob_topk", d_in=8, d_sae=16, k=2).train()
    m = probsae.evaluate(sae, torch.randn(100, 8), batch_size=32, max_tokens=40)
    assert m["n_tokens"] == 40 and sae.training
