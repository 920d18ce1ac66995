"""The kernel policy is an immutable value passed explicitly: no process-global switch."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from probsae import kernels
from probsae.errors import ConfigError
from probsae.kernels import DEFAULT_POLICY, KernelPolicy, training_policy


def test_policy_is_frozen_and_validated():
    p = KernelPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.fast = False  # type: ignore[misc]
    assert p.replace(fast=False) == KernelPolicy(fast=False) and p.fast
    with pytest.raises(ConfigError, match="unknown kernel setting 'fastest'"):
        p.replace(fastest=True)
    for field, bad in (("backend", "cuda"), ("encoder_precision", "fp16"), ("scatter", "random"), ("noise_source", "os")):
        with pytest.raises(ConfigError, match=f"kernel setting {field} must be one of"):
            KernelPolicy(**{field: bad})


def test_training_policy_follows_precision():
    assert training_policy("fp32") == KernelPolicy(encoder_precision="fp32")
    assert training_policy("auto") is DEFAULT_POLICY and training_policy("bf16") is DEFAULT_POLICY
    base = KernelPolicy(scatter="sorted")
    assert training_policy("fp32", base) == KernelPolicy(scatter="sorted", encoder_precision="fp32")


def test_no_global_switch():
    assert not any(hasattr(kernels, name) for name in ("settings", "use", "use_fast", "Settings"))


def test_the_policy_picks_the_path():
    g = torch.Generator().manual_seed(0)
    x, W = torch.randn(6, 8, generator=g), torch.randn(8, 40, generator=g, requires_grad=True)
    fast = kernels.select_topk(x, W, None, None, 3, kernels.Selection("pre"))[0]
    plain = kernels.select_topk(x, W, None, None, 3, kernels.Selection("pre"), KernelPolicy(fast=False))[0]
    assert fast.grad_fn.name().startswith("SparseEncode") and not plain.grad_fn.name().startswith("SparseEncode")
    assert not kernels.use_triton(x, KernelPolicy(backend="torch"))
