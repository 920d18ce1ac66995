"""BatchTopK SAE (Bussmann et al. 2024): keep the K·B largest ReLU pre-activations of the whole
batch (K per token on average). Inference uses one global threshold θ, an exponential moving
average of the smallest kept activation during training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import SAE
from ..validators import positive
from .config import SEED, TopKConfig
from .declarations import Export, Imported, NotExpressible, Presentation, positive_int, saelens_k, standard_encoder, state_tensors
from .options import DEFAULT_OPTIONS, ForwardOptions
from .output import Forward
from .registry import register


@dataclass
class BatchTopKConfig(TopKConfig):
    threshold_decay: float = 0.99
    """EMA decay of the inference threshold θ."""

    def validate(self) -> None:
        super().validate()
        positive("threshold_decay", self.threshold_decay)


@register
class BatchTopKSAE(SAE):
    architecture = "batchtopk"
    config_class = BatchTopKConfig
    presentation = Presentation("BatchTopK", "#56B4E9", "v")
    sparsity = ("k", "K")
    toy_hparams = {"k": 8}
    # SAELens saves trained BatchTopK SAEs as JumpReLU ones; their BatchTopK training checkpoints too
    reads = {"saelens": ("batchtopk", "jumprelu")}

    def __init__(self, cfg: BatchTopKConfig, d_in: int, d_sae: int, seed: int = SEED):
        super().__init__(cfg, d_in, d_sae, seed)
        self.register_buffer("threshold", torch.tensor(-1.0))  # < 0: not estimated yet
        self._pending_min: Tensor | None = None

    def batch_select(self, pre: Tensor) -> Tensor:
        acts = pre.relu()
        flat = acts.reshape(-1)
        keep = min(self.cfg.k * acts.shape[0], flat.numel())
        values, indices = flat.topk(keep, sorted=False)
        codes = torch.zeros_like(flat).scatter(0, indices, values).reshape(acts.shape)
        positive_kept = values[values > 0]
        if positive_kept.numel():
            self._pending_min = positive_kept.min().detach()
        return codes

    def forward_normalized(self, x_n: Tensor, target_n: Tensor, dead_mask: Tensor | None = None,
                           options: ForwardOptions = DEFAULT_OPTIONS) -> Forward:
        pre = self.pre_acts(x_n)
        codes = self.batch_select(pre) if self.training else self.threshold_select(pre)
        return Forward(self.decode_normalized(codes), codes)

    def threshold_select(self, pre: Tensor) -> Tensor:
        acts = pre.relu()
        if float(self.threshold) < 0:  # never trained: fall back to per-batch selection
            return self.batch_select(pre)
        return acts * (acts > self.threshold)

    def encode_normalized(self, x_n: Tensor, options: ForwardOptions = DEFAULT_OPTIONS) -> Tensor:
        return self.threshold_select(self.pre_acts(x_n))

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        if self._pending_min is None:
            return
        if float(self.threshold) < 0:
            self.threshold.copy_(self._pending_min)
        else:
            d = self.cfg.threshold_decay
            self.threshold.mul_(d).add_((1 - d) * self._pending_min)
        self._pending_min = None

    def to_saelens(self, state):
        theta = float(state["threshold"])
        if theta < 0:
            return NotExpressible("this SAE has no inference threshold yet (never trained): probsae would select per "
                                  "batch, which SAELens cannot express; nothing to export")
        return Export(
            "jumprelu", {"b_enc": state["b_enc"], "threshold": torch.full((self.d_sae,), theta, dtype=torch.float64)},
            notes=[f"BatchTopK's global inference threshold θ={theta:.6g} is the JumpReLU threshold of every latent: "
                   "codes = ReLU(pre)·1[pre > θ], exactly probsae's BatchTopK inference"],
            dropped=[f"k={self.cfg.k} and threshold_decay={self.cfg.threshold_decay}: training-time batch top-k only"])

    def to_sparsify(self, state):
        return Export("topk", {"b_enc": state["b_enc"]}, {"k": self.cfg.k}, changes=[
            f"selection: probsae's BatchTopK inference keeps every ReLU pre-activation above one global threshold "
            f"θ={float(state['threshold']):.6g} (a variable number per token); sparsify keeps exactly k={self.cfg.k} "
            "per token"])

    @classmethod
    def from_saelens(cls, source, cfg, tensors, block):
        if source == "jumprelu":  # our own export: one global threshold, recorded in the provenance block
            theta = state_tensors(tensors, "threshold")["threshold"]
            if not (block and block.get("architecture") == cls.architecture and bool((theta == theta[0]).all())
                    and theta[0] > 0):
                return None  # an ordinary JumpReLU SAE
            threshold, hparams = theta[0].reshape(()), {"k": positive_int(block["config"], "k", "the probsae block's config")}
        else:  # a SAELens BatchTopK training checkpoint
            if cfg.get("rescale_acts_by_decoder_norm"):
                raise ConfigError("batchtopk with rescale_acts_by_decoder_norm has a threshold in rescaled units that "
                                  "probsae cannot fold; save it as a SAELens inference (jumprelu) SAE first")
            threshold = state_tensors(tensors, "topk_threshold")["topk_threshold"].reshape(())
            hparams = {"k": saelens_k(source, cfg)}
        return Imported(hparams, {**standard_encoder(cfg, tensors), "threshold": threshold})
