"""Float32 saturation of Probabilistic TopK's gate, measured on a trained SAE (issue 12).

At each temperature β of the anneal, from one shared logistic-noise draw, the paper's score
σ(g) + λ|a| and the ``stable`` score λ|a| − σ(−g) (the same order in exact arithmetic) select K
latents; :func:`measure` reports how many gates are exactly 1.0 in float32, how often the K-th
selected paper score ties with the best unselected one, how many selections the two scores make
differently, and how many the noise still changes against the deterministic inference selection.
"""

from __future__ import annotations

import torch

BETAS = (5.0, 1.0, 0.5, 0.3, 0.2, 0.1, 0.03, 0.01, 1e-3, 1e-4)


def gated_sae_and_tokens(run_dir: str, eval_cache: str, tokens: int, architecture: str):
    """The scripts' inputs: the SAE of ``run_dir`` (in eval mode) and the first ``tokens`` held-out
    activations of ``eval_cache``. ``ConfigError`` unless the SAE is of ``architecture``."""
    from ..data import ActivationCache
    from ..errors import ConfigError
    from ..saes import load_sae

    sae = load_sae(run_dir).eval()
    if sae.architecture != architecture:
        raise ConfigError(f"{run_dir} is a {sae.architecture} SAE, not {architecture}")
    return sae, next(iter(ActivationCache(eval_cache).iter_batches(tokens, shuffle=False)))


def overlap_loss(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of the K selected indices per row of ``a`` not selected in ``b``."""
    k = a.shape[1]
    same = (a.sort(1).values.unsqueeze(2) == b.sort(1).values.unsqueeze(1)).any(2).sum(1)
    return float(1 - same.float().mean() / k)


@torch.no_grad()
def measure(sae, x: torch.Tensor, betas=BETAS, seed: int = 0) -> list[dict]:
    from ..kernels import gate_score_, logistic_noise

    x_n, _ = sae.normalizer(x)
    a = sae.pre_acts(x_n)
    ell = sae.selection(noisy=False).gate_logits(a)
    noise = logistic_noise(ell, torch.Generator().manual_seed(seed))
    lam, k = sae.cfg.lambda_mag, sae.cfg.k
    rows = []
    for beta in betas:
        t = ell + noise
        sig = torch.sigmoid(t / beta)
        paper = gate_score_(t.clone(), a, beta, lam, "paper")
        stable = gate_score_(t.clone(), a, beta, lam, "stable")
        clean = gate_score_(ell.clone(), a, beta, lam, "paper")
        ip, is_, ic = (s.topk(k, dim=1).indices for s in (paper, stable, clean))
        top_vals = paper.gather(1, ip)
        kth = paper.topk(k + 1, dim=1).values[:, -1:]  # the best unselected score
        rows.append({"beta": beta, "saturated": float((sig == 1.0).float().mean()),
                     "tied": float((top_vals.min(1, keepdim=True).values == kth).float().mean()),
                     "differ": overlap_loss(ip, is_), "noisy_vs_clean": overlap_loss(ip, ic)})
    return rows
