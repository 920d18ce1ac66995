"""The transcoder's data path: [input | target] rows from one forward, cached with both hooks."""

from __future__ import annotations

import pytest
import torch

from probsae.data.cache import ActivationCache
from probsae.data.errors import HookPointError
from probsae.data.extract import ActivationStream
from probsae.data.prepare import DataSpec, prepare_caches
from probsae.data.tiny import save_tiny_model, tiny_documents

MLP_IN, MLP_OUT = "mlp_in.1", "mlp_out.1"


def test_pairs_are_the_two_hooks_of_one_forward(tiny_gpt2):
    docs = tiny_documents(6)
    pairs = ActivationStream.from_corpus(tiny_gpt2, MLP_IN, docs, context_length=16, target_hook=MLP_OUT)
    plain = ActivationStream.from_corpus(tiny_gpt2, [MLP_IN, MLP_OUT], docs, context_length=16)
    for p, b in zip(pairs.batches(), plain.batches()):
        assert list(p.by_hook) == [MLP_IN]
        torch.testing.assert_close(p.acts, torch.cat([b.by_hook[MLP_IN], b.by_hook[MLP_OUT]], -1))


def test_unequal_widths_and_several_inputs_are_refused(tiny_gpt2):
    docs = tiny_documents(2)
    wide = ActivationStream.from_corpus(tiny_gpt2, MLP_IN, docs, 16, target_hook="module:transformer.h.1.mlp.c_fc")
    with pytest.raises(HookPointError, match="width mismatch.*needs equal widths"):
        next(iter(wide))
    with pytest.raises(HookPointError, match="pairs with one other input hook"):
        ActivationStream.from_corpus(tiny_gpt2, ["resid_pre.1", MLP_IN], docs, 16, target_hook=MLP_OUT)


def test_cache_stores_both_sides_and_sae_caches_keep_their_identity(tmp_path):
    save_tiny_model(tmp_path / "model", "gpt2", n_layers=2, d_model=32, max_positions=64)
    (tmp_path / "c.txt").write_text("\n\n".join(tiny_documents(60)))
    spec = DataSpec(model=str(tmp_path / "model"), hook=MLP_IN, target_hook=MLP_OUT, corpus=str(tmp_path / "c.txt"),
                    context_length=16, eval_tokens=100, device="cpu")
    train, held = prepare_caches(spec, tmp_path / "cache", progress=False)
    assert train.d_in == 64 and train.manifest["target_hook"] == MLP_OUT and "[input | target]" in train.manifest["normalisation"]
    assert ActivationCache(train.path).manifest["meta"]["target_hook"] == MLP_OUT
    x = next(held.iter_batches(8, shuffle=False))
    assert x.shape == (8, 64) and not torch.equal(x[:, :32], x[:, 32:])
    sae_spec = DataSpec(**{**spec.to_dict(), "target_hook": None})
    assert "target_hook" not in sae_spec.cache_identity("train", torch.float32)
    assert sae_spec.slug("train", "cpu") != spec.slug("train", "cpu")
