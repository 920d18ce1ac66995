"""SAEConfig.init: the per-architecture default, the two schemes, and validation."""

from __future__ import annotations

import json

import pytest
import torch

from probsae import build_sae, load_sae
from probsae.errors import ConfigError


def test_auto_resolves_per_architecture_and_is_recorded(tmp_path):
    topk = build_sae("topk", d_in=8, d_sae=128, k=2)
    prob = build_sae("prob_topk", d_in=8, d_sae=128, k=2)
    assert topk.cfg.init == "unit" and prob.cfg.init == "orthogonal"
    prob.save(tmp_path / "p")
    assert json.loads((tmp_path / "p" / "config.json").read_text())["config"]["init"] == "orthogonal"
    assert load_sae(tmp_path / "p").cfg.init == "orthogonal"


def test_unit_rows_and_tied_encoder():
    sae = build_sae("topk", d_in=8, d_sae=128, k=2, init="unit")
    norms = sae.W_dec.detach().norm(dim=1)
    assert torch.allclose(norms, torch.ones(128), atol=1e-5)
    assert torch.equal(sae.W_enc.detach(), sae.W_dec.detach().t())
    # random directions: not all the same, not orthogonal columns
    gram = sae.W_dec.detach().t() @ sae.W_dec.detach()
    assert not torch.allclose(gram, torch.eye(8), atol=1e-2)


def test_orthogonal_is_the_papers_literal_setting_at_16x():
    sae = build_sae("topk", d_in=8, d_sae=128, k=2, init="orthogonal")
    w = sae.W_dec.detach()
    assert torch.allclose(w.t() @ w, torch.eye(8), atol=1e-5)         # orthonormal columns
    assert w.norm(dim=1).pow(2).mean().item() == pytest.approx(8 / 128, rel=1e-4)  # rows ≈ √(d_in/d_sae)
    assert torch.equal(sae.W_enc.detach(), w.t())


def test_same_seed_same_weights_other_seed_differs():
    a = build_sae("topk", d_in=8, d_sae=64, k=2, seed=3)
    b = build_sae("topk", d_in=8, d_sae=64, k=2, seed=3)
    c = build_sae("topk", d_in=8, d_sae=64, k=2, seed=4)
    assert torch.equal(a.W_dec, b.W_dec) and not torch.equal(a.W_dec, c.W_dec)


def test_unknown_init_is_a_config_error():
    with pytest.raises(ConfigError, match="init must be one of"):
        build_sae("topk", d_in=8, d_sae=64, k=2, init="xavier")
