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


def _triton_interpreter_numpy_compat() -> None:
    """Triton 3.6's interpreter turns its 1-element scalar arrays into loop bounds with int(),
    which NumPy ≥ 2.4 rejects; convert through the element instead (tests only, interpreter only)."""
    import os

    if os.environ.get("TRITON_INTERPRET") != "1":
        return
    try:
        import triton.runtime.interpreter as interp
    except Exception:
        return
    original = getattr(interp, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_probsae_compat", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._probsae_compat = True
    interp._patch_lang_tensor = patched


_triton_interpreter_numpy_compat()
