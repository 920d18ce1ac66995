"""Every architecture learns: explained variance ≥ 0.9 at a sensible L0 on toy activations with a
known dictionary, and the learned decoder recovers the true feature directions."""

import pytest
import torch

import probsae
from probsae.synthetic import SyntheticActivations, feature_recovery

# Hyperparameters on this library's loss scale; the toy data has 3 active features per token on average.
HPARAMS = {
    "topk": {"k": 8}, "prob_topk": {"k": 8}, "abstopk": {"k": 8}, "batchtopk": {"k": 8},
    "vsae_topk": {"k": 8, "kl_coeff": 1e-5},
    "relu": {"l1_coeff": 0.1}, "gated": {"l1_coeff": 0.3}, "jumprelu": {"l0_coeff": 5e-3},
}


@pytest.fixture(scope="module")
def toy():
    gen = SyntheticActivations(d_in=32, n_features=64, avg_active=3.0, seed=11)  # ≠ the SAE init seed
    return gen, gen.sample(30_000), gen.sample(4_000)


def test_hparams_cover_every_architecture():
    assert set(HPARAMS) == set(probsae.ARCHITECTURES)


@pytest.mark.parametrize("arch", sorted(HPARAMS))
def test_architecture_recovers_the_toy_dictionary(arch, toy, device):
    gen, train_x, test_x = toy
    sae = probsae.build_sae(arch, d_in=32, d_sae=128, **HPARAMS[arch])
    signed = arch in ("abstopk", "prob_topk")  # codes may be negative: a feature may be learned as −d
    recovery_before = feature_recovery(gen.dictionary, sae.W_dec.detach(), absolute=signed)
    probsae.train(sae, train_x, probsae.TrainConfig(steps=1000, batch_size=256, lr=5e-3, warmup_steps=50,
                                                     progress=False, log_every=500, device=str(device)))
    m = probsae.evaluate(sae, test_x)
    assert m["explained_variance"] >= 0.9, m
    assert 2.0 <= m["l0"] <= 16.0, m  # sensible: a few times the 3 true active features, not dense
    assert recovery_before < 0.6  # random init: mean max |cos| ≈ 0.45–0.5 in 32 dimensions
    assert feature_recovery(gen.dictionary, sae.W_dec.detach(), absolute=signed) >= 0.8


def test_generator_statistics():
    gen = SyntheticActivations(d_in=16, n_features=40, avg_active=3.0, seed=1)
    codes = gen.sample_codes(20_000)
    assert (codes != 0).sum(1).float().mean().item() == pytest.approx(3.0, rel=0.05)
    freq = (codes != 0).float().mean(0)
    assert freq[0] > 3 * freq[-1], "feature frequencies are skewed"
    assert torch.allclose(gen.dictionary.norm(dim=1), torch.ones(40))
    assert feature_recovery(gen.dictionary, gen.dictionary) == pytest.approx(1.0)
    assert feature_recovery(gen.dictionary, torch.randn(40, 16)) < 0.8
