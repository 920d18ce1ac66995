"""The SAE interface every architecture implements, and its save/load.

An architecture subclasses ``SAE``, declares ``architecture`` (its registry name) and
``config_class``, and implements ``forward_normalized`` (training/eval forward on normalised
inputs) and ``encode_normalized`` (deterministic inference codes). The trainer only talks to this
interface: ``forward``, ``on_train_step`` (per-step schedules such as the gate temperature),
``after_optimizer_step`` (constraints such as unit-norm decoder rows) and ``init_from_data``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..io import atomic_write, atomic_write_text
from .config import SAEConfig
from .metadata import SAEMetadata
from .normalization import InputNormalizer, NormStats
from .output import SAEOutput

WEIGHTS_FILE = "sae.safetensors"
CONFIG_FILE = "config.json"
FORMAT_NAME = "probsae-sae"
FORMAT_VERSION = 1


class SAE(nn.Module):
    """Base class: input checking, normalisation, the tied encoder/decoder weights, save/load.

    Weight layout (SAELens-compatible): ``W_enc`` (d_in, d_sae), ``W_dec`` (d_sae, d_in),
    ``b_enc`` (d_sae), ``b_dec`` (d_in). Decoder rows are the feature directions.
    """

    architecture: ClassVar[str] = ""
    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    has_encoder_bias: ClassVar[bool] = True

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.d_in, self.d_sae = cfg.d_in, cfg.d_sae
        self.normalizer = InputNormalizer(cfg.normalize, cfg.d_in)
        gen = torch.Generator().manual_seed(cfg.seed)
        w_dec = orthogonal(cfg.d_sae, cfg.d_in, gen)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.t().clone().contiguous())
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        if self.has_encoder_bias:
            self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self._last_stats: NormStats | None = None
        self.metadata = SAEMetadata()  # model, hook point, windows, corpus: saved next to the config

    # ---- to implement -------------------------------------------------------------------
    def forward_normalized(self, x_n: Tensor, dead_mask: Tensor | None = None) -> SAEOutput:
        """Forward on normalised inputs (B, d_in): codes, normalised reconstruction, losses.
        Returns an SAEOutput whose ``recon``/``x_normalized`` the base class fills in."""
        raise NotImplementedError

    def encode_normalized(self, x_n: Tensor) -> Tensor:
        """Deterministic inference codes (B, d_sae) of normalised inputs."""
        raise NotImplementedError

    # ---- shared pieces ----------------------------------------------------------------------
    def pre_acts(self, x_n: Tensor) -> Tensor:
        """W_enc (x − b_dec) + b_enc."""
        pre = (x_n - self.b_dec) @ self.W_enc
        return pre + self.b_enc if self.has_encoder_bias else pre

    def decode_normalized(self, codes: Tensor) -> Tensor:
        """W_dec codes + b_dec, on the normalised scale."""
        return codes @ self.W_dec + self.b_dec

    def mse(self, recon_n: Tensor, x_n: Tensor) -> Tensor:
        """‖x − x̂‖² summed over the hidden dimension, averaged over tokens."""
        return (recon_n - x_n).pow(2).sum(-1).mean()

    def on_train_step(self, step: int, total_steps: int, warmup_steps: int) -> dict[str, float]:
        """Called by the trainer before each step; returns scalars to log (e.g. the temperature)."""
        return {}

    def after_optimizer_step(self) -> None:
        """Called by the trainer after each optimiser step (constraints, running statistics)."""

    @torch.no_grad()
    def init_from_data(self, x: Tensor, b_dec_init: str = "geometric_median") -> None:
        """Data-dependent initialisation from a raw sample: fits the normaliser and sets b_dec."""
        x = self._check(x).reshape(-1, self.d_in)
        self.normalizer.fit(x)
        x_n, _ = self.normalizer(x.to(self.W_dec.dtype))
        if b_dec_init == "zeros":
            return
        if b_dec_init == "mean":
            self.b_dec.copy_(x_n.mean(0))
        elif b_dec_init == "geometric_median":
            self.b_dec.copy_(geometric_median(x_n))
        else:
            raise InputError(f"unknown b_dec init {b_dec_init!r}; choose geometric_median, mean or zeros")

    # ---- public API ---------------------------------------------------------------------------
    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> SAEOutput:
        lead = x.shape[:-1]
        x = self._check(x).reshape(-1, self.d_in)
        x_n, stats = self.normalizer(x)
        out = self.forward_normalized(x_n, dead_mask=dead_mask)
        out.loss = sum(out.losses.values())  # type: ignore[assignment]
        out.x_normalized = x_n
        out.recon = self.normalizer.inverse(out.recon_normalized, stats)
        out.d_sae = self.d_sae
        if len(lead) != 1:
            out = _reshape_output(out, lead)
        return out

    def encode(self, x: Tensor) -> Tensor:
        """Inference codes (..., d_sae) of raw activations (deterministic; no gate noise).

        Remembers the inputs' normalisation statistics so that ``decode`` of these codes returns
        the reconstruction in the input's scale (as SAELens does for its layer-norm mode)."""
        x_n, lead = self._inference_input(x)
        return self.encode_normalized(x_n).reshape(*lead, self.d_sae)

    def _inference_input(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Checked, flattened, normalised raw activations for inference, and their leading shape;
        remembers the normalisation statistics for ``decode``."""
        lead = x.shape[:-1]
        x_n, self._last_stats = self.normalizer(self._check(x).reshape(-1, self.d_in))
        return x_n, lead

    def densify(self, values: Tensor, indices: Tensor) -> Tensor:
        """(B, K) selected codes and their latent indices → dense (B, d_sae) codes."""
        return values.new_zeros(values.shape[0], self.d_sae).scatter(-1, indices, values)

    def decode(self, codes: Tensor, stats: NormStats | None = None) -> Tensor:
        """Reconstruction in the input's scale. With ``unit`` normalisation this needs the
        statistics of the encoded tokens: passed as ``stats`` or remembered from the last
        ``encode`` call (the batch shape must match). Use ``decode_normalized`` for the SAE's
        working scale (e.g. to decode a single latent's direction)."""
        lead = codes.shape[:-1]
        flat = codes.reshape(-1, self.d_sae).to(self.W_dec.dtype)
        recon_n = self.decode_normalized(flat)
        if self.normalizer.mode == "unit":
            stats = stats if stats is not None else self._last_stats
            if stats is None or stats.norm.shape[0] != flat.shape[0]:
                raise InputError(
                    "decode() with 'unit' normalisation needs the statistics of the tokens these codes "
                    "came from: call encode() on the same batch first, pass stats=, or use decode_normalized()"
                )
        return self.normalizer.inverse(recon_n, stats).reshape(*lead, self.d_in)

    def _check(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise InputError(f"expected a torch.Tensor of activations, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.d_in:
            raise InputError(
                f"expected activations with last dimension d_in={self.d_in}, got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise InputError(f"expected floating-point activations, got dtype {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise InputError(f"activations contain {bad} NaN/inf value(s); refusing to encode them")
        return x.to(self.W_dec.dtype)

    # ---- persistence --------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        out = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "config": asdict(self.cfg),
        }
        if not self.metadata.empty:
            out["metadata"] = self.metadata.to_dict()
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``sae.safetensors`` and ``config.json`` (hyperparameters and ``metadata``) into the
        directory ``path`` (atomically)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write(path / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp)))
        text = json.dumps(self.config_dict(), indent=2)
        atomic_write_text(path / CONFIG_FILE, text)
        return path

    def extra_repr(self) -> str:
        return f"{self.architecture}: {self.cfg}"


def orthogonal(rows: int, cols: int, gen: torch.Generator) -> Tensor:
    """A (rows, cols) matrix with orthonormal columns (rows ≥ cols) or rows (rows < cols)."""
    a = torch.randn(max(rows, cols), min(rows, cols), generator=gen)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return (q if rows >= cols else q.t()).contiguous()


def geometric_median(x: Tensor, iters: int = 50, tol: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm on the rows of ``x`` (float64 internally)."""
    x64 = x.double()
    med = x64.mean(0)
    for _ in range(iters):
        w = 1.0 / (x64 - med).norm(dim=1).clamp_min(1e-12)
        new = (w[:, None] * x64).sum(0) / w.sum()
        if (new - med).norm() < tol * max(1.0, float(med.norm())):
            med = new
            break
        med = new
    return med.to(x.dtype)


def _reshape_output(out: SAEOutput, lead: tuple[int, ...]) -> SAEOutput:
    d_sae = out.d_sae

    def r(t: Tensor | None, last: int) -> Tensor | None:
        return None if t is None else t.reshape(*lead, last)

    out.recon = r(out.recon, out.recon.shape[-1])
    out.recon_normalized = r(out.recon_normalized, out.recon_normalized.shape[-1])
    out.x_normalized = r(out.x_normalized, out.x_normalized.shape[-1])
    if out.top_values is not None:
        out.top_values = r(out.top_values, out.top_values.shape[-1])
        out.top_indices = r(out.top_indices, out.top_indices.shape[-1])
    if out.dense_codes is not None:
        out.dense_codes = r(out.dense_codes, d_sae)
    return out
