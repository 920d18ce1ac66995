"""interp.encode: the one sparse encode path equals SAE.encode for every architecture, with one
encoder pass, and carries prob_topk's pre-gate score."""

import pytest
import torch

import probsae
from probsae.interp.encode import ROW_CHUNK, sparse_codes, token_outputs


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_sparse_codes_equal_the_dense_encoding(arch, monkeypatch):
    kw = {"k": 3} if "k" in probsae.hyperparameters(arch) else {}
    sae = probsae.build_sae(arch, d_in=8, d_sae=24, **kw).eval()
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0)) * 3
    sae.init_from_data(x)
    if arch == "batchtopk":       # a trained BatchTopK has its global threshold (untrained: per-batch top-k)
        sae.threshold.fill_(0.2)
    monkeypatch.setattr("probsae.interp.encode.ROW_CHUNK", 16)       # several row chunks
    rows, lat, val, extras = sparse_codes(sae, x)
    dense = torch.zeros(50, 24)
    dense[rows, lat] = val
    assert torch.allclose(dense, sae.encode(x), atol=1e-6)
    assert (val != 0).all() and len(rows) == int((sae.encode(x) != 0).sum())
    assert set(extras) == set(token_outputs(sae))
    if "gate_logit" in extras:
        x_n, _ = sae.normalizer(x)
        want = sae.gate_logits(sae.pre_acts(x_n))[rows, lat]
        assert torch.allclose(extras["gate_logit"], want, atol=1e-5)
    assert ROW_CHUNK >= 1024                                       # the default bounds memory, not correctness


def test_one_encoder_pass_per_token(monkeypatch):
    sae = probsae.build_sae("prob_topk", d_in=8, d_sae=24, k=3).eval()
    calls = []
    orig = type(sae).pre_acts

    def counting(self, x_n):
        calls.append(x_n.shape[0])
        return orig(self, x_n)

    monkeypatch.setattr(type(sae), "pre_acts", counting)
    sparse_codes(sae, torch.randn(40, 8))
    assert sum(calls) == 40
