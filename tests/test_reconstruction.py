"""probsae.reconstruction: the one MSE/FVU/EV formula, and the three places that report it
(evaluate's accumulator, the training log's batch metrics, the distributed global batch) agreeing."""

import pytest
import torch

from probsae.evaluation.metrics import MetricAccumulator
from probsae.reconstruction import ReconstructionStats
from probsae.training import distributed
from probsae.training.config import TrainConfig


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 4, generator=g) + 3.0
    return x, x + 0.3 * torch.randn(9, 4, generator=g)


def test_the_sums_give_the_hand_computed_figures():
    x, r = _batch()
    stats = ReconstructionStats.of(x, r)
    x64, r64 = x.double(), r.double()
    sse = ((x64 - r64) ** 2).sum()
    fvu = float(sse / ((x64 - x64.mean(0)) ** 2).sum())
    assert stats.n == 9 and stats.mse() == pytest.approx(float(sse) / 9, rel=1e-12)
    assert stats.fvu() == pytest.approx(fvu, rel=1e-9)
    assert stats.batch_metrics() == pytest.approx((float(sse) / 9, 1 - fvu), rel=1e-9)
    same = ReconstructionStats.of(torch.zeros(3, 4), torch.zeros(3, 4))  # equal rows: no variance
    assert same.fvu() != same.fvu() and same.batch_metrics() == (0.0, 1.0)


def test_evaluation_training_log_and_distributed_metrics_agree_on_a_tiny_batch():
    x, r = _batch()
    acc = MetricAccumulator(4, 3)
    acc.update(x[:4], r[:4], torch.ones(4, 3))  # evaluate: streamed in two batches
    acc.update(x[4:], r[4:], torch.ones(5, 3))
    ev = acc.result()
    log_mse, log_ev = ReconstructionStats.of(x, r).batch_metrics()  # Member.log, one process
    dist_mse, dist_ev = distributed.setup(TrainConfig()).batch_metrics(x, r)  # DistContext.batch_metrics
    assert ev["mse"] == pytest.approx(log_mse, rel=1e-12) == pytest.approx(dist_mse, rel=1e-12)
    assert ev["explained_variance"] == pytest.approx(log_ev, rel=1e-9) == pytest.approx(dist_ev, rel=1e-9)


def test_summed_rank_vectors_are_the_global_batch():
    x, r = _batch()
    ranks = [ReconstructionStats.of(x[:5], r[:5]), ReconstructionStats.of(x[5:], r[5:])]
    merged = ReconstructionStats.from_vector(ranks[0].to_vector() + ranks[1].to_vector())  # an all-reduce
    whole = ReconstructionStats.of(x, r)
    assert merged.n == 9
    assert merged.batch_metrics() == pytest.approx(whole.batch_metrics(), rel=1e-12)
