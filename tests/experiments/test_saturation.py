"""experiments.saturation: the float32 saturation of the paper's gate score on a tiny SAE."""

from __future__ import annotations

import torch

import probsae
from probsae.experiments.saturation import measure, overlap_loss


def test_overlap_loss_by_hand():
    a = torch.tensor([[0, 1, 2], [3, 4, 5]])
    b = torch.tensor([[2, 1, 0], [3, 9, 8]])
    assert abs(overlap_loss(a, b) - (1 - (3 + 1) / 6)) < 1e-6


def test_saturation_grows_as_beta_falls_and_noise_keeps_dropping():
    sae = probsae.build_sae("prob_topk", d_in=16, d_sae=256, k=4).eval()
    x = torch.randn(512, 16, generator=torch.Generator().manual_seed(0))
    rows = measure(sae, x, betas=(5.0, 0.2, 1e-4))
    sat = [r["saturated"] for r in rows]
    assert sat[0] == 0.0 and sat[0] < sat[1] < sat[2] and 0.3 < sat[2] < 0.7  # ≈ P(ℓ + L > 0)
    assert rows[0]["differ"] == 0.0                     # nothing saturates at β = 5: same selection
    assert rows[2]["tied"] > 0.0 and rows[2]["differ"] > 0.0
    assert rows[2]["noisy_vs_clean"] > 0.0              # the Bernoulli draw persists at β → 0


def test_the_scripts_inputs_are_the_run_sae_and_the_first_cached_tokens_or_a_clear_error(tmp_path):
    import pytest

    from probsae.data.cache import build_cache
    from probsae.errors import ConfigError
    from probsae.experiments.saturation import gated_sae_and_tokens

    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
    build_cache([x], tmp_path / "cache", {"model": "synthetic", "hook": "x"}, shard_tokens=64)
    probsae.build_sae("prob_topk", d_in=16, d_sae=64, k=4).save(tmp_path / "p")
    probsae.build_sae("topk", d_in=16, d_sae=64, k=4).save(tmp_path / "t")
    sae, rows = gated_sae_and_tokens(str(tmp_path / "p"), str(tmp_path / "cache"), 8, "prob_topk")
    assert sae.architecture == "prob_topk" and not sae.training and torch.equal(rows, x[:8])
    with pytest.raises(ConfigError, match="is a topk SAE, not prob_topk"):
        gated_sae_and_tokens(str(tmp_path / "t"), str(tmp_path / "cache"), 8, "prob_topk")
