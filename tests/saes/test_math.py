"""Each baseline architecture's forward and loss against a hand computation on tiny tensors."""

import math

import pytest
import torch

import probsae

X = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7]])
W_ENC = torch.tensor([[1.0, -0.5, 0.2, 0.0], [0.3, 0.8, -1.0, 0.5], [-0.2, 0.1, 0.4, 1.0]])  # (d_in=3, d_sae=4)
W_DEC = torch.tensor([[0.6, 0.0, 0.8], [0.0, 1.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.6, 0.8]])
B_DEC = torch.tensor([0.1, 0.0, -0.1])
B_ENC = torch.tensor([0.05, -0.1, 0.0, 0.2])


def setup(arch, **kw):
    sae = probsae.build_sae(arch, d_in=3, d_sae=4, normalize="none", **kw)
    with torch.no_grad():
        sae.W_enc.copy_(W_ENC)
        sae.W_dec.copy_(W_DEC)
        sae.b_dec.copy_(B_DEC)
        if hasattr(sae, "b_enc"):
            sae.b_enc.copy_(B_ENC)
    return sae


def pre(bias=True):
    """Pre-activations written element by element."""
    out = torch.zeros(2, 4)
    for b in range(2):
        for i in range(4):
            out[b, i] = sum((X[b, j] - B_DEC[j]) * W_ENC[j, i] for j in range(3)) + (B_ENC[i] if bias else 0.0)
    return out


def decode(codes):
    return codes @ W_DEC + B_DEC


def mse(recon):
    return float(((X - recon) ** 2).sum(1).mean())


def keep(values, idx_lists):
    out = torch.zeros_like(values)
    for b, idx in enumerate(idx_lists):
        for i in idx:
            out[b, i] = values[b, i]
    return out


def top_indices(scores, k):
    return [sorted(range(4), key=lambda i: -float(scores[b, i]))[:k] for b in range(2)]


def test_topk_keeps_the_k_largest_with_relu():
    sae = setup("topk", k=2).eval()
    p = pre()
    expected = keep(p, top_indices(p, 2)).clamp_min(0)
    out = sae(X)
    torch.testing.assert_close(out.codes, expected)
    torch.testing.assert_close(out.recon, decode(expected))
    assert out.loss.item() == pytest.approx(mse(decode(expected)), rel=1e-5)


def test_abstopk_keeps_the_largest_magnitudes_with_sign():
    sae = setup("abstopk", k=2).eval()
    p = pre()
    expected = keep(p, top_indices(p.abs(), 2))
    assert (expected < 0).any(), "the example must exercise a negative code"
    torch.testing.assert_close(sae(X).codes, expected)


def test_relu_l1_is_weighted_by_decoder_norms():
    sae = setup("relu", l1_coeff=0.3)
    f = pre().clamp_min(0)
    out = sae(X)
    torch.testing.assert_close(out.codes, f)
    norms = W_DEC.norm(dim=1)
    l1 = float((f * norms).sum(1).mean())
    assert out.losses["l1"].item() == pytest.approx(0.3 * l1, rel=1e-5)
    assert out.losses["mse"].item() == pytest.approx(mse(decode(f)), rel=1e-5)


