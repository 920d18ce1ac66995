"""The SAE interface every architecture implements, and its save/load.

An architecture subclasses ``SAE``, declares ``architecture`` (its registry name) and
``config_class`` (its hyperparameters; the constructor takes the config, the sizes and the
seed: ``SAE(cfg, d_in, d_sae, seed=0)``), and implements ``forward_normalized`` (training/eval forward on normalised
inputs, returning a ``Forward``: reconstruction, codes, extra loss terms) and
``encode_normalized`` (deterministic inference codes, dense or sparse). The base class owns the
rest: input checks, normalisation and its inverse, the MSE, the total loss, the ``SAEOutput``,
dense/sparse conversions and save/load. The trainer only talks to this interface: ``forward``
(with ``ForwardOptions``: kernel policy, noise row offset, finiteness check, passed per call,
never set on the SAE), ``on_train_step`` (per-step schedules such as the gate temperature),
``after_optimizer_step`` (constraints such as unit-norm decoder rows), ``init_from_data`` and the
declarations ``graphable`` and ``uses_dead_mask``; interpretation reads ``gate_temperature``.
"""

from __future__ import annotations

import copy
import json
import os
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import InputError, SAEFileError
from ..io import atomic_write_text
from .config import SEED, SAEConfig, check_seed
from .declarations import Export, Imported, NotExpressible, Presentation
from .metadata import SAEMetadata
from .normalization import InputNormalizer, NormStats
from .options import DEFAULT_OPTIONS, ForwardOptions
from .output import Codes, Forward, SAEOutput, densify

WEIGHTS_FILE = "sae.safetensors"
CONFIG_FILE = "config.json"
FORMAT_NAME = "probsae-sae"
FORMAT_VERSION = 1

CONFIG_CHECKSUM_KEY = "probsae_config_crc32"
"""Weight-file metadata entry: the CRC-32 of config.json's content (without WEIGHTS_CHECKSUM_KEY)."""
WEIGHTS_CHECKSUM_KEY = "weights_crc32"
"""config.json entry: the CRC-32 of the weight file (``probsae.tensorfile``)."""


def config_checksum(meta: dict) -> str:
    """CRC-32 of a saved SAE's config.json content, apart from its record of the weights' checksum."""
    body = {k: v for k, v in meta.items() if k != WEIGHTS_CHECKSUM_KEY}
    return f"{zlib.crc32(json.dumps(body, sort_keys=True, separators=(',', ':')).encode()):08x}"


