"""Every architecture learns: explained variance ≥ 0.9 at a sensible L0 on toy activations with a
known dictionary, and the learned decoder recovers the true feature directions."""

import pytest
import torch

import probsae
from probsae.evaluation.recovery import HPARAMS, recovery, toy_data
from probsae.synthetic import SyntheticActivations, feature_recovery


@pytest.fixture(scope="module")
def toy():
    return toy_data()


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_architecture_recovers_the_toy_dictionary(arch, toy, device):
    assert arch in HPARAMS, f"{arch}: add its toy hyperparameters to probsae.evaluation.recovery.HPARAMS"
    r = recovery(arch, toy, device=str(device))
    m = r["metrics"]
    assert m["explained_variance"] >= 0.9, m
    assert 2.0 <= m["l0"] <= 16.0, m  # sensible: a few times the 3 true active features, not dense
    assert r["recovery_before"] < 0.6  # random init: mean max |cos| ≈ 0.45–0.5 in 32 dimensions
    assert r["recovery"] >= 0.8, r


def test_generator_statistics():
    gen = SyntheticActivations(d_in=16, n_features=40, avg_active=3.0, seed=1)
    codes = gen.sample_codes(20_000)
    assert (codes != 0).sum(1).float().mean().item() == pytest.approx(3.0, rel=0.05)
    freq = (codes != 0).float().mean(0)
    assert freq[0] > 3 * freq[-1], "feature frequencies are skewed"
    assert torch.allclose(gen.dictionary.norm(dim=1), torch.ones(40))
    assert feature_recovery(gen.dictionary, gen.dictionary) == pytest.approx(1.0)
    assert feature_recovery(gen.dictionary, torch.randn(40, 16)) < 0.8
