"""BatchTopK SAE (Bussmann et al. 2024): keep the K·B largest ReLU pre-activations of the whole
batch (K per token on average). Inference uses one global threshold θ, an exponential moving
average of the smallest kept activation during training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import SAE
from .config import TopKConfig, positive
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

    def __init__(self, cfg: BatchTopKConfig):
        super().__init__(cfg)
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

    def forward_normalized(self, x_n: Tensor, target_n: Tensor, dead_mask: Tensor | None = None) -> Forward:
        pre = self.pre_acts(x_n)
        codes = self.batch_select(pre) if self.training else self.threshold_select(pre)
        return Forward(self.decode_normalized(codes), codes)

    def threshold_select(self, pre: Tensor) -> Tensor:
        acts = pre.relu()
        if float(self.threshold) < 0:  # never trained: fall back to per-batch selection
            return self.batch_select(pre)
        return acts * (acts > self.threshold)

    def encode_normalized(self, x_n: Tensor) -> Tensor:
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
