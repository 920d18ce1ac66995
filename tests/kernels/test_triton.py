"""Every Triton kernel against the plain path, values and gradients: on CUDA when present, else on
CPU under Triton's interpreter (TRITON_INTERPRET=1, set in tests/conftest.py), tiny shapes.

Tolerances: the exact-fp32 Triton path must select the same latents as the plain path and agree
on values and gradients to float rounding (different summation order: rtol 1e-5 / 1e-4). The
bf16 encoder may choose differently only at near-ties, so its exact-selection test uses inputs
whose pre-activation gaps exceed bf16 rounding; its values must be exact fp32 dot products."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

import probsae
from probsae import kernels
from probsae.saes.options import ForwardOptions

triton = pytest.importorskip("triton")
from probsae.kernels import _triton  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


TRITON = kernels.KernelPolicy(backend="triton", chunk="auto", noise_source="torch")
"""The policy of every test here: the Triton kernels (the torch noise source of tests/kernels)."""


def gen(seed):
    return torch.Generator().manual_seed(seed)


def rand(*shape, g, scale=1.0):
    return (torch.randn(*shape, generator=g) * scale).to(DEVICE)


def distinct_indices(B, M, K, g):
    return torch.stack([torch.randperm(M, generator=g)[:K] for _ in range(B)]).to(DEVICE)


def sorted_pairs(values, indices):
    order = indices.argsort(dim=1)
    return values.gather(1, order), indices.gather(1, order)


# ---- sparse primitives --------------------------------------------------------------------------
def test_gather_sum_and_gather_dot_match_dense():
    g = gen(0)
    B, M, K, D = 12, 96, 5, 40
    idx = torch.randint(0, M, (B, K), generator=g).to(DEVICE)  # repeats within a row allowed
    w, table, rows, bias = rand(B, K, g=g), rand(M, D, g=g), rand(B, D, g=g), rand(M, g=g)
    expect_sum = (table[idx] * w[:, :, None]).sum(1)
    torch.testing.assert_close(_triton.gather_sum(w, idx, table), expect_sum, rtol=1e-5, atol=1e-5)
    expect_dot = (table[idx] * rows[:, None, :]).sum(-1)
    torch.testing.assert_close(_triton.gather_dot(rows, table, idx), expect_dot, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_triton.gather_dot(rows, table, idx, bias), expect_dot + bias[idx], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("transposed", [False, True])
def test_scatter_outer_matches_index_add(deterministic, transposed):
    g = gen(1)
    B, M, K, D = 20, 70, 4, 24
    idx = torch.randint(0, 30, (B, K), generator=g).to(DEVICE)  # latents 30..69 never selected: zeros
    w, rows = rand(B, K, g=g), rand(B, D, g=g)
    expect = torch.zeros(M, D, device=DEVICE).index_add_(0, idx.reshape(-1), (w[:, :, None] * rows[:, None, :]).reshape(-1, D))
    out, wsum = _triton.scatter_outer(w, idx, rows, M, deterministic=deterministic, transposed=transposed, want_wsum=True)
    torch.testing.assert_close(out, expect.t() if transposed else expect, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(wsum, torch.zeros(M, device=DEVICE).index_add_(0, idx.reshape(-1), w.reshape(-1)),
                               rtol=1e-5, atol=1e-5)
    assert out.shape == ((D, M) if transposed else (M, D))


def test_sorted_scatter_is_bitwise_reproducible():
    g = gen(2)
    idx = torch.randint(0, 8, (64, 6), generator=g).to(DEVICE)  # many collisions per latent
    w, rows = rand(64, 6, g=g), rand(64, 33, g=g)
    a, _ = _triton.scatter_outer(w, idx, rows, 8, deterministic=True)
    b, _ = _triton.scatter_outer(w, idx, rows, 8, deterministic=True)
    assert torch.equal(a, b)


@pytest.mark.parametrize("scatter", ["sorted", "atomic"])
def test_sparse_decode_matches_dense_reference(scatter):
    g = gen(3)
    B, M, K, D = 16, 64, 6, 20
    idx = distinct_indices(B, M, K, g)
    v0, W0, up = rand(B, K, g=g), rand(M, D, g=g), rand(B, D, g=g)
    out = []
    for fn in (kernels.sparse_decode, kernels.sparse_decode_reference):
        v, W = v0.clone().requires_grad_(), W0.clone().requires_grad_()
        y = fn(v, idx, W, TRITON.replace(scatter=scatter)) if fn is kernels.sparse_decode else fn(v, idx, W)
        (y * up).sum().backward()
        out.append((y.detach(), v.grad, W.grad))
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_deterministic_mode_picks_the_sorted_scatter():
    from probsae.kernels.select import scatter_deterministic

    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        assert scatter_deterministic()
        torch.use_deterministic_algorithms(False)
        assert not scatter_deterministic()
        assert scatter_deterministic(TRITON.replace(scatter="sorted").scatter)
    finally:
        torch.use_deterministic_algorithms(before)


# ---- selection ----------------------------------------------------------------------------------
def gate_rule(M, g, noisy=True, layernorm=True, lam=0.05, beta=0.7, step=3, seed=11, gate_score="paper",
              noise_scale=None):
    noise = kernels.GateNoise(None, seed, torch.tensor(step, device=DEVICE)) if noisy else None
    return kernels.Selection("gate", beta=torch.tensor(beta, device=DEVICE), lambda_mag=lam,
                             ln_weight=(1 + 0.2 * rand(M, g=g)) if layernorm else None,
                             ln_bias=(0.1 * rand(M, g=g)) if layernorm else None, noise=noise,
                             gate_score=gate_score, noise_scale=noise_scale)


#: Gate rules of the score test: every ``gate_score`` mode, the noise scale as a device scalar (what
#: prob_topk passes: β/β₀) and as a float; 'stable' also at a β where the paper's σ saturates.
GATE_CASES = {
    "gate": {}, "gate_plain": {"layernorm": False, "lam": 0.0},
    "gate_stable": {"gate_score": "stable"},
    "gate_stable_saturated": {"gate_score": "stable", "lam": 0.0, "beta": 0.15},
    "gate_logit": {"gate_score": "logit", "noise_scale": torch.tensor(0.3, device=DEVICE)},
    "gate_logit_float": {"gate_score": "logit", "noise_scale": 0.3, "lam": 0.0},
}


@pytest.mark.parametrize("score", ["pre", "abs", *GATE_CASES])
@pytest.mark.parametrize("members", [1, 4])
def test_score_select_matches_dense_scores(score, members):
    g = gen(4)
    B, M, k = 10, 256, 7
    pre, bias = rand(B, M, g=g), rand(M, g=g, scale=0.1)
    if score.startswith("gate"):
        rule = gate_rule(M, g, **GATE_CASES[score])
        bias = None  # the gate has no encoder bias
    else:
        rule = kernels.Selection(score)
    full = rule.dense_scores(pre + bias if bias is not None else pre, TRITON)
    expect_top, expect_idx = full.topk(k, dim=1, sorted=False)
    top, idx = _triton.score_select(pre, bias, k, rule, 0, members)
    top, idx = sorted_pairs(top, idx)
    expect_top, expect_idx = sorted_pairs(expect_top, expect_idx)
    assert torch.equal(idx, expect_idx)
    torch.testing.assert_close(top, expect_top, rtol=1e-5, atol=1e-6)


def test_stable_score_keeps_the_order_the_saturated_paper_score_loses():
    """The case 'stable' exists for: at small β many gates are σ = 1.0 in float32 (ties); the
    kernel's −σ(−t/β) keeps them apart, as the plain path's does."""
    g = gen(4)
    M = 256
    pre = rand(10, M, g=g)
    stable = gate_rule(M, g, lam=0.0, beta=0.15, gate_score="stable")
    top = replace(stable, gate_score="paper").dense_scores(pre, TRITON).topk(8, dim=1).values
    assert (top == 1.0).all()  # the paper's top 8 are all tied
    s, _ = _triton.score_select(pre, None, 8, stable, 0, 1)
    assert (s.sort(dim=1).values.diff(dim=1) > 0).all()  # distinct scores: the order is the gate's


def test_logit_noise_scale_is_read_from_the_device():
    """prob_topk's 'logit' noise scale β/β₀ changes every step: the kernels read it from its device
    tensor (as they read β), so a captured CUDA graph replays with the current value."""
    g = gen(4)
    M, k = 256, 7
    pre = rand(10, M, g=g)
    c = torch.tensor(1.0, device=DEVICE)
    rule = gate_rule(M, g, gate_score="logit", noise_scale=c)
    noisy = _triton.score_select(pre, None, k, rule, 0, 4)[1]
    c.fill_(0.0)  # the same rule object, the scale changed in place: now no noise at all
    clean = _triton.score_select(pre, None, k, rule, 0, 4)[1]
    rule.noise = None
    expect = rule.dense_scores(pre, TRITON).topk(k, dim=1).indices
    assert torch.equal(clean.sort(1).values, expect.sort(1).values)
    assert not torch.equal(noisy.sort(1).values, clean.sort(1).values)


def encode_both(x, params, k, rule_fn, **settings):
    """select_topk on the Triton path (``TRITON`` with ``settings``) and the plain path: values, indices, grads."""
    upstream = torch.randn(x.shape[0], k, generator=gen(99)).to(DEVICE)
    res = []
    for fast in (True, False):
        leaves = [x.clone().requires_grad_()] + [None if p is None else p.clone().requires_grad_() for p in params]
        v, i, s = kernels.select_topk(*leaves, k, rule_fn(), TRITON.replace(fast=fast, **settings))
        order = i.argsort(dim=1)
        v, i, s = v.gather(1, order), i.gather(1, order), s.gather(1, order)
        (v * upstream).sum().backward()
        res.append((v.detach(), i, s, [None if t is None else t.grad for t in leaves]))
    return res


@pytest.mark.parametrize("score", ["pre", "abs", "gate"])
def test_select_topk_exact_fp32_equals_plain_path(score):
    g = gen(5)
    B, d, M, k = 24, 16, 320, 6
    x = rand(B, d, g=g)
    W, b_enc, b_dec = rand(d, M, g=g), rand(M, g=g, scale=0.1), rand(d, g=g, scale=0.1)
    if score == "gate":
        b_enc = None
        rule = gate_rule(M, g)
        rule_fn = lambda: rule  # noqa: E731
    else:
        rule_fn = lambda: kernels.Selection(score)  # noqa: E731
    (vf, i_f, sf, gf), (vp, ip, sp, gp) = encode_both(x, [W, b_enc, b_dec], k, rule_fn, encoder_precision="fp32")
    assert torch.equal(i_f, ip)
    torch.testing.assert_close(vf, vp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sf, sp, rtol=1e-5, atol=1e-5)
    for a, b in zip(gf, gp):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert gf[1].abs().sum() > 0


def test_select_topk_wide_rows_use_groups_and_stay_exact():
    g = gen(6)
    B, d, M, k = 8, 16, 4096, 8  # wide enough for group_count (8-member strided groups)
    assert kernels.topk.group_count(M, k) is not None
    x, W = rand(B, d, g=g), rand(d, M, g=g)
    rule = gate_rule(M, g)
    (vf, i_f, _, gf), (vp, ip, _, gp) = encode_both(x, [W, None, None], k, lambda: rule, encoder_precision="fp32")
    assert torch.equal(i_f, ip)
    torch.testing.assert_close(vf, vp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gf[1], gp[1], rtol=1e-4, atol=1e-5)


def test_bf16_encoder_selects_the_same_latents_when_gaps_exceed_bf16_rounding():
    B, d, M, k = 32, 16, 128, 8
    g = gen(7)
    # pre[b, m] = W[b mod d, m]: each row of W a permutation of an evenly spaced grid (gap 1/16,
    # |values| ≤ 4, so bf16's relative rounding 2⁻⁸ moves a value by ≤ 1/64 < gap / 2).
    grid = torch.linspace(-4, 4, M)
    W = torch.stack([grid[torch.randperm(M, generator=g)] for _ in range(d)]).to(DEVICE)
    x = torch.eye(d).repeat(B // d, 1).to(DEVICE)
    for precision in ("bf16", "fp32"):
        v, i, _ = kernels.select_topk(x, W, None, None, k, kernels.Selection("pre"),
                                      TRITON.replace(encoder_precision=precision))
        v, i = sorted_pairs(v, i)
        if precision == "bf16":
            v16, i16 = v, i
    assert torch.equal(i16, i)
    assert torch.equal(v16, v)  # the selected values are exact fp32, not bf16-rounded


def test_bf16_encoder_values_are_exact_fp32_dot_products():
    g = gen(8)
    B, d, M, k = 16, 32, 256, 8
    x, W, b_enc = rand(B, d, g=g), rand(d, M, g=g), rand(M, g=g, scale=0.1)
    v, i, _ = kernels.select_topk(x, W, b_enc, None, k, kernels.Selection("pre"), TRITON.replace(encoder_precision="bf16"))
    exact = (x @ W + b_enc).gather(1, i)
    torch.testing.assert_close(v, exact, rtol=1e-5, atol=1e-5)
    _, i32, _ = kernels.select_topk(x, W, b_enc, None, k, kernels.Selection("pre"),
                                    TRITON.replace(encoder_precision="fp32"))
    overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(i.cpu(), i32.cpu())) / i.numel()
    assert overlap > 0.9


# ---- Philox gate noise --------------------------------------------------------------------------
def noise(rows, cols, seed=3, step=5, row0=0):
    key = kernels.GateNoise(None, seed, torch.tensor(step, device=DEVICE))
    return _triton.logistic_noise(rows, cols, key, row0, DEVICE)


def test_philox_noise_is_logistic():
    n = noise(128, 512).cpu().double()
    assert abs(float(n.mean())) < 0.03
    assert float(n.var()) == pytest.approx(math.pi**2 / 3, rel=0.03)
    # The logistic CDF at a few quantiles: P(L ≤ q) = 1 / (1 + e^{-q}).
    for q in (-2.0, -0.5, 0.0, 1.0, 3.0):
        assert float((n <= q).double().mean()) == pytest.approx(1 / (1 + math.exp(-q)), abs=0.01)
    assert float(n.abs().max()) <= 13.82  # u clamped to [1e-6, 1 − 1e-6]


def test_philox_noise_is_determined_by_seed_step_and_offset():
    a = noise(16, 64)
    assert torch.equal(a, noise(16, 64))
    assert not torch.equal(a, noise(16, 64, step=6))
    assert not torch.equal(a, noise(16, 64, seed=4))
    # Independent of how the batch is split: rows 8..15 drawn on their own, at their offset.
    assert torch.equal(a[8:], noise(8, 64, row0=8))
    # Neighbouring steps and rows are uncorrelated.
    b = noise(16, 64, step=6)
    assert abs(float(torch.corrcoef(torch.stack([a.reshape(-1), b.reshape(-1)]))[0, 1])) < 0.1


def test_fused_gate_selection_is_independent_of_chunking():
    g = gen(9)
    B, d, M, k = 24, 16, 256, 5
    x, W = rand(B, d, g=g), rand(d, M, g=g)
    rule = gate_rule(M, g, beta=2.0)
    out = []
    for chunk in ("auto", 8):
        v, i, _ = kernels.select_topk(x, W, None, None, k, rule, TRITON.replace(chunk=chunk, encoder_precision="fp32"))
        out.append(sorted_pairs(v, i))
    assert torch.equal(out[0][1], out[1][1])
    # ... and a batch split in two (second half at its global row offset) selects the same.
    rule.noise.row0 = 12
    v2, i2, _ = kernels.select_topk(x[12:], W, None, None, k, rule, TRITON.replace(encoder_precision="fp32"))
    assert torch.equal(sorted_pairs(v2, i2)[1], out[0][1][12:])


# ---- whole SAEs ---------------------------------------------------------------------------------
# Without the magnitude term a saturated gate (σ = 1 in float32 at small β) ties many latents,
# and which of the tied ones top-k keeps is implementation-defined: the case without LayerNorm
# and magnitude is compared at a fixed β where the gate does not saturate.
SAE_CASES = [("topk", {}), ("abstopk", {}), ("prob_topk", {"beta_start": 0.7, "lambda_mag": 0.05}),
             ("prob_topk", {"layernorm": False, "lambda_mag": 0.0, "beta_start": 2.0, "anneal": False}),
             ("prob_topk", {"beta_start": 0.7, "lambda_mag": 0.05, "score": "stable"}),
             ("prob_topk", {"beta_start": 0.7, "lambda_mag": 0.05, "score": "logit"})]


@pytest.mark.parametrize("arch,kw", SAE_CASES)
def test_sae_triton_path_equals_plain_path(arch, kw, fast_equals_plain):
    fast_equals_plain(arch, kw, device=DEVICE, fast_settings={"encoder_precision": "fp32"}, base=TRITON)


def test_prob_topk_noise_follows_the_training_step():
    sae = probsae.build_sae("prob_topk", d_in=8, d_sae=64, k=4, beta_start=5.0).to(DEVICE).train()
    x = torch.randn(32, 8, generator=gen(11)).to(DEVICE)
    triton_path = ForwardOptions(policy=TRITON)
    sae.on_train_step(7, 10, 0)
    a = sae(x, options=triton_path).codes
    sae.on_train_step(7, 10, 0)  # same step again (e.g. after a resume): same noise
    assert torch.equal(sae(x, options=triton_path).codes, a)
    b = sae(x, options=triton_path).codes  # a forward outside the trainer advances the step: fresh noise
    assert not torch.equal(b != 0, a != 0)


def test_member_step_on_the_triton_path():
    from probsae.training.config import TrainConfig
    from probsae.training.member import Member

    sae = probsae.build_sae("prob_topk", d_in=16, d_sae=128, k=4)
    m = Member(sae, TrainConfig(progress=False, device=DEVICE), torch.device(DEVICE), None, None, kernels=TRITON)
    before = sae.W_enc.detach().clone()
    x = torch.randn(32, 16, generator=gen(12)).to(DEVICE)
    for step in range(2):
        result = m.step(x, step, 10)
    assert torch.isfinite(result.out.loss) and not torch.equal(before, sae.W_enc)
    assert int(sae.noise_step) == 2


def test_gpu_group_members_balance_the_two_rankings():
    from probsae.kernels.topk import gpu_group_members

    assert gpu_group_members(98_304, 32) == 32   # √3072 ≈ 55 → 32: 3,072 maxima + 1,024 candidates
    assert gpu_group_members(12_288, 32) == 16
    assert gpu_group_members(6_144, 8) == 16
    assert gpu_group_members(100, 40) == 1       # fewer than k groups otherwise: plain top-k
    for n, k in ((98_304, 32), (12_288, 8), (6_144, 32), (384, 4), (96, 7)):
        m = gpu_group_members(n, k)
        assert n % m == 0 and n // m >= k and m <= 64


def test_gpu_chunk_rows_cap_the_pre_activations_but_keep_big_matmuls():
    from probsae.kernels.select import GPU_CHUNK_ELEMENTS, gpu_chunk_rows

    assert gpu_chunk_rows(4096, 6144) == 1024          # 8M / 6144 ≈ 1365 → 1024: four chunks
    assert gpu_chunk_rows(8192, 98_304) == 1024        # never below 1024 rows
    assert gpu_chunk_rows(512, 64) == 512              # a small batch is one chunk
    for B, M in ((4096, 6144), (8192, 12_288), (65_536, 384)):
        rows = gpu_chunk_rows(B, M)
        assert rows & (rows - 1) == 0 or rows == B
        assert rows * M <= max(GPU_CHUNK_ELEMENTS, 1024 * M)
