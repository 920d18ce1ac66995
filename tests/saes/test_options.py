"""``ForwardOptions``: how one call of an SAE runs, passed per call (never set on the SAE), and the
declarations the trainer and interpretation read instead of probing the SAE."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import probsae
from probsae.errors import ConfigError, InputError
from probsae.kernels import KernelPolicy
from probsae.saes.options import DEFAULT_OPTIONS, ForwardOptions


def test_options_are_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_OPTIONS.noise_row0 = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="finite_check"):
        ForwardOptions(finite_check="sometimes")
    assert DEFAULT_OPTIONS.policy == KernelPolicy() and DEFAULT_OPTIONS.noise_row0 == 0


def test_options_reach_the_forward_and_encode():
    sae = probsae.build_sae("topk", d_in=8, d_sae=32, k=4)
    x = torch.randn(5, 8)
    x[0, 0] = float("inf")
    with pytest.raises(InputError, match="NaN/inf"):
        sae.encode(x)
    sae.encode(x, ForwardOptions(finite_check="never"))
    x[0, 0] = 0.0
    plain = ForwardOptions(policy=KernelPolicy(fast=False))
    torch.testing.assert_close(sae.encode(x, plain), sae.encode(x))
    assert not sae(x, options=plain).top_values.grad_fn.name().startswith("SparseEncode")


def test_noise_row_offset_is_an_argument():
    """The row offset keys the Triton path's Philox noise; the CPU path's stream ignores it."""
    sae = probsae.build_sae("prob_topk", d_in=8, d_sae=32, k=4).train()
    rule = sae.selection(noisy=True, row0=12)
    assert rule.noise.row0 == 12 and "noise_row0" not in vars(sae)


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_trainer_declarations_have_defaults(arch):
    sae = probsae.build_sae(arch, d_in=8, d_sae=32, **probsae.saes.get_class(arch).toy_hparams)
    assert isinstance(type(sae).graphable, bool) and isinstance(sae.uses_dead_mask, bool)
    assert (sae.gate_temperature is None) == ("gate_logits" not in type(sae).extra_outputs)


def test_declarations_where_they_differ():
    topk = probsae.build_sae("topk", d_in=8, d_sae=32, k=4)
    assert topk.graphable and not topk.uses_dead_mask
    assert probsae.build_sae("topk", d_in=8, d_sae=32, k=4, aux_k=4).uses_dead_mask
    assert not probsae.build_sae("transcoder", d_in=8, d_sae=32, k=4).graphable
    assert not probsae.build_sae("relu", d_in=8, d_sae=32).graphable
    gated = probsae.build_sae("prob_topk", d_in=8, d_sae=32, k=4, beta_start=2.5)
    assert gated.graphable and gated.gate_temperature == 2.5


def test_training_sets_no_attribute_on_the_sae():
    from probsae.training.config import TrainConfig
    from probsae.training.member import Member

    sae = probsae.build_sae("prob_topk", d_in=8, d_sae=32, k=4)
    before = set(vars(sae))
    m = Member(sae, TrainConfig(check_finite="never", precision="fp32", progress=False, device="cpu"),
               torch.device("cpu"), None, None)
    m.step(torch.randn(16, 8), 0, 10)
    assert set(vars(sae)) == before
    assert m.options == ForwardOptions(policy=KernelPolicy(encoder_precision="fp32"), finite_check="never")
