"""Pay the one-time per-process imports (torch.optim's first optimizer imports torch._dynamo,
several seconds on a loaded 2-core machine) once per session, so each test's own duration
measures the test."""

from __future__ import annotations

import pytest
import torch

import probsae
from probsae.kernels import KernelPolicy
from probsae.saes.options import ForwardOptions


@pytest.fixture(scope="session", autouse=True)
def _warm_imports():
    p = torch.zeros(1, requires_grad=True)
    torch.optim.Adam([p])
    torch.testing.assert_close(torch.ones(1), torch.ones(1))


TORCH_NOISE = KernelPolicy(noise_source="torch")
"""The policy the path-equivalence tests here run under: they compare a chunked draw with one
whole-batch draw, which are the same stream only for torch.rand; the NumPy source is tested in
test_noise_source.py."""


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


def check_fast_equals_plain(arch: str, kw: dict, device: str = "cpu", fast_settings: dict | None = None,
                            base: KernelPolicy = TORCH_NOISE) -> None:
    """Whole SAE forward + backward with ``base``'s policy, fast on (``fast_settings``) and off,
    the same noise (generator stream on CPU, Philox at the same step on the Triton path):
    loss, codes, every gradient and prob_topk's selected gate values must agree."""
    from probsae.saes.output import densify

    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(8)).to(device)
    res = {}
    for fast in (True, False):
        sae = probsae.build_sae(arch, d_in=12, d_sae=72, k=5, **kw).to(device).train()
        with torch.no_grad():
            sae.b_dec.copy_(torch.linspace(-0.2, 0.2, 12))
            if hasattr(sae, "b_enc"):
                sae.b_enc.copy_(torch.linspace(-0.1, 0.1, 72))
        sae.noise_generator = torch.Generator().manual_seed(9)
        sae.on_train_step(4, 10, 0)
        policy = base.replace(fast=fast, **(fast_settings or {}) if fast else {})
        out = sae(x, options=ForwardOptions(policy=policy))
        out.loss.backward()
        gate = out.aux.get("gate_selected")  # prob_topk: in selection order, which may differ by path
        res[fast] = (out.loss.detach(), out.codes.detach(),
                     {n: p.grad for n, p in sae.named_parameters() if p.grad is not None},
                     None if gate is None else densify(gate, out.top_indices, sae.d_sae))
    (lf, cf, gf, zf), (lp, cp, gp, zp) = res[True], res[False]
    torch.testing.assert_close(lf, lp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cf, cp, rtol=1e-5, atol=1e-6)
    if zp is not None:  # prob_topk: the gate value σ(t/β) recovered from each path's selected score
        torch.testing.assert_close(zf, zp, rtol=1e-5, atol=1e-5)
    assert gf.keys() == gp.keys() and {"W_enc", "W_dec", "b_dec"} <= gf.keys()
    for n in gp:
        torch.testing.assert_close(gf[n], gp[n], rtol=1e-4, atol=1e-5, msg=n)


@pytest.fixture
def fast_equals_plain():
    return check_fast_equals_plain
