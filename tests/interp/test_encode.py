"""interp.encode: the one sparse encode path equals SAE.encode for every architecture and carries
the extra outputs the architecture declares (prob_topk's pre-gate score), asked for only where
declared."""

import pytest
import torch
import torch.nn.functional as F

import probsae
from probsae.interp.encode import ROW_CHUNK, sparse_codes, token_outputs


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_sparse_codes_equal_the_dense_encoding(arch, monkeypatch):
    kw = {"k": 3} if "k" in probsae.hyperparameters(arch) else {}
    sae = probsae.build_sae(arch, d_in=8, d_sae=24, **kw).eval()
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0)) * 3
    sae.init_from_data(x)
    if hasattr(sae, "threshold"):  # a trained BatchTopK family SAE has its global threshold (untrained: per-batch top-k)
        sae.threshold.fill_(0.2)
    monkeypatch.setattr("probsae.interp.encode.ROW_CHUNK", 16)       # several row chunks
    rows, lat, val, extras = sparse_codes(sae, x)
    dense = torch.zeros(50, 24)
    dense[rows, lat] = val
    assert torch.allclose(dense, sae.encode(x), atol=1e-6)
    assert (val != 0).all() and len(rows) == int((sae.encode(x) != 0).sum())
    assert set(extras) == set(token_outputs(sae))
    if "gate_logits" in extras:       # prob_topk: LayerNorm(a) at the firing latents
        x_n, _ = sae.normalizer(x)
        want = F.layer_norm(sae.pre_acts(x_n), (24,), sae.ln_weight, sae.ln_bias)[rows, lat]
        assert torch.allclose(extras["gate_logits"], want, atol=1e-5)
    assert ROW_CHUNK >= 1024                                       # the default bounds memory, not correctness


@pytest.mark.parametrize("arch", ["prob_topk", "topk"])
def test_extras_are_computed_once_per_row_and_only_where_declared(arch, monkeypatch):
    sae = probsae.build_sae(arch, d_in=8, d_sae=24, k=3).eval()
    calls = []
    orig = type(sae).extras

    def counting(self, x):
        calls.append(x.shape[0])
        return orig(self, x)

    monkeypatch.setattr(type(sae), "extras", counting)
    monkeypatch.setattr("probsae.interp.encode.ROW_CHUNK", 16)
    _, _, _, extras = sparse_codes(sae, torch.randn(40, 8))
    assert sum(calls) == (40 if type(sae).extra_outputs else 0)
    assert set(extras) == set(type(sae).extra_outputs)
