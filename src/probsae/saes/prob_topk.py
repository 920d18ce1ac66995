"""Probabilistic TopK SAE (the paper, eq. 6–8), and an opt-in fix of its gate's saturation.

    a = W_enc (x − b_dec)                                  (no encoder bias)
    ℓ = LayerNorm(a)                                       (the gate's log-odds)
    g = (ℓ + L) / β,   L = log u − log(1 − u), u ~ U(0,1)  (noise in training only)
    z = σ(g)
    s = z + λ_mag |a|;   m = TopK(s)                       (score = 'paper', the default)
    x̂ = W_dec (m ⊙ a) + b_dec                              (codes: signed a at the selected latents)

Inference drops the noise: z = σ(ℓ/β). β is a buffer set by ``on_train_step`` (held at β_0
during warm-up, then exponential decay to β_T), so it is saved with the SAE. With the hard TopK
mask no gradient reaches z (the paper's literal model); ``straight_through`` is an opt-in variant
that passes the gate's gradient through the selected codes.

The saturation flaw. In float32, σ(g) rounds to exactly 1.0 once g ≳ 17, i.e. from β ≈ 0.2–0.3
on for typical ℓ + L. All fired gates then tie at z = 1 and the λ_mag|a| term breaks the ties:
selection becomes "top-|a| among gates whose noisy logit was positive", a Bernoulli(σ(ℓ)) draw
that keeps dropping good latents however small β gets (the limit is the same in exact
arithmetic; float32 only reaches it sooner). ``score`` (``kernels.gate_score_`` holds the
formulas, one line each) offers two opt-in alternatives:

    'stable':  s = λ_mag|a| − σ(−g)
        The same order as the paper's s in exact arithmetic (σ(g) = 1 − σ(−g)), but σ(−g) is
        representable down to ~1e-38, so fired gates keep distinct scores until g ≈ 88: the
        numerical fix alone, which isolates float32 from the design.
    'logit':   s = ℓ + (β/β_0)·L + λ_mag|a|
        Rank on the gate's logit, which never saturates. As σ is monotone, ranking on
        (ℓ + L)/β would make β irrelevant, so the annealing moves from the temperature to the
        noise: its scale shrinks from 1 (the paper's exploration at β_0) to β_T/β_0 (≈ 0), and
        training selection converges to the deterministic inference selection
        TopK(ℓ + λ_mag|a|) instead of a persistent Bernoulli draw. Equivalent to a Binary
        Concrete gate at fixed temperature β_0 with noise L·β/β_0, ranked on its logit.
        Inference (no noise) ranks on ℓ + λ_mag|a|.

Neither is the default (the paper's model is); docs/results/offline-en-cpu measures all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import kernels
from ..kernels import GATE_SCORES, concrete_gate_score, gate_score_, logistic_noise, sparse_decode, sparse_encode
from ..schedules import exp_anneal
from .base import SAE
from .config import TopKConfig, choice, positive
from .output import SAEOutput
from .registry import register

GATES = ("concrete", "sigmoid")


@dataclass
class ProbTopKConfig(TopKConfig):
    lambda_mag: float = 1e-4
    """Weight of |a| in the selection score s = z + λ_mag|a| (0 = the paper's 'w/o magnitude')."""
    layernorm: bool = True
    """LayerNorm (with affine parameters) over the latents before the gate ('w/o LayerNorm' = False)."""
    gate: str = "concrete"
    """'concrete' (Binary Concrete: logistic noise in training) or 'sigmoid' (no noise: the ablation)."""
    beta_start: float = 5.0
    """Gate temperature β_0, held during LR warm-up."""
    beta_end: float = 1e-4
    """Final temperature β_T reached at the last training step."""
    anneal: bool = True
    """Anneal β from beta_start to beta_end; False keeps β fixed at beta_start."""
    straight_through: bool = False
    """Opt-in: codes a·(1 + z − sg(z)) so the gate and LayerNorm get gradient (not in the paper)."""
    score: str = "paper"
    """Selection score: 'paper' (s = σ((ℓ + L)/β) + λ|a|, eq. 8), 'stable' (λ|a| − σ(−(ℓ + L)/β):
    the same order without float32 saturation) or 'logit' (ℓ + (β/β_0)·L + λ|a|: rank on the
    logit, anneal the noise). See the module docstring."""

    def validate(self) -> None:
        super().validate()
        choice("score", self.score, GATE_SCORES)
        positive("lambda_mag", self.lambda_mag, allow_zero=True)
        positive("beta_start", self.beta_start)
        positive("beta_end", self.beta_end)
        choice("gate", self.gate, GATES)


@register
class ProbTopKSAE(SAE):
    architecture = "prob_topk"
    config_class = ProbTopKConfig
    has_encoder_bias = False
    default_init = "orthogonal"  # the paper's App. A; measured better than 'unit' for this model

    def __init__(self, cfg: ProbTopKConfig):
        super().__init__(cfg)
        if cfg.layernorm:
            self.ln_weight = nn.Parameter(torch.ones(cfg.d_sae))
            self.ln_bias = nn.Parameter(torch.zeros(cfg.d_sae))
        self.register_buffer("beta", torch.tensor(float(cfg.beta_start)))
        self.noise_generator: torch.Generator | None = None

    def gate_logits(self, a: Tensor) -> Tensor:
        """LayerNorm(a) (or a itself without LayerNorm): the gate's log-odds before temperature."""
        if self.cfg.layernorm:
            return F.layer_norm(a, (self.d_sae,), self.ln_weight, self.ln_bias)
        return a

    def noise_scale(self) -> Tensor | None:
        """Multiplier of the logistic noise: β/β_0 for score 'logit', None (1) otherwise."""
        return self.beta / self.cfg.beta_start if self.cfg.score == "logit" else None

    def noisy_logits(self, a: Tensor, noisy: bool) -> Tensor:
        """ℓ + c·L: the gate's logit with (scaled) logistic noise when ``noisy``."""
        logits = self.gate_logits(a)
        if noisy:
            noise = logistic_noise(logits, self.noise_generator)
            scale = self.noise_scale()
            logits = logits + (noise if scale is None else noise * scale)
        return logits

    def gate(self, a: Tensor, noisy: bool) -> Tensor:
        """z = σ((logits + noise) / β); the noise only when ``noisy``."""
        return torch.sigmoid(self.noisy_logits(a, noisy) / self.beta)

    def select(self, a: Tensor, noisy: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (codes at the selected latents, their indices, the gate values there)."""
        logits = self.noisy_logits(a, noisy)
        z = torch.sigmoid(logits / self.beta)
        with torch.no_grad():
            score = gate_score_(logits.detach().clone(), a.detach(), self.beta, self.cfg.lambda_mag, self.cfg.score)
        indices = score.topk(self.cfg.k, dim=-1, sorted=False).indices
        values = a.gather(-1, indices)
        z_sel = z.gather(-1, indices)
        if self.cfg.straight_through:
            values = values * (1.0 + z_sel - z_sel.detach())
        return values, indices, z_sel

    def fast_select(self, x_n: Tensor, noisy: bool) -> tuple[Tensor, Tensor, Tensor]:
        """``select`` through kernels.sparse_encode: the gate score is computed per row chunk in
        place without autograd (with the hard mask no gradient reaches it) and only the K selected
        codes get gradient. The gate value there is recovered as s − λ|a| (float rounding)."""
        cfg = self.cfg
        uniforms = None
        if noisy and kernels.settings.noise_prefetch:
            B, rows = x_n.shape[0], kernels.chunk_rows(x_n.shape[0], self.d_sae, kernels.settings.chunk)
            shapes = [(min(rows, B - s), self.d_sae) for s in range(0, B, rows)]
            uniforms = kernels.UniformPrefetch(shapes, self.noise_generator, x_n.device)
        score = partial(concrete_gate_score, beta=self.beta, lambda_mag=cfg.lambda_mag,
                        ln_weight=self.ln_weight if cfg.layernorm else None,
                        ln_bias=self.ln_bias if cfg.layernorm else None, noisy=noisy,
                        generator=self.noise_generator, layernorm=cfg.layernorm, uniforms=uniforms,
                        score=cfg.score, noise_scale=self.noise_scale() if noisy else None)
        values, indices, s_sel = sparse_encode(x_n, self.W_enc, None, self.b_dec, cfg.k, score, kernels.settings.chunk)
        t = s_sel - cfg.lambda_mag * values.detach().abs() if cfg.lambda_mag else s_sel
        z_sel = t if cfg.score == "paper" else (1.0 + t if cfg.score == "stable" else torch.sigmoid(t / self.beta))
        return values, indices, z_sel

    def forward_normalized(self, x_n: Tensor, dead_mask: Tensor | None = None) -> SAEOutput:
        noisy = self.training and self.cfg.gate == "concrete"
        if kernels.settings.fast and not self.cfg.straight_through:
            values, indices, z_sel = self.fast_select(x_n, noisy)
        else:
            values, indices, z_sel = self.select(self.pre_acts(x_n), noisy)
        recon = sparse_decode(values, indices, self.W_dec) + self.b_dec
        return SAEOutput(recon, None, {"mse": self.mse(recon, x_n)}, recon, x_n,
                         top_values=values, top_indices=indices, aux={"gate_selected": z_sel.detach()})

    def sparse_codes_normalized(self, x_n: Tensor) -> tuple[Tensor, Tensor]:
        """Deterministic inference codes of normalised inputs as (values, indices), each (B, K)."""
        if kernels.settings.fast:
            with torch.no_grad():
                values, indices, _ = self.fast_select(x_n, noisy=False)
        else:
            values, indices, _ = self.select(self.pre_acts(x_n), noisy=False)
        return values, indices

    def encode_normalized(self, x_n: Tensor) -> Tensor:
        return self.densify(*self.sparse_codes_normalized(x_n))

    @torch.no_grad()
    def encode_sparse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Inference codes of raw activations as (values, indices), each (..., K), without the
        dense (..., d_sae) matrix of ``encode``."""
        x_n, lead = self._inference_input(x)
        values, indices = self.sparse_codes_normalized(x_n)
        return values.reshape(*lead, -1), indices.reshape(*lead, -1)

    @torch.no_grad()
    def gate_probs(self, x: Tensor) -> Tensor:
        """Deterministic gate probabilities σ(LayerNorm(a)/β) (..., d_sae) of raw activations:
        the per-latent confidence the paper studies."""
        lead = x.shape[:-1]
        x_n, _ = self.normalizer(self._check(x).reshape(-1, self.d_in))
        return self.gate(self.pre_acts(x_n), noisy=False).reshape(*lead, self.d_sae)

    def on_train_step(self, step: int, total_steps: int, warmup_steps: int) -> dict[str, float]:
        cfg = self.cfg
        beta = exp_anneal(step, total_steps, warmup_steps, cfg.beta_start, cfg.beta_end) if cfg.anneal else cfg.beta_start
        self.beta.fill_(beta)
        return {"beta": beta}
