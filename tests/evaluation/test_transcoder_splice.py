"""Splicing a transcoder: the output computed from the input hook replaces the target hook's
activation in the same forward pass (tiny random GPT-2)."""

from __future__ import annotations

import math

import pytest
import torch

import probsae
from probsae.data.corpus import token_windows
from probsae.data.errors import HookPointError
from probsae.data.hooks import splice
from probsae.data.tiny import tiny_documents, tiny_model
from probsae.evaluation.downstream import downstream_metrics

MLP_IN, MLP_OUT = "mlp_in.1", "mlp_out.1"


@pytest.fixture(scope="module")
def handle():
    return tiny_model("gpt2", n_layers=2)


def _windows(h):
    return list(token_windows(tiny_documents(8), h.tokenizer, 16, batch_size=4))


def test_the_mlp_of_its_own_input_is_an_exact_splice(handle):
    """fn = the block's own MLP applied to the activation at the input hook reproduces the model:
    the splice reads MLP_IN and writes MLP_OUT of the same forward."""
    mlp = handle.model.get_submodule("transformer.h.1.mlp")

    def own_mlp(x):  # its layers (calling the hooked module itself would splice inside the splice)
        return mlp.c_proj(mlp.act(mlp.c_fc(x)))

    m = downstream_metrics(handle, MLP_OUT, own_mlp, _windows(handle), input_hook=MLP_IN)
    assert abs(m["kl"]) < 1e-6 and m["ce_sae"] == pytest.approx(m["ce_clean"], abs=1e-6)
    # the same function spliced without the input hook reads the MLP's output instead: not exact
    off = downstream_metrics(handle, MLP_OUT, own_mlp, _windows(handle))
    assert off["kl"] > 1e-6


def test_a_transcoder_splices_in_with_finite_ce_and_kl(handle):
    tc = probsae.build_sae("transcoder", d_in=32, d_sae=64, k=4, skip=True).eval()
    m = downstream_metrics(handle, MLP_OUT, lambda x: tc(x).recon, _windows(handle), input_hook=MLP_IN)
    assert all(math.isfinite(m[k]) for k in ("ce_sae", "kl", "ce_zero", "kl_zero")) and m["n_spliced"] > 0


def test_a_source_after_the_hook_is_an_error(handle):
    ids = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(HookPointError, match="was not reached before it"):
        with splice(handle, MLP_IN, lambda y, s: s, source=MLP_OUT):
            handle.model(input_ids=ids)
