"""The default CPU noise source: NumPy PCG64 streams seeded from the torch generator."""

import math

import pytest
import torch

from probsae.kernels import KernelPolicy
from probsae.kernels.noise import logistic_noise, uniform


def test_numpy_is_the_default_source():
    assert KernelPolicy().noise_source == "numpy"
    g = torch.Generator().manual_seed(3)
    assert torch.equal(uniform((300, 1000), torch.Generator().manual_seed(3)), uniform((300, 1000), g, source="numpy"))


def test_reproducible_from_the_torch_generator():
    a = uniform((300, 1000), torch.Generator().manual_seed(3))  # large: filled by two threads
    b = uniform((300, 1000), torch.Generator().manual_seed(3))
    c = uniform((300, 1000), torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(11)
    d = uniform((7, 9))
    torch.manual_seed(11)
    assert torch.equal(d, uniform((7, 9))), "without a generator it follows torch's global RNG state"


def test_threaded_and_sequential_fills_agree(monkeypatch):
    import probsae.kernels.noise as noise

    g = torch.Generator().manual_seed(5)
    threaded = uniform((600, 600), g)
    monkeypatch.setattr(noise, "_PARALLEL_MIN", 10**12)
    assert torch.equal(threaded, uniform((600, 600), torch.Generator().manual_seed(5)))


def test_distribution():
    u = uniform((1000, 1000), torch.Generator().manual_seed(0))
    assert u.dtype == torch.float32 and float(u.min()) >= 0 and float(u.max()) < 1
    assert float(u.mean()) == pytest.approx(0.5, abs=2e-3)
    hist = torch.histc(u, bins=10, min=0, max=1) / u.numel()
    assert torch.allclose(hist, torch.full((10,), 0.1), atol=2e-3)
    first, second = u.view(-1)[:500_000], u.view(-1)[500_000:]  # the two PCG64 streams
    assert abs(float(torch.corrcoef(torch.stack([first, second]))[0, 1])) < 0.01
    n = logistic_noise(torch.empty(1000, 1000), torch.Generator().manual_seed(1))
    assert float(n.var()) == pytest.approx(math.pi ** 2 / 3, rel=0.01)