class SAE(nn.Module):
    """Base class: input checking, normalisation, the tied encoder/decoder weights, save/load.

    Weight layout (SAELens-compatible): ``W_enc`` (d_in, d_sae), ``W_dec`` (d_sae, d_in),
    ``b_enc`` (d_sae), ``b_dec`` (d_in). Decoder rows are the feature directions.
    """

    architecture: ClassVar[str] = ""
    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    has_encoder_bias: ClassVar[bool] = True
    #: The training step of this architecture can be captured in a CUDA graph (``TrainConfig.cuda_graph``):
    #: no host sync and no data-dependent shapes in its forward/backward (unless ``uses_dead_mask``).
    graphable: ClassVar[bool] = False
    #: The initialisation ``init = 'auto'`` resolves to (``SAEConfig.init``).
    default_init: ClassVar[str] = "unit"

    def __init__(self, cfg: SAEConfig, d_in: int, d_sae: int, seed: int = SEED):
        """An untrained SAE of hyperparameters ``cfg`` (left as given: ``self.cfg`` is a copy with
        ``init = 'auto'`` resolved) reading ``d_in``-wide activations into ``d_sae`` latents, its
        weights drawn from ``seed`` (a run's seed, ``TrainConfig.seed``; the same seed gives the
        same initial weights). The checks that need the sizes (``cfg.check_sizes``, e.g. k ≤ d_sae)
        are made here."""
        super().__init__()
        cfg.check_sizes(d_in, d_sae)  # cfg itself was validated when it was constructed
        check_seed(seed)
        self.cfg = copy.copy(cfg)  # the SAE's own (validated) config: the one given is left as it is
        if cfg.init == "auto":
            self.cfg.init = self.default_init
        self.d_in, self.d_sae, self.seed = d_in, d_sae, seed
        self.normalizer = InputNormalizer(cfg.normalize, d_in)
        w_dec = init_decoder(self.cfg.init, d_sae, d_in, torch.Generator().manual_seed(seed))
        self.W_dec = nn.Parameter(w_dec)
        # W_enc is stored latent-major: its memory is a (d_sae, d_in) matrix and the (d_in, d_sae)
        # parameter is that matrix's transpose view. The GPU path reads encoder columns as rows (the
        # exact fp32 recompute of the selected codes) and writes grad W_enc row by row with no
        # transpose copy per step; files and state dicts keep the SAELens layout (save copies).
        self.W_enc = nn.Parameter(w_dec.clone().t())
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        if self.has_encoder_bias:
            self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self._last_stats: NormStats | None = None
        self.metadata = SAEMetadata()  # model, hook point, windows, corpus: saved next to the config

    #: How reports and figures show the architecture (each architecture declares its own).
    presentation: ClassVar[Presentation | None] = None
    #: The hyperparameter that sets the sparsity and its symbol in figures (("k", "K"), ("l1_coeff", "λ")):
    #: always part of a sweep member's name, and the tag next to each point of a Pareto plot.
    sparsity: ClassVar[tuple[str, str]] = ("", "")
    #: Other libraries' SAE kinds this architecture reads on import: format → names (SAELens
    #: ``architecture`` values, sparsify ``activation`` values); ``from_<format>`` converts them.
    reads: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: Extra per-token inference outputs the architecture offers besides codes and reconstruction
    #: (name → what it is), computed by ``extra_outputs_normalized`` and served by ``extras``;
    #: e.g. prob_topk's ``gate_probs``. Interpretability code asks for them by name.
    extra_outputs: ClassVar[dict[str, str]] = {}
    #: True for an architecture that predicts another activation from its input (a transcoder):
    #: its rows may be ``[input | target]`` pairs (``split_pair``), and a run of it needs a target
    #: hook point (``DataSpec.target_hook``). False: an autoencoder, whose target is its input.
    predicts_target: ClassVar[bool] = False
    #: Hyperparameters of the synthetic recovery check (``evaluation.recovery``: 64 true features in
    #: 32 dimensions, 3 active per token, 128 latents), on this library's loss scale: a sensible L0.
    toy_hparams: ClassVar[dict[str, Any]] = {}

    # ---- to implement -------------------------------------------------------------------
    def forward_normalized(self, x_n: Tensor, target_n: Tensor, dead_mask: Tensor | None = None,
                           options: ForwardOptions = DEFAULT_OPTIONS) -> Forward:
        """Training/eval forward on normalised inputs ``x_n`` (B, d_in): the reconstruction of
        ``target_n`` (``x_n`` itself for an autoencoder, another activation for a transcoder), the
        codes and the loss terms besides the MSE, which the base class adds. ``dead_mask`` (d_sae,)
        marks the latents that have not fired recently (for auxiliary losses; see
        ``uses_dead_mask``). ``options``: the kernel policy and noise row offset of this call."""
        raise NotImplementedError

    def encode_normalized(self, x_n: Tensor, options: ForwardOptions = DEFAULT_OPTIONS) -> Codes:
        """Deterministic inference codes of normalised inputs: dense (B, d_sae) or (values, indices)."""
        raise NotImplementedError

    # ---- to declare: what the trainer and interpretation need (defaults here) ---------------
    @property
    def uses_dead_mask(self) -> bool:
        """Whether this SAE's training forward reads ``dead_mask`` (an auxiliary loss on dead
        latents): such a step is not captured in a CUDA graph. False unless the architecture says so."""
        return False

    @property
    def gate_temperature(self) -> float | None:
        """The current temperature β of a gated selection (what inference uses, saved with the
        SAE); None for an architecture without a gate temperature."""
        return None

    def extra_outputs_normalized(self, x_n: Tensor) -> dict[str, Tensor]:
        """The ``extra_outputs`` of normalised inputs (B, d_in), each (B, ·)."""
        return {}

    # ---- to declare: other libraries' formats and reports ------------------------------------
    def to_saelens(self, state: dict[str, Tensor]) -> Export | NotExpressible:
        """This SAE in SAELens's format. ``state``: float64 CPU copies of the parameters and buffers."""
        raise NotImplementedError

    def to_sparsify(self, state: dict[str, Tensor]) -> Export | NotExpressible:
        """This SAE as an EleutherAI sparsify coder. ``state`` as for ``to_saelens``."""
        raise NotImplementedError

    @classmethod
    def from_saelens(cls, source: str, cfg: dict[str, Any], tensors: dict[str, Tensor],
                     block: dict[str, Any] | None) -> Imported | None:
        """Read a SAELens SAE of architecture ``source`` (one of ``reads["saelens"]``): its cfg.json,
        float64 tensors and the probsae provenance block if it has one; None declines the file."""
        return None

    @classmethod
    def from_sparsify(cls, source: str, cfg: dict[str, Any], tensors: dict[str, Tensor],
                      block: dict[str, Any] | None) -> Imported | None:
        """Read a sparsify coder of activation ``source`` (one of ``reads["sparsify"]``); tensors
        already in probsae's names and layout (W_enc, b_enc, W_dec, b_dec). None declines it."""
        return None

    @classmethod
    def variant_label(cls, name: str, value: Any) -> str | None:
        """How reports name a member that differs from the defaults in the one hyperparameter
        ``name`` (e.g. prob_topk's ``lambda_mag = 0`` is 'w/o magnitude'); None: no special name."""
        return None

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
    def init_from_data(self, x: Tensor, b_dec_init: str = "geometric_median",
                       finite_check: str = "auto") -> None:
        """Data-dependent initialisation from a raw sample (rows as ``forward`` takes them): fits
        the normaliser and sets b_dec from the normalised reconstruction target. ``finite_check``
        as in ``ForwardOptions`` (the trainer passes its own)."""
        x, target = self.split_pair(x)
        x = self._check(x, finite_check).reshape(-1, self.d_in)
        self.normalizer.fit(x)
        x_n, stats = self.normalizer(x.to(self.W_dec.dtype))
        t_n = x_n if target is None else self.normalize_target(target, stats, finite_check)[0]
        if b_dec_init == "zeros":
            return
        if b_dec_init == "mean":
            self.b_dec.copy_(t_n.mean(0))
        elif b_dec_init == "geometric_median":
            self.b_dec.copy_(geometric_median(t_n))
        else:
            raise InputError(f"unknown b_dec init {b_dec_init!r}; choose geometric_median, mean or zeros")

    # ---- public API ---------------------------------------------------------------------------
    def forward(self, x: Tensor, dead_mask: Tensor | None = None, target: Tensor | None = None,
                options: ForwardOptions = DEFAULT_OPTIONS) -> SAEOutput:
        """Codes, reconstruction and losses of raw activations ``x`` (..., d_in).

        ``target`` (same shape as ``x``, optional): what to reconstruct instead of ``x`` (the output
        side of a transcoder); it is normalised by ``normalize_target`` and the reconstruction is
        returned in its scale by ``denormalize``. Without it, ``split_pair`` says what the target
        is (an architecture that ``predicts_target`` takes ``[input | target]`` rows). The loss is
        the MSE to the target plus the architecture's terms. ``options``: how this call runs
        (kernel policy, noise row offset, finiteness check of the inputs)."""
        if target is None:
            x, target = self.split_pair(x)
        lead = x.shape[:-1]
        x_n, stats = self._normalized(x, options.finite_check)
        t_n, t_stats = (x_n, stats) if target is None else self.normalize_target(target, stats, options.finite_check)
        fwd = self.forward_normalized(x_n, t_n, dead_mask=dead_mask, options=options)
        losses = {"mse": self.mse(fwd.recon, t_n), **fwd.losses}
        values, indices = fwd.codes if isinstance(fwd.codes, tuple) else (None, None)
        out = SAEOutput(
            recon=self.denormalize(fwd.recon, t_stats), loss=sum(losses.values()),  # type: ignore[arg-type]
            losses=losses, recon_normalized=fwd.recon, x_normalized=t_n, top_values=values, top_indices=indices,
            dense_codes=None if values is not None else fwd.codes, aux=fwd.aux, d_sae=self.d_sae)
        if len(lead) != 1:
            out = _reshape_output(out, lead)
        return out

    def split_pair(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """The input and the target of rows given to ``forward`` without a ``target``: ``(x, None)``
        for an autoencoder (it reconstructs ``x``). A transcoder splits ``[input | target]`` rows."""
        return x, None

    def normalize_target(self, target: Tensor, stats: NormStats | None,
                         finite_check: str = "auto") -> tuple[Tensor, NormStats | None]:
        """A reconstruction target (..., d_in) on the working scale, flattened, with the statistics
        that ``denormalize`` maps the reconstruction back with; ``stats``: the input's. Here the
        input's normaliser applied to the target alone; a transcoder overrides it (at inference
        only the input's statistics are known). ``finite_check`` as in ``ForwardOptions``."""
        return self._normalized(target, finite_check)

    def denormalize(self, recon_n: Tensor, stats: NormStats | None) -> Tensor:
        """A reconstruction on the working scale back in the target's raw scale (``stats``: what
        ``normalize_target`` returned, or the input's for ``decode``)."""
        return self.normalizer.inverse(recon_n, stats)

    def encode(self, x: Tensor, options: ForwardOptions = DEFAULT_OPTIONS) -> Tensor:
        """Inference codes (..., d_sae) of raw activations (deterministic; no gate noise).

        Remembers the inputs' normalisation statistics so that ``decode`` of these codes returns
        the reconstruction in the input's scale (as SAELens does for its layer-norm mode)."""
        x_n, lead = self._inference_input(x, options)
        codes = self.encode_normalized(x_n, options)
        dense = densify(*codes, self.d_sae) if isinstance(codes, tuple) else codes
        return dense.reshape(*lead, self.d_sae)

    @torch.no_grad()
    def encode_sparse(self, x: Tensor, options: ForwardOptions = DEFAULT_OPTIONS) -> tuple[Tensor, Tensor]:
        """Inference codes of raw activations as (values, indices), each (..., K), without the dense
        (..., d_sae) matrix for architectures whose codes are sparse. For dense architectures K is
        the largest number of active latents of any token in the batch (shorter rows are padded
        with zero codes at distinct latents), so ``densify(values, indices)`` equals ``encode(x)``."""
        x_n, lead = self._inference_input(x, options)
        codes = self.encode_normalized(x_n, options)
        if isinstance(codes, tuple):
            values, indices = codes
        else:
            k = int((codes != 0).sum(-1).max()) if codes.numel() else 0  # inference only: one host sync
            indices = codes.abs().topk(k, dim=-1, sorted=False).indices
            values = codes.gather(-1, indices)
        return values.reshape(*lead, -1), indices.reshape(*lead, -1)

    @torch.no_grad()
    def extras(self, x: Tensor) -> dict[str, Tensor]:
        """The architecture's ``extra_outputs`` for raw activations (..., d_in), each (..., ·);
        empty for architectures without any."""
        lead = x.shape[:-1]
        x_n, _ = self._normalized(x)
        return {name: t.reshape(*lead, -1) for name, t in self.extra_outputs_normalized(x_n).items()}

    def _normalized(self, x: Tensor, finite_check: str = "auto") -> tuple[Tensor, NormStats | None]:
        """Checked, flattened (B, d_in) raw activations on the working scale, and their statistics."""
        return self.normalizer(self._check(x, finite_check).reshape(-1, self.d_in))

    def _inference_input(self, x: Tensor, options: ForwardOptions) -> tuple[Tensor, tuple[int, ...]]:
        """Normalised raw activations for inference and their leading shape; remembers the
        normalisation statistics for ``decode``."""
        x_n, self._last_stats = self._normalized(x, options.finite_check)
        return x_n, x.shape[:-1]

    def decode(self, codes: Tensor, stats: NormStats | None = None) -> Tensor:
        """Reconstruction in the input's scale. With ``unit`` normalisation this needs the
        statistics of the encoded tokens: passed as ``stats`` or remembered from the last
        ``encode`` call (the batch shape must match). Use ``decode_normalized`` for the SAE's
        working scale (e.g. to decode a single latent's direction)."""
        lead = codes.shape[:-1]
        flat = codes.reshape(-1, self.d_sae).to(self.W_dec.device, self.W_dec.dtype)
        recon_n = self.decode_normalized(flat)
        if self.normalizer.mode == "unit":
            stats = stats if stats is not None else self._last_stats
            if stats is None or stats.norm.shape[0] != flat.shape[0]:
                raise InputError(
                    "decode() with 'unit' normalisation needs the statistics of the tokens these codes "
                    "came from: call encode() on the same batch first, pass stats=, or use decode_normalized()"
                )
        return self.denormalize(recon_n, stats).reshape(*lead, self.d_in)

    def _check(self, x: Tensor, finite_check: str = "auto") -> Tensor:
        """``x`` checked (type, shape, dtype; NaN/inf per ``finite_check``, see ``ForwardOptions``)
        and moved to the SAE's device and dtype."""
        if not isinstance(x, Tensor):
            raise InputError(f"expected a torch.Tensor of activations, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.d_in:
            raise InputError(
                f"expected activations with last dimension d_in={self.d_in}, got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise InputError(f"expected floating-point activations, got dtype {x.dtype}")
        check = finite_check == "always" or (finite_check == "auto" and not (self.training and x.is_cuda))
        if check and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise InputError(f"activations contain {bad} NaN/inf value(s); refusing to encode them")
        return x.to(self.W_dec.device, self.W_dec.dtype)  # inputs on any device: results on the SAE's

    # ---- persistence --------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        out = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "config": self._config_record(),
        }
        if not self.metadata.empty:
            out["metadata"] = self.metadata.to_dict()
        return out

    def _config_record(self) -> dict[str, Any]:
        """config.json's ``"config"``: the sizes, the hyperparameters and the seed, in the order
        probsae has always written them (d_in, d_sae, normalize, seed, init, the architecture's)."""
        hp = asdict(self.cfg)
        return {"d_in": self.d_in, "d_sae": self.d_sae, "normalize": hp.pop("normalize"), "seed": self.seed, **hp}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``sae.safetensors`` and ``config.json`` (hyperparameters and ``metadata``) into the
        directory ``path`` (atomically). An SAE with a NaN/inf weight is refused (``SAEFileError``)
        before anything is written: ``load_sae`` would refuse the file."""
        from ..io import ensure_dir
        from ..tensorfile import nonfinite_names, save_tensors

        state = self.state_dict()
        bad = nonfinite_names(state)
        if bad:
            raise SAEFileError(f"refusing to save the SAE to {path}: weight(s) {', '.join(map(repr, bad))} hold NaN/inf "
                               "values (a diverged or corrupted SAE; load_sae refuses such files)")
        path = ensure_dir(path, "SAE directory")
        meta = json.loads(json.dumps(self.config_dict()))  # as load_sae will read it back
        # each file records the other's checksum (metadata included): a change to either is found on load
        crc = save_tensors(path / WEIGHTS_FILE, state, {CONFIG_CHECKSUM_KEY: config_checksum(meta)})
        atomic_write_text(path / CONFIG_FILE, json.dumps({**meta, WEIGHTS_CHECKSUM_KEY: crc}, indent=2))
        return path

    def extra_repr(self) -> str:
        return f"{self.architecture}: {self.cfg}"


def init_decoder(scheme: str, d_sae: int, d_in: int, gen: torch.Generator) -> Tensor:
    """Initial W_dec (d_sae, d_in) of an ``SAEConfig.init`` scheme: 'orthogonal' (orthonormal
    columns when d_sae ≥ d_in, so rows of norm √(d_in/d_sae)) or 'unit' (Gaussian rows scaled to
    unit norm: random latent directions)."""
    if scheme == "orthogonal":
        return orthogonal(d_sae, d_in, gen)
    if scheme == "unit":
        w = torch.randn(d_sae, d_in, generator=gen)
        return (w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)).contiguous()
    raise InputError(f"unknown init scheme {scheme!r}; choose 'unit' or 'orthogonal'")


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
