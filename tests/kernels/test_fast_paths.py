"""Each fast path in probsae.kernels against its straightforward version: forward values and
gradients must agree (float tolerance); selections must be the same sets."""

from __future__ import annotations

import pytest
import torch

import probsae
from probsae.saes.options import ForwardOptions
from probsae.kernels import (concrete_gate_score, latent_bag_sum, logistic_noise,
                             logistic_noise_reference, sparse_decode, sparse_decode_reference,
                             sparse_encode, sparse_encode_reference)
from probsae.kernels import KernelPolicy
from probsae.kernels.topk import group_count, topk_groups

TORCH_NOISE = KernelPolicy(noise_source="torch")  # the policy of tests/kernels (see conftest.py)


def _sorted_pairs(values, indices):
    order = indices.argsort(dim=1)
    return values.gather(1, order), indices.gather(1, order)


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("score", ["pre", "abs"])
def test_sparse_encode_matches_reference_values_and_grads(chunk, score):
    g = torch.Generator().manual_seed(0)
    B, d, M, k = 33, 12, 80, 5
    x = torch.randn(B, d, generator=g, requires_grad=True)
    params = [torch.randn(d, M, generator=g), torch.randn(M, generator=g) * 0.1, torch.randn(d, generator=g) * 0.1]
    score_fn = torch.abs if score == "abs" else None
    upstream = torch.randn(B, k, generator=g)
    results = []
    for fn in ("fast", "ref"):
        leaves = [x.detach().clone().requires_grad_()] + [p.clone().requires_grad_() for p in params]
        if fn == "fast":
            v, i, s = sparse_encode(*leaves, k, score_fn=score_fn, chunk=chunk)
        else:
            v, i, s = sparse_encode_reference(*leaves, k, score_fn=score_fn)
        v, i = _sorted_pairs(v, i)
        (v * upstream).sum().backward()
        results.append((v.detach(), i, [t.grad for t in leaves]))
    (vf, i_f, gf), (vr, i_r, gr) = results
    assert torch.equal(i_f, i_r)
    torch.testing.assert_close(vf, vr, rtol=1e-5, atol=1e-5)
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert gf[1].abs().sum() > 0  # W_enc got gradient


def test_sparse_encode_grads_only_on_selected_latents():
    g = torch.Generator().manual_seed(1)
    x, W = torch.randn(4, 6, generator=g), torch.randn(6, 40, generator=g).requires_grad_()
    v, idx, _ = sparse_encode(x, W, None, None, 3)
    v.sum().backward()
    touched = torch.zeros(40, dtype=torch.bool)
    touched[idx.reshape(-1)] = True
    assert W.grad[:, ~touched].abs().max() == 0
    assert (W.grad[:, touched].abs().sum(0) > 0).all()


def test_latent_bag_sum_matches_index_add():
    g = torch.Generator().manual_seed(2)
    idx = torch.randint(0, 30, (20, 4), generator=g)
    rows, w = torch.randn(20, 5, generator=g), torch.randn(20, 4, generator=g)
    expect = torch.zeros(30, 5).index_add_(0, idx.reshape(-1), (w[:, :, None] * rows[:, None, :]).reshape(-1, 5))
    torch.testing.assert_close(latent_bag_sum(idx, rows, w, 30), expect, rtol=1e-5, atol=1e-6)


def test_sparse_decode_matches_dense_reference():
    g = torch.Generator().manual_seed(3)
    idx = torch.stack([torch.randperm(50, generator=g)[:6] for _ in range(9)])
    v0, W0 = torch.randn(9, 6, generator=g), torch.randn(50, 8, generator=g)
    up = torch.randn(9, 8, generator=g)
    out = []
    for fn in (sparse_decode, sparse_decode_reference):
        v, W = v0.clone().requires_grad_(), W0.clone().requires_grad_()
        y = fn(v, idx, W)
        (y * up).sum().backward()
        out.append((y.detach(), v.grad, W.grad))
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,k", [(4096, 8), (4096, 32), (6144, 32), (5000, 7)])
def test_topk_groups_is_exact(n, k):
    g = torch.Generator().manual_seed(n + k)
    x = torch.randn(6, n, generator=g)
    x[0, : 4 * k] += 10.0  # the whole top-k inside few groups' neighbourhoods
    x[1, ::97] += 10.0     # concentrated in a strided pattern
    v, i = topk_groups(x, k)
    rv, ri = x.topk(k, dim=1, sorted=False)
    assert torch.equal(v.sort(1).values, rv.sort(1).values)
    assert torch.equal(x.gather(1, i), v)
    assert torch.equal(i.sort(1).values, ri.sort(1).values)  # no ties in continuous data


