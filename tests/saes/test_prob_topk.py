"""Probabilistic TopK against a hand computation of eq. 6–8 on tiny tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

import probsae
from probsae.kernels.noise import logistic_noise
from probsae.schedules import exp_anneal


def tiny(**kw):
    sae = probsae.build_sae("prob_topk", d_in=3, d_sae=5, k=2, normalize="none", **kw)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0, 3.0], [0.5, 1.0, -1.0, 2.0, 0.0], [0.0, 0.3, 2.0, -1.5, 0.1]]))
        sae.W_dec.copy_(torch.arange(15, dtype=torch.float32).reshape(5, 3) / 10)
        sae.b_dec.copy_(torch.tensor([0.1, -0.2, 0.05]))
        if sae.cfg.layernorm:
            sae.ln_weight.copy_(torch.tensor([1.0, 0.5, 2.0, 1.0, 1.5]))
            sae.ln_bias.copy_(torch.tensor([0.0, 0.1, -0.1, 0.2, 0.0]))
    return sae


X = torch.tensor([[0.3, -0.7, 1.1], [1.0, 0.2, -0.4]])


def hand_forward(sae, x, noise=None):
    """Eq. 6–8 written out element by element."""
    a = (x - sae.b_dec) @ sae.W_enc
    out_codes, out_recon = [], []
    for b in range(x.shape[0]):
        row = a[b]
        if sae.cfg.layernorm:
            mu = row.mean()
            var = ((row - mu) ** 2).mean()
            ln = (row - mu) / math.sqrt(var + 1e-5) * sae.ln_weight + sae.ln_bias
        else:
            ln = row
        logits = ln + (noise[b] if noise is not None else 0.0)
        z = 1.0 / (1.0 + torch.exp(-logits / sae.beta))
        s = z + sae.cfg.lambda_mag * row.abs()
        order = sorted(range(5), key=lambda i: -float(s[i]))[: sae.cfg.k]
        codes = torch.zeros(5)
        for i in order:
            codes[i] = row[i]
        out_codes.append(codes)
        out_recon.append(codes @ sae.W_dec + sae.b_dec)
    return torch.stack(out_codes), torch.stack(out_recon)


@pytest.mark.parametrize("kw", [{}, {"lambda_mag": 0.3}, {"layernorm": False, "lambda_mag": 0.05}])
def test_inference_matches_hand_computation(kw):
    sae = tiny(**kw).eval()
    with torch.no_grad():
        codes_h, recon_h = hand_forward(sae, X)
        out = sae(X)
    torch.testing.assert_close(out.codes, codes_h)
    torch.testing.assert_close(out.recon, recon_h)
    torch.testing.assert_close(sae.encode(X), codes_h)
    assert torch.equal(sae.encode(X), sae.encode(X)), "inference must be deterministic"


def test_training_noise_matches_hand_computation():
    from probsae.kernels import KernelPolicy
    from probsae.saes.options import ForwardOptions

    torch_noise = ForwardOptions(policy=KernelPolicy(noise_source="torch"))  # so the test can redraw the stream
    sae = tiny(lambda_mag=0.01).train()
    sae.beta.fill_(0.7)
    sae.noise_generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        out = sae(X, options=torch_noise)
    u = torch.rand((2, 5), generator=torch.Generator().manual_seed(7)).clamp(1e-6, 1 - 1e-6)
    noise = torch.log(u) - torch.log1p(-u)
    with torch.no_grad():
        codes_h, recon_h = hand_forward(sae, X, noise)
    torch.testing.assert_close(out.codes, codes_h)
    torch.testing.assert_close(out.recon, recon_h)


def test_noise_changes_selection_in_training_only():
    sae = probsae.build_sae("prob_topk", d_in=16, d_sae=64, k=4, beta_start=5.0)
    x = torch.randn(256, 16)
    sae.train()
    a, b = sae(x).codes, sae(x).codes
    assert not torch.equal(a != 0, b != 0), "Binary Concrete noise should change some selections at β=5"
    sae.eval()
    assert torch.equal(sae(x).codes, sae(x).codes)


def test_sigmoid_gate_has_no_noise_in_training():
    sae = probsae.build_sae("prob_topk", d_in=16, d_sae=64, k=4, gate="sigmoid").train()
    x = torch.randn(64, 16)
    assert torch.equal(sae(x).codes, sae(x).codes)


def test_temperature_schedule():
    assert exp_anneal(0, 101, 10, 5.0, 1e-4) == 5.0
    assert exp_anneal(9, 101, 10, 5.0, 1e-4) == 5.0  # held during warm-up
    assert exp_anneal(10, 101, 10, 5.0, 1e-4) == pytest.approx(5.0)
    assert exp_anneal(100, 101, 10, 5.0, 1e-4) == pytest.approx(1e-4)
    mid = exp_anneal(55, 101, 10, 5.0, 1e-4)  # halfway through the decay: geometric mean
    assert mid == pytest.approx(math.sqrt(5.0 * 1e-4))
    sae = probsae.build_sae("prob_topk", d_in=4, d_sae=8, k=2)
    assert sae.on_train_step(100, 101, 10)["beta"] == pytest.approx(1e-4)
    assert float(sae.beta) == pytest.approx(1e-4)
    fixed = probsae.build_sae("prob_topk", d_in=4, d_sae=8, k=2, beta_start=0.5, anneal=False)
    fixed.on_train_step(100, 101, 10)
    assert float(fixed.beta) == 0.5


def test_gradient_paths():
    x = torch.randn(32, 8)
    literal = probsae.build_sae("prob_topk", d_in=8, d_sae=32, k=4)
    literal(x).loss.backward()
    assert literal.W_enc.grad is not None and literal.W_enc.grad.abs().sum() > 0
    assert literal.W_dec.grad.abs().sum() > 0
    assert literal.ln_weight.grad is None, "with a hard TopK mask no gradient reaches the gate (paper)"
    st = probsae.build_sae("prob_topk", d_in=8, d_sae=32, k=4, straight_through=True)
    st(x).loss.backward()
    assert st.ln_weight.grad is not None and st.ln_weight.grad.abs().sum() > 0


def test_gate_probs_are_deterministic_sigmoid_of_layernorm():
    sae = tiny().eval()
    sae.beta.fill_(2.0)
    a = (X - sae.b_dec) @ sae.W_enc
    expected = torch.sigmoid(F.layer_norm(a, (5,), sae.ln_weight, sae.ln_bias) / 2.0)
    torch.testing.assert_close(sae.gate_probs(X), expected)
    assert sae.gate_probs(X).shape == (2, 5)


def test_logistic_noise_distribution():
    n = logistic_noise(torch.empty(200_000), torch.Generator().manual_seed(0))
    assert abs(float(n.mean())) < 0.02
    assert float(n.var()) == pytest.approx(math.pi**2 / 3, rel=0.03)  # Var of Logistic(0,1)
    assert torch.isfinite(n).all()
