"""Pay the one-time per-process imports (torch.optim's first optimizer imports torch._dynamo,
several seconds on a loaded 2-core machine) once per session, so each test's own duration
measures the test."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _warm_imports():
    p = torch.zeros(1, requires_grad=True)
    torch.optim.Adam([p])
    torch.testing.assert_close(torch.ones(1), torch.ones(1))


@pytest.fixture(autouse=True)
def torch_noise_stream(monkeypatch):
    """The path-equivalence tests here compare a chunked draw with one whole-batch draw, which
    are the same stream only for torch.rand; the NumPy source is tested in test_noise_source.py."""
    from probsae import kernels

    monkeypatch.setattr(kernels.settings, "noise_source", "torch")
