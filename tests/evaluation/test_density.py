"""Feature density: per-latent firing fractions equal to the dense codes', and the histogram."""

import numpy as np
import torch

import probsae
from probsae.evaluation.density import density_histogram, latent_density
from probsae.evaluation.metrics import evaluate


def test_latent_density_matches_the_dense_codes_and_evaluate():
    torch.manual_seed(0)
    sae = probsae.build_sae("topk", d_in=8, d_sae=32, k=2).eval()
    x = torch.randn(500, 8)
    want = (sae.encode(x) != 0).double().mean(0).numpy()
    got = latent_density(sae, x, batch_size=64)
    np.testing.assert_allclose(got, want)
    assert np.isclose(got.sum(), 2.0), "k = 2 latents per token"
    assert int((got > 0).sum()) == evaluate(sae, x)["alive"]
    np.testing.assert_allclose(latent_density(sae, x, max_tokens=100), (sae.encode(x[:100]) != 0).double().mean(0))


def test_density_histogram_bins_log_density_and_counts_dead_apart():
    h = density_histogram(np.array([0.0, 0.0, 1e-9, 1e-3, 1e-3, 0.9, 1.0]))
    assert h["dead"] == 2 and sum(h["counts"]) == 5
    edges = np.array(h["log10_edges"])
    assert h["counts"][0] == 1, "below 1e-6: the first bin"
    assert h["counts"][int(np.searchsorted(edges, -3.0, side="right")) - 1] == 2
    assert h["counts"][-1] == 2, "0.9 and 1.0 fall in the last bin"