def test_gated_forward_and_three_losses():
    sae = setup("gated", l1_coeff=0.2)  # gated renormalises W_dec rows: ours are unit norm already
    with torch.no_grad():
        sae.W_dec.copy_(W_DEC)
        sae.b_gate.copy_(torch.tensor([0.0, 0.1, -0.2, 0.0]))
        sae.b_mag.copy_(torch.tensor([0.1, 0.0, 0.0, -0.1]))
        sae.r_mag.copy_(torch.tensor([0.0, math.log(2.0), 0.0, math.log(0.5)]))
    x_c = X - B_DEC
    pi_gate = x_c @ W_ENC + sae.b_gate.detach()
    pi_mag = x_c @ (W_ENC * torch.tensor([1.0, 2.0, 1.0, 0.5])) + sae.b_mag.detach()
    f = (pi_gate > 0).float() * pi_mag.clamp_min(0)
    out = sae(X)
    torch.testing.assert_close(out.codes, f)
    assert out.losses["mse"].item() == pytest.approx(mse(decode(f)), rel=1e-5)
    assert out.losses["l1"].item() == pytest.approx(0.2 * float(pi_gate.clamp_min(0).sum(1).mean()), rel=1e-5)
    aux = ((X - (pi_gate.clamp_min(0) @ W_DEC + B_DEC)) ** 2).sum(1).mean()
    assert out.losses["aux"].item() == pytest.approx(float(aux), rel=1e-5)
    out.losses["aux"].backward()
    assert sae.W_dec.grad is None or sae.W_dec.grad.abs().sum() == 0, "aux term must not train the decoder"
    assert sae.W_enc.grad.abs().sum() > 0


def test_gated_keeps_unit_norm_decoder_rows_after_a_step(device):
    sae = probsae.build_sae("gated", d_in=8, d_sae=16)
    probsae.train(sae, torch.randn(256, 8), probsae.TrainConfig(steps=3, batch_size=64, lr=0.1, progress=False,
                                                                 device=str(device)))
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(16, device=device))


def test_jumprelu_forward_and_straight_through_threshold_gradient():
    sae = setup("jumprelu", l0_coeff=0.1, threshold_init=1.7, bandwidth=0.5)
    p = pre()
    theta = 1.7
    f = p * (p > theta)
    out = sae(X)
    torch.testing.assert_close(out.codes, f)
    l0 = float((p > theta).float().sum(1).mean())
    assert out.losses["l0"].item() == pytest.approx(0.1 * l0, rel=1e-5)
    # d(l0 term)/d(log θ) = θ · Σ_b −(1/ε) K((π−θ)/ε) / B · λ  with K the rectangle kernel
    sae.zero_grad()
    out.losses["l0"].backward(retain_graph=True)
    k = ((p - theta).abs() < 0.25).float()  # |u| < 1/2 with u = (π−θ)/ε, ε = 0.5
    assert k.sum() >= 2, "the example must put pre-activations inside the kernel's window"
    expected = theta * (-(1 / 0.5) * k).sum(0) / 2 * 0.1
    torch.testing.assert_close(sae.log_threshold.grad, expected)


def test_batchtopk_selects_across_the_batch_and_learns_a_threshold():
    sae = setup("batchtopk", k=2).train()
    p = pre().clamp_min(0)
    flat = sorted(((float(p[b, i]), b, i) for b in range(2) for i in range(4)), reverse=True)[:4]
    expected = torch.zeros(2, 4)
    for v, b, i in flat:
        expected[b, i] = v
    out = sae(X)
    torch.testing.assert_close(out.codes, expected)
    sae.after_optimizer_step()
    smallest_kept = min(v for v, _, _ in flat if v > 0)
    assert float(sae.threshold) == pytest.approx(smallest_kept)
    sae.eval()
    torch.testing.assert_close(sae(X).codes, p * (p > smallest_kept))


def test_vsae_kl_and_deterministic_inference():
    sae = setup("vsae_topk", k=2, kl_coeff=0.5, learn_var=False, init_std=0.1)
    mu = pre().clamp_min(0)
    log_var = 2 * math.log(0.1)
    kl = 0.5 * (mu ** 2 + math.exp(log_var) - 1 - log_var).sum(1).mean()
    out = sae.train()(X)
    assert out.losses["kl"].item() == pytest.approx(0.5 * float(kl), rel=1e-5)
    sae.eval()
    expected = keep(mu, top_indices(mu, 2))
    torch.testing.assert_close(sae(X).codes, expected)
    torch.testing.assert_close(sae(X).codes, sae(X).codes)