def test_group_count_falls_back_for_narrow_rows():
    assert group_count(1024, 8) is None
    assert group_count(6144, 32) == 768


def test_logistic_noise_matches_reference_stream():
    a = logistic_noise(torch.empty(50, 40), torch.Generator().manual_seed(5), "torch")
    b = logistic_noise_reference(torch.empty(50, 40), torch.Generator().manual_seed(5), "torch")
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert a.abs().max() <= 13.9  # clamp to [1e-6, 1 − 1e-6]


@pytest.mark.parametrize("layernorm", [True, False])
def test_concrete_gate_score_matches_module_gate(layernorm):
    sae = probsae.build_sae("prob_topk", d_in=8, d_sae=40, k=4, layernorm=layernorm, lambda_mag=0.05, beta_start=0.8)
    a = torch.randn(10, 40, generator=torch.Generator().manual_seed(6))
    sae.noise_generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        expect = sae.gate(a, noisy=True, policy=TORCH_NOISE) + 0.05 * a.abs()
    got = concrete_gate_score(a, sae.beta, 0.05, getattr(sae, "ln_weight", None), getattr(sae, "ln_bias", None),
                              True, torch.Generator().manual_seed(7), layernorm=layernorm, noise_source="torch")
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-6)


SAE_CASES = [("topk", {}), ("abstopk", {}), ("prob_topk", {"beta_start": 0.7, "lambda_mag": 0.05}),
             ("prob_topk", {"layernorm": False, "lambda_mag": 0.0})]


@pytest.mark.parametrize("arch,kw", SAE_CASES)
def test_sae_fast_path_equals_plain_path(arch, kw, fast_equals_plain):
    """Whole SAE forward + backward with the fast path on (row chunks of 16) and off."""
    fast_equals_plain(arch, kw, fast_settings={"chunk": 16})


@pytest.mark.parametrize("arch", ["topk", "prob_topk"])
def test_encode_paths_agree(arch):
    sae = probsae.build_sae(arch, d_in=12, d_sae=72, k=5).eval()
    x = torch.randn(3, 7, 12, generator=torch.Generator().manual_seed(10))
    dense = sae.encode(x)
    plain = sae.encode(x, ForwardOptions(policy=TORCH_NOISE.replace(fast=False)))
    torch.testing.assert_close(dense, plain)
    values, indices = sae.encode_sparse(x)
    assert values.shape == indices.shape == (3, 7, 5)
    torch.testing.assert_close(torch.zeros_like(dense).scatter(-1, indices, values), dense)


def test_bf16_autocast_runs_encoder_matmul_in_bf16_and_stays_close():
    g = torch.Generator().manual_seed(11)
    x, W = torch.randn(16, 32, generator=g), torch.randn(32, 256, generator=g)
    v32, i32, _ = sparse_encode(x, W, None, None, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v16, i16, _ = sparse_encode(x, W.requires_grad_(), None, None, 8)
    assert v16.dtype == torch.float32
    v16.sum().backward()
    assert W.grad.dtype == torch.float32
    overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(i32, i16)) / i32.numel()
    assert overlap > 0.9
    assert not torch.equal(v16.sort(1).values, v32.sort(1).values)  # really computed in bf16


def test_train_config_precision_and_fused_adam():
    from probsae.errors import ConfigError
    from probsae.training.config import TrainConfig
    from probsae.training.member import Member
    with pytest.raises(ConfigError):
        TrainConfig(precision="fp16").validate()
    sae = probsae.build_sae("topk", d_in=8, d_sae=32, k=4)
    m = Member(sae, TrainConfig(precision="bf16", progress=False, device="cpu"), torch.device("cpu"), None, None)
    assert m.optimizer.defaults.get("fused") is True
    before = sae.W_enc.detach().clone()
    result = m.step(torch.randn(64, 8), 0, 10)
    assert torch.isfinite(result.out.loss) and not torch.equal(before, sae.W_enc)
