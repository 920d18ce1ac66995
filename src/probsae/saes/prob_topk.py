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

Neither is the default (the paper's model is); docs/results/offline-en-cpu-quick measures all three
(the offline-en-gpu preset repeats them at 3M–100M tokens). Every path of ``kernels.select_topk``
computes the same score: the plain and CPU paths call ``kernels.gate_score_``, the Triton kernels
mirror it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import kernels
from ..kernels import GATE_SCORES, gate_of_score, sparse_decode
from ..schedules import exp_anneal
from .base import SAE
from ..validators import choice, positive
from .config import SEED, TopKConfig
from .declarations import Export, Presentation
from .options import DEFAULT_OPTIONS, ForwardOptions
from .output import Codes, Forward
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
    presentation = Presentation("Probabilistic TopK", "#D55E00", "s")
    sparsity = ("k", "K")
    toy_hparams = {"k": 8}
    graphable = True
    default_init = "orthogonal"  # the paper's App. A; measured better than 'unit' for this model

    def __init__(self, cfg: ProbTopKConfig, d_in: int, d_sae: int, seed: int = SEED):
        super().__init__(cfg, d_in, d_sae, seed)
        if cfg.layernorm:
            self.ln_weight = nn.Parameter(torch.ones(d_sae))
            self.ln_bias = nn.Parameter(torch.zeros(d_sae))
        self.register_buffer("beta", torch.tensor(float(cfg.beta_start)))
        # The training step keys the Triton path's Philox gate noise (set by on_train_step; on the
        # device so that no step needs a host sync or a recompiled graph). Not saved.
        self.register_buffer("noise_step", torch.zeros((), dtype=torch.int64), persistent=False)
        self.noise_generator: torch.Generator | None = None

    @property
    def gate_temperature(self) -> float:
        """The gate temperature β now (after training: the final β, what inference uses)."""
        return float(self.beta)

    def selection(self, noisy: bool, row0: int = 0) -> kernels.Selection:
        """The selection rule (``score``: the paper's s = σ((LN(a) + L)/β) + λ|a|, L logistic noise
        when ``noisy``, keyed on the Triton path by the global row ``row0`` of the first token:
        ``ForwardOptions.noise_row0``), stated once for every path (kernels.select_topk)."""
        cfg = self.cfg
        noise = None
        if noisy:
            noise = kernels.GateNoise(self.noise_generator, self.seed & 0xFFFFFFFF, self.noise_step, row0)
        return kernels.Selection("gate", beta=self.beta, lambda_mag=cfg.lambda_mag,
                                 ln_weight=self.ln_weight if cfg.layernorm else None,
                                 ln_bias=self.ln_bias if cfg.layernorm else None,
                                 noise=noise, gate_score=cfg.score, noise_scale=self.noise_scale() if noisy else None,
                                 differentiable=cfg.straight_through)

    def noise_scale(self) -> Tensor | None:
        """Multiplier c of the logistic noise: β/β_0 (a device scalar that follows β) for score
        'logit', None (1) otherwise."""
        return self.beta / self.cfg.beta_start if self.cfg.score == "logit" else None

    def gate(self, a: Tensor, noisy: bool, policy: kernels.KernelPolicy = kernels.DEFAULT_POLICY) -> Tensor:
        """z = σ((LayerNorm(a) + c·L) / β), L logistic noise only when ``noisy`` (whatever ``score``)."""
        return replace(self.selection(noisy), lambda_mag=0.0, gate_score="paper").dense_scores(a, policy)

    def select_codes(self, x_n: Tensor, noisy: bool,
                     options: ForwardOptions = DEFAULT_OPTIONS) -> tuple[Tensor, Tensor, Tensor]:
        """(codes at the selected latents, their indices, the gate values there). With the hard
        mask no gradient reaches the gate (the fast path computes it without autograd); the gate
        value is recovered from the score (``kernels.gate_of_score``, float rounding).
        ``straight_through`` passes the gate's gradient through the codes (plain path)."""
        cfg = self.cfg
        values, indices, s_sel = kernels.select_topk(x_n, self.W_enc, None, self.b_dec, cfg.k,
                                                     self.selection(noisy, options.noise_row0), options.policy)
        if noisy:
            self.noise_step.add_(1)  # a forward outside the trainer draws fresh noise next time
        z_sel = gate_of_score(s_sel, values, self.beta, cfg.lambda_mag, cfg.score)
        if cfg.straight_through:
            values = values * (1.0 + z_sel - z_sel.detach())
        return values, indices, z_sel

    def forward_normalized(self, x_n: Tensor, target_n: Tensor, dead_mask: Tensor | None = None,
                           options: ForwardOptions = DEFAULT_OPTIONS) -> Forward:
        noisy = self.training and self.cfg.gate == "concrete"
        values, indices, z_sel = self.select_codes(x_n, noisy, options)
        recon = sparse_decode(values, indices, self.W_dec, options.policy) + self.b_dec
        return Forward(recon, (values, indices), aux={"gate_selected": z_sel.detach()})

    def sparse_codes_normalized(self, x_n: Tensor, options: ForwardOptions = DEFAULT_OPTIONS) -> tuple[Tensor, Tensor]:
        """Deterministic inference codes of normalised inputs as (values, indices), each (B, K)."""
        with torch.no_grad():
            values, indices, _ = self.select_codes(x_n, noisy=False, options=options)
        return values, indices

    def encode_normalized(self, x_n: Tensor, options: ForwardOptions = DEFAULT_OPTIONS) -> Codes:
        return self.sparse_codes_normalized(x_n, options)

    extra_outputs = {"gate_probs": "deterministic gate probability σ(LayerNorm(a)/β) of every latent, "
                                   "the per-latent confidence the paper studies (..., d_sae)",
                     "gate_logits": "the gate's score before the temperature, LayerNorm(a), of every latent "
                                    "(gate_probs = σ(gate_logits/β)); informative where gate_probs saturate "
                                    "at a small β (..., d_sae)"}

    def extra_outputs_normalized(self, x_n: Tensor) -> dict[str, Tensor]:
        a = self.pre_acts(x_n)
        logits = F.layer_norm(a, (self.d_sae,), self.ln_weight, self.ln_bias) if self.cfg.layernorm else a
        return {"gate_probs": self.gate(a, noisy=False), "gate_logits": logits}

    def gate_probs(self, x: Tensor) -> Tensor:
        """``extras(x)["gate_probs"]``: σ(LayerNorm(a)/β) (..., d_sae) of raw activations."""
        return self.extras(x)["gate_probs"]

    def on_train_step(self, step: int, total_steps: int, warmup_steps: int) -> dict[str, float]:
        cfg = self.cfg
        beta = exp_anneal(step, total_steps, warmup_steps, cfg.beta_start, cfg.beta_end) if cfg.anneal else cfg.beta_start
        self.beta.fill_(beta)
        self.noise_step.fill_(step)
        return {"beta": beta}

    # ---- declarations -----------------------------------------------------------------------
    # Both exports map to the target's TopK (the K largest a, then ReLU): the gate keeps latents of
    # large positive LayerNorm(a), so its codes are almost never negative and the K largest a agree
    # with its choice far more often than the K largest |a| (AbsTopK) do. Measured, and the choice
    # recorded, in docs/FORMATS.md ("prob_topk"); neither mapping is exact.
    SELECTION_CHANGE = (
        "latent selection: probsae keeps the K latents with the largest gate score σ(LayerNorm(a)/β) + λ_mag·|a| "
        "(a = W_enc(x − b_dec), no encoder bias) and outputs the signed a there; {target} keeps the K largest a "
        "and outputs ReLU(a) there. Codes and reconstructions are identical on the tokens whose gate-selected "
        "latents are the K largest a and all have a ≥ 0, and differ on the others (other latents, and a "
        "negative probsae code becomes 0). How many tokens differ depends on the SAE: it was not measured at "
        "export; docs/FORMATS.md ('prob_topk') gives a measurement and "
        "scripts/ecosystem/prob_topk_export_agreement.py measures it for this SAE on its held-out activations")

    def to_saelens(self, state):
        cfg = self.cfg
        return Export(
            "topk", {"b_enc": torch.zeros(self.d_sae, dtype=torch.float64)},  # the paper's encoder has no bias
            {"k": cfg.k, "rescale_acts_by_decoder_norm": False},
            changes=[self.SELECTION_CHANGE.format(target="SAELens 'topk'")],
            dropped=["the gate: LayerNorm affine parameters ln_weight/ln_bias" if cfg.layernorm else "the gate",
                     f"gate temperature β={float(state['beta']):.6g}, lambda_mag={cfg.lambda_mag}, "
                     f"gate={cfg.gate!r}, score={cfg.score!r}, straight_through={cfg.straight_through}"])

    def to_sparsify(self, state):
        return Export(
            "topk", {"b_enc": torch.zeros(self.d_sae, dtype=torch.float64)}, {"k": self.cfg.k},
            changes=[self.SELECTION_CHANGE.format(target="sparsify 'topk'")],
            dropped=["the gate (ln_weight/ln_bias, β, lambda_mag); b_enc is written as zeros (the paper's encoder "
                     "has none)"])

    VARIANTS = {("lambda_mag", 0.0): "w/o magnitude", ("layernorm", False): "w/o LayerNorm",
                ("gate", "sigmoid"): "sigmoid gate", ("anneal", False): "fixed β"}

    @classmethod
    def variant_label(cls, name, value):
        if name == "beta_start":
            return f"β0={value:g}"
        return cls.VARIANTS.get((name, value))
