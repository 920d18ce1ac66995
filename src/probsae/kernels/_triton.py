"""Triton kernels of the TopK family's GPU path (imported lazily: only for CUDA tensors, or on CPU
tensors under Triton's interpreter, ``TRITON_INTERPRET=1``, in the tests).

Three sparse primitives over the B·K selections ``idx`` (B, K) with weights ``w`` (B, K):

- ``gather_sum``:  out[b]    = Σ_j w[b,j] · table[idx[b,j]]              (decoder forward)
- ``gather_dot``:  out[b,j]  = ⟨rows[b], table[idx[b,j]]⟩ (+ bias[idx])  (decoder grad values;
  the encoder's exact-fp32 recompute of the selected pre-activations)
- ``scatter_outer``: out[m]  = Σ_{(b,j): idx[b,j]=m} w[b,j] · rows[b]    (grad W_dec, grad W_enc)
  in two versions: atomic adds, or deterministic (selections sorted by latent, one program per
  block of latents writing each output row once, zeros included; any output layout).

and the selection kernels: ``score_groups`` (one program per row: the row's LayerNorm statistics
for the gate, then the score of every latent (``_score``: every ``gate_score`` formula of
``kernels.gate_score_``), reduced to strided group maxima; logistic noise from
Philox4x32 keyed by (seed, step) at counter = the element's global offset // 4, output offset mod 4,
so no noise tensor exists and one Philox call serves four latents) and
``score_at`` (the same score at given latents, the noise recomputed from the same counters).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

EPS_U = 1e-6
"""Uniforms are clamped to [ε, 1 − ε] before the logit (as on the CPU path)."""
LN_EPS = 1e-5
"""LayerNorm ε (F.layer_norm's default)."""

MODES = {"pre": 0, "abs": 1, "gate": 2}
#: The gate's score formulas (``Selection.gate_score``): the SCORE constexpr of ``_score``.
SCORES = {"paper": 0, "stable": 1, "logit": 2}


def _block(n: int, cap: int) -> int:
    return max(16, min(triton.next_power_of_2(max(1, n)), cap))


# ---- sparse primitives --------------------------------------------------------------------------
@triton.jit
def _gather_sum_kernel(out_ptr, w_ptr, idx_ptr, table_ptr, K, D,
                       BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = d < D
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for j0 in range(0, K, BLOCK_K):
        j = j0 + tl.arange(0, BLOCK_K)
        jm = j < K
        m = tl.load(idx_ptr + b * K + j, mask=jm, other=0).to(tl.int64)
        w = tl.load(w_ptr + b * K + j, mask=jm, other=0.0).to(tl.float32)
        rows = tl.load(table_ptr + m[:, None] * D + d[None, :], mask=jm[:, None] & dm[None, :], other=0.0)
        acc += tl.sum(rows.to(tl.float32) * w[:, None], axis=0)
    tl.store(out_ptr + b * D + d, acc, mask=dm)


@triton.jit
def _gather_dot_kernel(out_ptr, rows_ptr, idx_ptr, table_ptr, bias_ptr, K, D,
                       HAS_BIAS: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    jm = j < K
    m = tl.load(idx_ptr + b * K + j, mask=jm, other=0).to(tl.int64)
    acc = tl.zeros([BLOCK_K], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        dm = d < D
        r = tl.load(rows_ptr + b * D + d, mask=dm, other=0.0).to(tl.float32)
        t = tl.load(table_ptr + m[:, None] * D + d[None, :], mask=jm[:, None] & dm[None, :], other=0.0)
        acc += tl.sum(t.to(tl.float32) * r[None, :], axis=1)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + m, mask=jm, other=0.0).to(tl.float32)
    tl.store(out_ptr + b * K + j, acc, mask=jm)


@triton.jit
def _scatter_atomic_kernel(out_ptr, w_ptr, idx_ptr, rows_ptr, K, D, BLOCK_D: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = d < D
    r = tl.load(rows_ptr + b * D + d, mask=dm, other=0.0).to(tl.float32)
    for j in range(0, K):
        m = tl.load(idx_ptr + b * K + j).to(tl.int64)
        w = tl.load(w_ptr + b * K + j).to(tl.float32)
        tl.atomic_add(out_ptr + m * D + d, w * r, mask=dm, sem="relaxed")


@triton.jit
def _scatter_sorted_kernel(out_ptr, wsum_ptr, w_ptr, order_ptr, offsets_ptr, rows_ptr, M, K, D,
                           stride_m, stride_d, HAS_WSUM: tl.constexpr, BLOCK_L: tl.constexpr,
                           BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    m0 = tl.program_id(0).to(tl.int64) * BLOCK_L
    dblk = tl.program_id(1)
    d = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    dm = d < D
    lids = tl.arange(0, BLOCK_L)
    tile = tl.zeros([BLOCK_L, BLOCK_D], dtype=tl.float32)
    wtot = tl.zeros([BLOCK_L], dtype=tl.float32)
    for l in tl.static_range(BLOCK_L):
        m = m0 + l
        start = tl.load(offsets_ptr + m, mask=m < M, other=0)
        end = tl.load(offsets_ptr + m + 1, mask=m < M, other=0)
        acc = tl.zeros([BLOCK_D], dtype=tl.float32)
        ws = tl.zeros([BLOCK_S], dtype=tl.float32)
        for s in range(start, end, BLOCK_S):
            o = s + tl.arange(0, BLOCK_S)
            om = o < end
            f = tl.load(order_ptr + o, mask=om, other=0).to(tl.int64)
            w = tl.load(w_ptr + f, mask=om, other=0.0).to(tl.float32)
            tok = f // K
            r = tl.load(rows_ptr + tok[:, None] * D + d[None, :], mask=om[:, None] & dm[None, :], other=0.0)
            acc += tl.sum(r.to(tl.float32) * w[:, None], axis=0)
            ws += w
        tile = tl.where(lids[:, None] == l, acc[None, :], tile)
        wtot = tl.where(lids == l, tl.sum(ws, axis=0), wtot)
    mm = m0 + lids
    tl.store(out_ptr + mm[:, None] * stride_m + d[None, :].to(tl.int64) * stride_d, tile,
             mask=(mm < M)[:, None] & dm[None, :])
    if HAS_WSUM:
        tl.store(wsum_ptr + mm, wtot, mask=(mm < M) & (dblk == 0))


def gather_sum(w: Tensor, idx: Tensor, table: Tensor) -> Tensor:
    """(B, D) fp32: Σ_j w[b,j] · table[idx[b,j]]."""
    B, K = idx.shape
    D = table.shape[1]
    out = torch.empty(B, D, dtype=torch.float32, device=table.device)
    BLOCK_D = _block(D, 256)
    _gather_sum_kernel[(B, triton.cdiv(D, BLOCK_D))](out, w.contiguous(), idx.contiguous(), table.contiguous(), K, D,
                                                     BLOCK_K=_block(K, 16), BLOCK_D=BLOCK_D)
    return out


def gather_dot(rows: Tensor, table: Tensor, idx: Tensor, bias: Tensor | None = None) -> Tensor:
    """(B, K) fp32: ⟨rows[b], table[idx[b,j]]⟩ (+ bias[idx[b,j]])."""
    B, K = idx.shape
    D = table.shape[1]
    out = torch.empty(B, K, dtype=torch.float32, device=table.device)
    BLOCK_K = _block(K, 32)
    _gather_dot_kernel[(B, triton.cdiv(K, BLOCK_K))](out, rows.contiguous(), idx.contiguous(), table.contiguous(),
                                                     bias if bias is not None else out, K, D, HAS_BIAS=bias is not None,
                                                     BLOCK_K=BLOCK_K, BLOCK_D=_block(D, 128))
    return out


def latent_segments(idx: Tensor, n_latents: int) -> tuple[Tensor, Tensor]:
    """(order, offsets): the flat selections sorted by latent (stable, so the summation order is
    fixed) and where latent m's run starts (offsets has n_latents + 1 entries). No host sync."""
    flat = idx.reshape(-1)
    keys = flat.to(torch.int32) if n_latents < 2**31 else flat
    sorted_keys, order = torch.sort(keys, stable=True)
    bounds = torch.arange(n_latents + 1, device=idx.device, dtype=sorted_keys.dtype)
    return order, torch.searchsorted(sorted_keys, bounds)


def scatter_outer(w: Tensor, idx: Tensor, rows: Tensor, n_latents: int, *, deterministic: bool,
                  transposed: bool = False, want_wsum: bool = False) -> tuple[Tensor, Tensor | None]:
    """out[m] = Σ_{(b,j): idx[b,j]=m} w[b,j] · rows[b] as a (n_latents, D) matrix, or with
    ``transposed`` as its (D, n_latents) transpose view (the layout of a latent-major W_enc: no
    copy), and optionally wsum[m] = Σ w[b,j] over the same selections. ``deterministic``: sorted
    by latent, each output row written once; otherwise atomic adds (the order of the float
    additions varies between runs)."""
    B, K = idx.shape
    D = rows.shape[1]
    w, idx, rows = w.contiguous(), idx.contiguous(), rows.contiguous()
    BLOCK_D = _block(D, 256)
    if deterministic:
        out = torch.empty(n_latents, D, dtype=torch.float32, device=rows.device)
        wsum = torch.empty(n_latents, dtype=torch.float32, device=rows.device) if want_wsum else None
        order, offsets = latent_segments(idx, n_latents)
        BLOCK_L = 8
        _scatter_sorted_kernel[(triton.cdiv(n_latents, BLOCK_L), triton.cdiv(D, BLOCK_D))](
            out, wsum if wsum is not None else out, w, order, offsets, rows, n_latents, K, D, D, 1,
            HAS_WSUM=want_wsum, BLOCK_L=BLOCK_L, BLOCK_S=16, BLOCK_D=BLOCK_D)
    else:
        out = torch.zeros(n_latents, D, dtype=torch.float32, device=rows.device)
        _scatter_atomic_kernel[(B, triton.cdiv(D, BLOCK_D))](out, w, idx, rows, K, D, BLOCK_D=BLOCK_D)
        wsum = None
        if want_wsum:
            wsum = torch.zeros(n_latents, dtype=torch.float32, device=rows.device).index_add_(0, idx.reshape(-1), w.reshape(-1).float())
    return (out.t() if transposed else out), wsum


# ---- selection scores ---------------------------------------------------------------------------
@triton.jit
def _logit_u(u):
    """Logistic noise log(u / (1 − u)) of uniforms u clamped to [ε, 1 − ε] (one log)."""
    u = tl.minimum(tl.maximum(u, 1e-6), 1.0 - 1e-6)
    return tl.log(u / (1.0 - u))


@triton.jit
def _logistic(seed, offs):
    """Standard logistic noise of the elements at int64 offsets e: the uniform is output e mod 4
    of Philox4x32 at counter e // 4, so one Philox call can serve four consecutive elements
    (``_logistic_block``, the score kernel's path, computes the same values that way)."""
    r0, r1, r2, r3 = tl.rand4x(seed, offs >> 2)
    lane = offs & 3
    u = tl.where(lane == 0, r0, tl.where(lane == 1, r1, tl.where(lane == 2, r2, r3)))
    return _logit_u(u)


@triton.jit
def _logistic_block(seed, start, BLOCK: tl.constexpr):
    """``_logistic`` of the BLOCK consecutive elements start, start + 1, … (start a multiple of
    4): one Philox call per four elements, interleaved back into element order."""
    r0, r1, r2, r3 = tl.rand4x(seed, (start >> 2) + tl.arange(0, BLOCK // 4))
    # join adds a new minor dimension: join(join(r0, r2), join(r1, r3))[i] = [[r0, r1], [r2, r3]][i]
    u = tl.reshape(tl.join(tl.join(r0, r2), tl.join(r1, r3)), [BLOCK])
    return _logit_u(u)


@triton.jit
def _key(step_ptr, seed_lo):
    """The Philox key of a training step: (step << 32) | seed_lo (the step read from the device)."""
    return (tl.load(step_ptr).to(tl.int64) << 32) | seed_lo


@triton.jit
def _gate_consts(beta_ptr, step_ptr, scale_ptr, scale, seed_lo, MODE: tl.constexpr, NOISY: tl.constexpr,
                 SCALE: tl.constexpr):
    """The gate's temperature β (read from the device), the step's Philox key and the noise scale
    c (``nscale``): 1 (SCALE 0), the float ``scale`` (SCALE 1) or read from the device (SCALE 2:
    a value that changes per step, such as β/β₀, so that a captured CUDA graph sees the current one)."""
    beta = 1.0
    if MODE == 2:
        beta = tl.load(beta_ptr).to(tl.float32)
    seed = 0
    nscale = 1.0
    if NOISY:
        seed = _key(step_ptr, seed_lo)
        if SCALE == 1:
            nscale = scale
        elif SCALE == 2:
            nscale = tl.load(scale_ptr).to(tl.float32)
    return beta, seed, nscale


@triton.jit
def _score(a, m, mask, row_off, mean, rstd, lnw_ptr, lnb_ptr, beta, lam, seed, nscale,
           MODE: tl.constexpr, HAS_LN: tl.constexpr, NOISY: tl.constexpr, SCORE: tl.constexpr = 0,
           SCALE: tl.constexpr = 0, QUAD_BLOCK: tl.constexpr = 0):
    """Selection score of pre-activations ``a`` at latents ``m``. The gate (MODE 2) mirrors
    ``kernels.gate_score_``, the one home of its formulas, line for line: t = LN(a) + c·L with
    c = ``nscale``, then SCORE 0 'paper' σ(t/β) + λ|a|, 1 'stable' λ|a| − σ(−t/β), 2 'logit'
    t + λ|a|. ``QUAD_BLOCK`` > 0: ``m`` is the contiguous run m[0] … m[0] + QUAD_BLOCK − 1 with
    row_off + m[0] a multiple of 4, and the noise is drawn one Philox call per four latents (the
    same values as the per-element path)."""
    if MODE == 0:
        s = a
    elif MODE == 1:
        s = tl.abs(a)
    else:
        if HAS_LN:
            w = tl.load(lnw_ptr + m, mask=mask, other=1.0).to(tl.float32)
            bb = tl.load(lnb_ptr + m, mask=mask, other=0.0).to(tl.float32)
            s = (a - mean) * rstd * w + bb
        else:
            s = a
        if NOISY:
            if QUAD_BLOCK > 0:
                noise = _logistic_block(seed, row_off + tl.min(m, axis=0), QUAD_BLOCK)
            else:
                noise = _logistic(seed, row_off + m)
            if SCALE > 0:
                noise = noise * nscale
            s = s + noise
        if SCORE == 0:
            s = tl.sigmoid(s / beta) + lam * tl.abs(a)
        elif SCORE == 1:
            s = lam * tl.abs(a) - tl.sigmoid(-(s / beta))
        else:
            s = s + lam * tl.abs(a)
    return s


@triton.jit
def _score_groups_kernel(gmax_ptr, stats_ptr, pre_ptr, bias_ptr, lnw_ptr, lnb_ptr, beta_ptr, step_ptr, scale_ptr,
                         M, G, members, row0, lam, scale, seed_lo,
                         MODE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_LN: tl.constexpr,
                         NOISY: tl.constexpr, SCORE: tl.constexpr, SCALE: tl.constexpr,
                         QUAD: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    row = pre_ptr + b * M
    mean = 0.0
    rstd = 1.0
    if HAS_LN:
        # Row statistics over all M latents (shifted sums: less cancellation than raw moments).
        shift = tl.load(row).to(tl.float32)
        if HAS_BIAS:
            shift += tl.load(bias_ptr).to(tl.float32)
        s1 = tl.zeros([BLOCK], dtype=tl.float32)
        s2 = tl.zeros([BLOCK], dtype=tl.float32)
        for c0 in range(0, M, BLOCK):
            c = c0 + tl.arange(0, BLOCK)
            cm = c < M
            a = tl.load(row + c, mask=cm, other=0.0).to(tl.float32)
            if HAS_BIAS:
                a += tl.load(bias_ptr + c, mask=cm, other=0.0).to(tl.float32)
            x = tl.where(cm, a - shift, 0.0)
            s1 += x
            s2 += x * x
        mu = tl.sum(s1, axis=0) / M
        var = tl.maximum(tl.sum(s2, axis=0) / M - mu * mu, 0.0)
        mean = shift + mu
        rstd = 1.0 / tl.sqrt(var + 1e-5)
        tl.store(stats_ptr + 2 * b, mean)
        tl.store(stats_ptr + 2 * b + 1, rstd)
    beta, seed, nscale = _gate_consts(beta_ptr, step_ptr, scale_ptr, scale, seed_lo, MODE, NOISY, SCALE)
    row_off = (row0 + b) * M
    for c0 in range(0, G, BLOCK):
        c = c0 + tl.arange(0, BLOCK)
        cm = c < G
        best = tl.full([BLOCK], float("-inf"), dtype=tl.float32)
        for t in range(0, members):
            m = t * G + c
            a = tl.load(row + m, mask=cm, other=0.0).to(tl.float32)
            if HAS_BIAS:
                a += tl.load(bias_ptr + m, mask=cm, other=0.0).to(tl.float32)
            s = _score(a, m, cm, row_off, mean, rstd, lnw_ptr, lnb_ptr, beta, lam, seed, nscale, MODE, HAS_LN, NOISY,
                       SCORE, SCALE, BLOCK if QUAD else 0)
            best = tl.maximum(best, s)
        tl.store(gmax_ptr + b * G + c, best, mask=cm)


@triton.jit
def _score_at_kernel(out_ptr, cand_ptr, stats_ptr, pre_ptr, bias_ptr, lnw_ptr, lnb_ptr, beta_ptr, step_ptr, scale_ptr,
                     C, M, row0, lam, scale, seed_lo,
                     MODE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_LN: tl.constexpr,
                     NOISY: tl.constexpr, SCORE: tl.constexpr, SCALE: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    jm = j < C
    m = tl.load(cand_ptr + b * C + j, mask=jm, other=0).to(tl.int64)
    a = tl.load(pre_ptr + b * M + m, mask=jm, other=0.0).to(tl.float32)
    if HAS_BIAS:
        a += tl.load(bias_ptr + m, mask=jm, other=0.0).to(tl.float32)
    mean = 0.0
    rstd = 1.0
    if HAS_LN:
        mean = tl.load(stats_ptr + 2 * b)
        rstd = tl.load(stats_ptr + 2 * b + 1)
    beta, seed, nscale = _gate_consts(beta_ptr, step_ptr, scale_ptr, scale, seed_lo, MODE, NOISY, SCALE)
    s = _score(a, m, jm, (row0 + b) * M, mean, rstd, lnw_ptr, lnb_ptr, beta, lam, seed, nscale, MODE, HAS_LN, NOISY,
               SCORE, SCALE)
    tl.store(out_ptr + b * C + j, s, mask=jm)


@triton.jit
def _noise_kernel(out_ptr, step_ptr, N, base, seed_lo, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    tl.store(out_ptr + offs, _logistic(_key(step_ptr, seed_lo), base + offs), mask=mask)


def _gate_args(spec, pre: Tensor):
    """Pointers/flags of a score spec (kernels.select.Selection) for the score kernels."""
    mode = MODES[spec.score]
    gate = mode == 2
    has_ln = gate and spec.ln_weight is not None
    noisy = gate and spec.noise is not None
    c = spec.noise_scale if noisy else None
    on_device = isinstance(c, Tensor)  # read by the kernel: no host sync, and a CUDA graph sees each step's value
    return dict(
        lnw_ptr=spec.ln_weight if has_ln else pre, lnb_ptr=spec.ln_bias if has_ln else pre,
        beta_ptr=spec.beta if gate else pre, step_ptr=spec.noise.step if noisy else pre,
        scale_ptr=c if on_device else pre, scale=float(c) if c is not None and not on_device else 1.0,
        lam=float(spec.lambda_mag) if gate else 0.0, seed_lo=spec.noise.seed_lo if noisy else 0,
        MODE=mode, HAS_LN=has_ln, NOISY=noisy, SCORE=SCORES[spec.gate_score] if gate else 0,
        SCALE=0 if c is None else (2 if on_device else 1))


def score_select(pre: Tensor, bias: Tensor | None, k: int, spec, row0: int, members: int) -> tuple[Tensor, Tensor]:
    """(scores, indices) (B, k) of the k largest scores of each row of ``pre`` (B, M) under
    ``spec``. ``members`` > 1: strided groups of that many latents; the k groups with the largest
    maxima hold the row's top k, so only their k·members members are scored again and ranked.
    ``members`` = 1: every score is written and ranked by torch.topk."""
    B, M = pre.shape
    pre = pre.contiguous()
    G = M // members
    args = _gate_args(spec, pre)
    gmax = torch.empty(B, G, dtype=torch.float32, device=pre.device)
    stats = torch.empty(B, 2, dtype=torch.float32, device=pre.device)
    has_bias = bias is not None
    BLOCK = _block(G, 1024)
    # The noise a Philox call per four latents: every block of the score loop is a 4-aligned run.
    quad = args["NOISY"] and G % 4 == 0 and M % 4 == 0
    _score_groups_kernel[(B,)](gmax, stats, pre, bias if has_bias else pre, M=M, G=G, members=members, row0=row0,
                               HAS_BIAS=has_bias, QUAD=quad, BLOCK=BLOCK, **args)
    if members == 1:
        return gmax.topk(k, dim=1, sorted=False)
    groups = gmax.topk(k, dim=1, sorted=False).indices
    cand = (groups.unsqueeze(2) + G * torch.arange(members, device=pre.device)).reshape(B, k * members)
    C = k * members
    scores = torch.empty(B, C, dtype=torch.float32, device=pre.device)
    BLOCK = _block(C, 256)
    _score_at_kernel[(B, triton.cdiv(C, BLOCK))](scores, cand, stats, pre, bias if has_bias else pre, C=C, M=M,
                                                 row0=row0, HAS_BIAS=has_bias, BLOCK=BLOCK, **args)
    top, pos = scores.topk(k, dim=1, sorted=False)
    return top, cand.gather(1, pos)


def logistic_noise(rows: int, cols: int, noise, row0: int, device) -> Tensor:
    """The gate noise of rows ``row0 …`` as a dense (rows, cols) tensor (the plain path and the
    tests; the fast path never builds it): element e = (row0+b)·cols + m is output e mod 4 of
    Philox4x32 at counter e // 4."""
    out = torch.empty(rows, cols, dtype=torch.float32, device=device)
    N = rows * cols
    BLOCK = 1024
    _noise_kernel[(triton.cdiv(N, BLOCK),)](out, noise.step, N, row0 * cols, noise.seed_lo, BLOCK=BLOCK)
    return out
