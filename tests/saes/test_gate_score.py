"""ProbTopKConfig.score: the paper's score, its float32 saturation, and the two opt-in fixes."""

from __future__ import annotations

import pytest
import torch

import probsae
from probsae import kernels
from probsae.errors import ConfigError
from probsae.kernels import gate_score_
from probsae.saes.options import ForwardOptions


def test_paper_score_saturates_in_float32_and_stable_does_not():
    # two fired gates with clearly different logits g = t/β = 20 and 40, equal |a|
    t = torch.tensor([[20.0, 40.0, -3.0]])
    a = torch.tensor([[0.5, 0.5, 0.5]])
    paper = gate_score_(t.clone(), a, 1.0, 1e-4, "paper")
    stable = gate_score_(t.clone(), a, 1.0, 1e-4, "stable")
    assert paper[0, 0] == paper[0, 1], "σ(20) and σ(40) both round to 1.0 in float32: a tie"
    assert stable[0, 1] > stable[0, 0] > stable[0, 2], "stable keeps the gate's order"
    # ties among saturated gates are broken by |a| in the paper's score
    paper2 = gate_score_(t.clone(), torch.tensor([[0.9, 0.1, 0.5]]), 1.0, 1e-4, "paper")
    assert paper2[0, 0] > paper2[0, 1]


def test_stable_has_the_papers_order_where_nothing_saturates():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(64, 200, generator=g) * 2  # |t/β| ≤ ~10 at β = 1: no saturation
    a = torch.randn(64, 200, generator=g)
    for lam in (0.0, 1e-2):
        p = gate_score_(t.clone(), a, 1.0, lam, "paper").topk(8, dim=-1).indices.sort(-1).values
        s = gate_score_(t.clone(), a, 1.0, lam, "stable").topk(8, dim=-1).indices.sort(-1).values
        assert torch.equal(p, s)


def test_logit_score_is_logit_plus_magnitude():
    t = torch.tensor([[3.0, -1.0, 50.0]])
    a = torch.tensor([[1.0, -2.0, 0.5]])
    torch.testing.assert_close(gate_score_(t.clone(), a, 0.01, 0.1, "logit"), t + 0.1 * a.abs())
    with pytest.raises(ValueError, match="unknown gate score"):
        gate_score_(t.clone(), a, 1.0, 0.0, "nope")


def test_logit_noise_shrinks_with_beta_and_vanishes_at_the_end():
    sae = probsae.build_sae("prob_topk", d_in=16, d_sae=96, k=4, score="logit", beta_start=5.0, beta_end=1e-4).train()
    x = torch.randn(128, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        infer = sae.eval()(x).codes != 0
        sae.train()
        sae.on_train_step(0, 100, 0)                    # β = β0: full noise
        early = sae(x).codes != 0
        sae.on_train_step(99, 100, 0)                   # β = β_T: noise × 2e-5
        late = sae(x).codes != 0
    assert sae.noise_scale().item() == pytest.approx(1e-4 / 5.0)
    assert not torch.equal(early, infer)
    assert torch.equal(late, infer), "at β_T training selection is the deterministic inference selection"


def test_paper_selection_still_drops_at_tiny_beta():
    """The flaw the fixes address: at β → 0 the paper's training selection stays random."""
    sae = probsae.build_sae("prob_topk", d_in=16, d_sae=96, k=4, beta_end=1e-4)
    x = torch.randn(128, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        infer = sae.eval()(x).codes != 0
        sae.train()
        sae.on_train_step(99, 100, 0)
        late = sae(x).codes != 0
    assert not torch.equal(late, infer)


@pytest.mark.parametrize("score", ["stable", "logit"])
def test_fast_path_equals_plain_path(score):
    # a chunked draw equals one whole-batch draw only for torch.rand (see tests/kernels/conftest.py)
    torch_noise = kernels.KernelPolicy(noise_source="torch")
    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(8))
    res = {}
    for fast in (True, False):
        sae = probsae.build_sae("prob_topk", d_in=12, d_sae=72, k=5, beta_start=0.7, lambda_mag=0.05,
                                score=score).train()
        sae.noise_generator = torch.Generator().manual_seed(9)
        out = sae(x, options=ForwardOptions(policy=torch_noise.replace(fast=fast, chunk=16 if fast else None)))
        out.loss.backward()
        res[fast] = (out.codes.detach(), out.aux["gate_selected"], sae.W_enc.grad.clone())
    for f, p in zip(res[True], res[False]):
        torch.testing.assert_close(f, p, rtol=1e-4, atol=1e-5)


def test_unknown_score_is_a_config_error():
    with pytest.raises(ConfigError, match="score must be one of"):
        probsae.build_sae("prob_topk", d_in=4, d_sae=16, k=2, score="log")
