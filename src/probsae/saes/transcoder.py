"""TopK transcoder (Dunefsky, Chlenski & Nanda 2024; Paulo et al. 2025 for the TopK form and the
skip connection): read the input of an MLP, predict its output through a sparse dictionary:

    f = TopK(ReLU(W_enc (x − b_dec) + b_enc))          (TopK SAE's encoder on the input x)
    ŷ = W_dec f + b_dec  [+ W_skip x]                    (the skip transcoder's linear term, init 0)
    L = ‖y − ŷ‖²                                         (the MSE to the *target* y, e.g. mlp_out)

Training and evaluation rows are ``[x | y]`` pairs of width 2·d_in (the data path's
``target_hook``; ``split_pair``); fed input rows alone (width d_in) it is trained to reconstruct
its input, i.e. it is an SAE (the synthetic recovery check uses that). The encoder subtracts b_dec
as the TopK SAE does: with d_in = d_out that is an encoder bias b_enc − W_encᵀ b_dec, one reparametrisation.

Normalisation. The output is predicted where the target is unknown (spliced into the model), so
the target cannot be normalised with its own per-token statistics. It is mapped with the *input's*
(``unit``: (y − mean(x))/‖x − mean(x)‖; ``scalar``: y·s) and then scaled by ``target_scale``, a
factor fitted on the first batch so that the normalised target has the mean squared norm of the
normalised input (1 for ``unit``, d_in for ``scalar``; ``none`` keeps 1). Reconstructions come back
in the target's raw scale, and metrics (FVU) are against the target on this working scale. With
y = x this is exactly the SAE's normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import InputError
from .config import SEED
from .declarations import Export, Imported, NotExpressible, Presentation, positive_int, state_tensors
from .normalization import NormStats
from .options import DEFAULT_OPTIONS, ForwardOptions
from .output import Forward
from .registry import register
from .topk import TopKSAE, TopKSAEConfig


@dataclass
class TranscoderConfig(TopKSAEConfig):
    skip: bool = False
    """Add a linear skip connection W_skip·x (d_in × d_in, initialised to zeros) to the output:
    a skip transcoder (SAELens's SkipTranscoder, sparsify's skip_connection)."""


@register
class Transcoder(TopKSAE):
    architecture = "transcoder"
    config_class = TranscoderConfig
    presentation = Presentation("TopK Transcoder", "#117733", "h")
    predicts_target = True
    graphable = False  # its [input | target] rows and skip term are not captured (TopKSAE's step is)
    reads = {"sparsify": ("topk transcoder",)}  # sparsify's transcode=true TopK coders, not its autoencoders
    toy_hparams = {"k": 8}  # fed input rows alone, a transcoder reconstructs them: an SAE

    def __init__(self, cfg: TranscoderConfig, d_in: int, d_sae: int, seed: int = SEED):
        super().__init__(cfg, d_in, d_sae, seed)
        self.register_buffer("target_scale", torch.ones(()))
        if cfg.skip:
            self.W_skip = nn.Parameter(torch.zeros(d_in, d_in))

    # ---- the pair and its scales ------------------------------------------------------------
    def split_pair(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[input | target]`` rows (..., 2·d_in) → (input, target); input rows (..., d_in) are
        their own target."""
        width = x.shape[-1] if isinstance(x, Tensor) and x.ndim else None
        if width == 2 * self.d_in:
            return x[..., : self.d_in], x[..., self.d_in :]
        if width == self.d_in:
            return x, x
        raise InputError(f"a transcoder with d_in={self.d_in} takes input rows (..., {self.d_in}) or [input | target] "
                         f"rows (..., {2 * self.d_in}), got shape {tuple(x.shape) if isinstance(x, Tensor) else type(x)}")

    def normalize_target(self, target: Tensor, stats: NormStats | None,
                         finite_check: str = "auto") -> tuple[Tensor, NormStats | None]:
        y = self._check(target, finite_check).reshape(-1, self.d_in)
        if stats is not None and stats.norm.shape[0] != y.shape[0]:
            raise InputError(f"the target has {y.shape[0]} rows, the input {stats.norm.shape[0]}: give one target per input")
        return self.normalizer.apply(y, stats) * self.target_scale, stats

    def denormalize(self, recon_n: Tensor, stats: NormStats | None) -> Tensor:
        return self.normalizer.inverse(recon_n / self.target_scale, stats)

    @torch.no_grad()
    def init_from_data(self, x: Tensor, b_dec_init: str = "geometric_median", finite_check: str = "auto") -> None:
        """Fits ``target_scale`` (see the module docstring), then the base class's initialisation
        (the input's normaliser, b_dec from the normalised target)."""
        inp, target = self.split_pair(x)
        inp = self._check(inp, finite_check).reshape(-1, self.d_in)
        self.normalizer.fit(inp)
        x_n, stats = self.normalizer(inp)
        if self.cfg.normalize != "none":
            y0 = self.normalizer.apply(self._check(target, finite_check).reshape(-1, self.d_in), stats)
            ratio = x_n.pow(2).sum(-1).mean() / y0.pow(2).sum(-1).mean().clamp_min(1e-12)
            self.target_scale.fill_(float(ratio.sqrt()))
        super().init_from_data(x, b_dec_init, finite_check)

    # ---- forward ------------------------------------------------------------------------------
    def forward_normalized(self, x_n: Tensor, target_n: Tensor, dead_mask: Tensor | None = None,
                           options: ForwardOptions = DEFAULT_OPTIONS) -> Forward:
        if not self.cfg.skip:
            return super().forward_normalized(x_n, target_n, dead_mask, options)
        skip = x_n @ self.W_skip
        # the latents (and AuxK's residual) account for what the skip term leaves of the target
        fwd = super().forward_normalized(x_n, target_n - skip.detach(), dead_mask, options)
        fwd.recon = fwd.recon + skip
        return fwd

    # ---- other libraries ------------------------------------------------------------------------
    def to_saelens(self, state):
        return NotExpressible(
            "SAELens's transcoders have no TopK form: Transcoder and SkipTranscoder take the ReLU of every "
            "pre-activation, JumpReLUTranscoder thresholds them, none keeps the K largest (a target scale or "
            "b_dec's subtraction would fold into their weights; the K-largest rule cannot). Export to sparsify "
            "(transcode=true; exact for 'none' and 'scalar' normalisation) or use sae.state_dict()")

    def to_sparsify(self, state):
        """sparsify's transcoder (``transcode``: the encoder reads x without subtracting b_dec;
        ``skip_connection``: ŷ += x W_skipᵀ): b_dec's subtraction folds into the encoder bias
        (b_enc − W_encᵀ b_dec) and ``target_scale`` into W_dec, b_dec and W_skip (÷ target_scale),
        both exact; the exporter then folds 'scalar' normalisation like an SAE's (W_skip, which maps
        raw x to raw ŷ once both scales are folded, is unchanged by it)."""
        t = float(state["target_scale"])
        tensors = {"b_enc": state["b_enc"] - state["b_dec"] @ state["W_enc"]}
        if self.cfg.skip:
            tensors["W_skip"] = state["W_skip"].t() / t  # sparsify's (d_out, d_in) layout
        return Export("topk", tensors, {"k": self.cfg.k, "transcode": True, "skip_connection": self.cfg.skip},
                      dropped=[self._training_only()], decoder_scale=1.0 / t)

    @classmethod
    def from_sparsify(cls, source, cfg, tensors, block):
        """A sparsify TopK transcoder (``transcode``, optional ``skip_connection``): its encoder
        bias e becomes b_enc = e + W_encᵀ b_dec (probsae subtracts b_dec before encoding);
        ``target_scale`` is 1 (the file's decoder already carries any exported scale)."""
        names = ("W_enc", "b_enc", "W_dec", "b_dec") + (("W_skip",) if cfg.get("skip_connection") else ())
        st = state_tensors(tensors, *names)
        st["b_enc"] = st["b_enc"] + st["b_dec"] @ st["W_enc"]
        st["target_scale"] = torch.ones((), dtype=st["W_dec"].dtype)
        return Imported({"k": positive_int(cfg, "k"), "skip": bool(cfg.get("skip_connection"))}, st)
