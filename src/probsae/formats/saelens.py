"""SAELens format: a directory with ``sae_weights.safetensors`` and ``cfg.json`` (SAELens ≥ 6
layout: top-level ``architecture``, ``d_in``, ``d_sae``, ``dtype``, ``device``,
``apply_b_dec_to_input``, ``normalize_activations``, ``reshape_activations``, per-architecture
fields such as ``k``/``rescale_acts_by_decoder_norm``, and a ``metadata`` dict with
``sae_lens_version``, ``model_name``, ``hook_name`` …). Pre-6 readers' top-level keys
(``model_name``, ``hook_name``, ``hook_layer``, ``activation_fn_kwargs`` …) are written too.

Weights use SAELens's names and layout, which probsae shares: ``W_enc`` (d_in, d_sae),
``W_dec`` (d_sae, d_in), ``b_enc``, ``b_dec``; gated adds ``b_gate``, ``r_mag``, ``b_mag``;
jumprelu adds ``threshold`` (θ itself, probsae stores log θ).

Architecture map (export; import is the inverse):

============  ==========  =====================================================================
probsae       SAELens     inference
============  ==========  =====================================================================
relu          standard    identical
topk          topk        identical (``rescale_acts_by_decoder_norm: false``)
abstopk       abstopk     identical (needs a SAELens with ``abstopk``, e.g. 6.54)
vsae_topk     topk        identical (inference uses μ only; W_var/b_var are training-only)
gated         gated       identical
jumprelu      jumprelu    identical (threshold = exp(log_threshold))
batchtopk     jumprelu    identical: one global threshold θ copied to every latent (as SAELens
                          does for its own BatchTopK)
prob_topk     abstopk     LOSSY (``allow_lossy``): the gate σ(LayerNorm(a)/β) + λ|a| that picks the
                          K latents is dropped; SAELens picks the K largest |a| instead
============  ==========  =====================================================================

Normalisation: 'none' → "none"; 'scalar' → folded into the weights, "none" (exact);
'unit' → "layer_norm" with the constant sqrt(d_in − 1) folded into the weights: SAELens's
layer_norm is (x − mean)/(std + 1e-5) with the unbiased std = ‖x − mean‖/sqrt(d_in − 1), and its
output is x̂·std + mean, so the exported SAE computes probsae's codes and reconstructions except
that its input is scaled by ‖c‖/(‖c‖ + 1e-5·sqrt(d_in − 1)) (c = x − mean): a relative change of
1e-5/std(x) per token, below float32 noise for real activations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, SAEFileError
from ..io import atomic_write_text, ensure_dir
from ._common import (
    BLOCK_KEY, ExportReport, build_imported, fold_input_scale, load_into, malformed_files_are_errors, positive_int,
    provenance, provenance_block, read_json, read_safetensors, refuse_or_allow, unit_to_layernorm_factor, working_state,
    write_safetensors,
)

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"
SAELENS_CFG_VERSION = "6.0.0"  # marks the v6 cfg.json layout (SAELens reads older layouts differently)

IMPORTABLE = ("standard", "topk", "abstopk", "gated", "jumprelu", "batchtopk")


def saelens_hook_name(hook: str | None) -> str | None:
    """probsae hook point → TransformerLens/SAELens hook name: 'resid_post.8' →
    'blocks.8.hook_resid_post', 'resid_pre.8' → 'blocks.8.hook_resid_pre', 'module:x.y' → 'x.y'."""
    if not hook:
        return None
    hook = str(hook)
    for kind in ("resid_pre", "resid_post"):
        if hook.startswith(kind + ".") and hook[len(kind) + 1 :].lstrip("-").isdigit():
            return f"blocks.{int(hook[len(kind) + 1:])}.hook_{kind}"
    return hook.removeprefix("module:")


def _hook_layer(hook_name: str | None) -> int | None:
    if hook_name and hook_name.startswith("blocks."):
        part = hook_name.split(".")[1]
        return int(part) if part.isdigit() else None
    return None


def export_saelens(sae, out_dir: str | Path, *, hook_name: str | None = None, model_name: str | None = None,
                   allow_lossy: bool = False, metadata: dict[str, Any] | None = None,
                   dtype: torch.dtype = torch.float32) -> ExportReport:
    """Write ``sae`` as a SAELens SAE into ``out_dir`` (see the module docstring for the mapping).

    ``hook_name``: a SAELens hook name or a probsae hook point ('resid_post.8' is translated).
    Raises ``LossyExportError`` when inference would change, unless ``allow_lossy``. Always writes
    ``PROBSAE_EXPORT.md`` listing what was not exported and why."""
    arch = sae.architecture
    st = working_state(sae)
    out: dict[str, torch.Tensor] = {"W_enc": st["W_enc"], "W_dec": st["W_dec"], "b_dec": st["b_dec"]}
    extra_cfg: dict[str, Any] = {}
    changes: list[str] = []
    dropped: list[str] = []
    notes: list[str] = []
    zeros = torch.zeros(sae.d_sae, dtype=torch.float64)
    if arch == "relu":
        target = "standard"
        out["b_enc"] = st["b_enc"]
        dropped.append(f"l1_coeff={sae.cfg.l1_coeff} (training-only)")
    elif arch in ("topk", "abstopk", "vsae_topk"):
        target = "abstopk" if arch == "abstopk" else "topk"
        out["b_enc"] = st["b_enc"]
        extra_cfg.update(k=sae.cfg.k, rescale_acts_by_decoder_norm=False)
        if arch == "vsae_topk":
            dropped.append("the variance head (W_var, b_var) and kl_coeff: training-only (inference codes use μ, "
                           "i.e. TopK of ReLU(W_enc(x − b_dec) + b_enc), which SAELens 'topk' computes)")
        else:
            dropped.append(f"aux_k={sae.cfg.aux_k}, aux_coeff={sae.cfg.aux_coeff} (training-only)")
        if arch == "abstopk":
            notes.append("needs a SAELens version that registers the 'abstopk' architecture (6.54.12 does)")
    elif arch == "gated":
        target = "gated"
        for k in ("b_gate", "r_mag", "b_mag"):
            out[k] = st[k]
        dropped.append(f"l1_coeff={sae.cfg.l1_coeff} (training-only)")
    elif arch == "jumprelu":
        target = "jumprelu"
        out["b_enc"] = st["b_enc"]
        out["threshold"] = st["log_threshold"].exp()
        dropped.append(f"l0_coeff={sae.cfg.l0_coeff}, bandwidth={sae.cfg.bandwidth} (training-only)")
    elif arch == "batchtopk":
        theta = float(st["threshold"])
        if theta < 0:
            raise ConfigError("this BatchTopK SAE has no inference threshold yet (never trained): nothing to export; "
                              "probsae would select per batch, which SAELens cannot express")
        target = "jumprelu"
        out["b_enc"] = st["b_enc"]
        out["threshold"] = torch.full((sae.d_sae,), theta, dtype=torch.float64)
        notes.append(f"BatchTopK's global inference threshold θ={theta:.6g} is the JumpReLU threshold of every "
                     "latent: codes = ReLU(pre)·1[pre > θ], exactly probsae's BatchTopK inference")
        dropped.append(f"k={sae.cfg.k} and threshold_decay={sae.cfg.threshold_decay}: training-time batch top-k only")
    elif arch == "prob_topk":
        target = "abstopk"
        out["b_enc"] = zeros  # the paper's encoder has no bias
        extra_cfg.update(k=sae.cfg.k, rescale_acts_by_decoder_norm=False)
        changes.append(
            "latent selection: probsae keeps the K latents with the largest gate score "
            "σ(LayerNorm(a)/β) + λ_mag·|a| (a = W_enc(x − b_dec)); SAELens 'abstopk' keeps the K latents "
            "with the largest |a|. The codes are the signed a at the selected latents in both, so tokens "
            "whose selection differs get different codes and reconstructions")
        dropped.append("the gate: LayerNorm affine parameters ln_weight/ln_bias" if sae.cfg.layernorm else "the gate")
        dropped.append(f"gate temperature β={float(st['beta']):.6g}, lambda_mag={sae.cfg.lambda_mag}, "
                       f"gate={sae.cfg.gate!r}, straight_through={sae.cfg.straight_through}")
    else:
        raise ConfigError(f"no SAELens mapping for probsae architecture {arch!r}")
    refuse_or_allow("SAELens", arch, changes, allow_lossy)

    norm = sae.cfg.normalize
    if norm == "unit":
        c = unit_to_layernorm_factor(sae.d_in)
        out = fold_input_scale(out, c)
        normalize = "layer_norm"
        notes.append(
            f"probsae 'unit' normalisation ((x − mean)/‖x − mean‖) is SAELens 'layer_norm' ((x − mean)/(std + 1e-5), "
            f"unbiased std) divided by sqrt(d_in − 1) = {c:.6g}; that constant is folded into W_enc, W_dec and b_dec. "
            "Exact except SAELens's eps: its input is scaled by ‖x − mean‖/(‖x − mean‖ + 1e-5·sqrt(d_in − 1)), "
            "a relative change of 1e-5/std(x). SAELens returns reconstructions in the input's scale, as probsae does")
    elif norm == "scalar":
        scale = float(st["normalizer.scale"])
        out = fold_input_scale(out, 1.0 / scale)
        normalize = "none"
        notes.append(f"probsae 'scalar' normalisation (x·{scale:.6g}) is folded into the weights (exact); the "
                     "SAELens SAE reads raw activations")
    else:
        normalize = "none"

    hook = saelens_hook_name(hook_name)
    meta = {"sae_lens_version": SAELENS_CFG_VERSION, "sae_lens_training_version": None,
            "model_name": model_name, "hook_name": hook, "hook_head_index": None,
            "exported_by": "probsae", BLOCK_KEY: provenance(sae)}
    meta.update(metadata or {})
    cfg: dict[str, Any] = {
        "architecture": target, "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": str(dtype).removeprefix("torch."),
        "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": normalize,
        "reshape_activations": "none", **extra_cfg, "metadata": meta,
        # pre-6 readers look for these at the top level
        "model_name": model_name, "hook_name": hook, "hook_layer": _hook_layer(hook), "hook_head_index": None,
        "finetuning_scaling_factor": False,
    }
    if "k" in extra_cfg:
        cfg["activation_fn_kwargs"] = {"k": extra_cfg["k"]}
    path = ensure_dir(out_dir, "export directory")
    write_safetensors(path / WEIGHTS_FILE, {k: v.to(dtype) for k, v in out.items()})
    text = json.dumps(cfg, indent=2)
    atomic_write_text(path / CONFIG_FILE, text)
    report = ExportReport(path, "saelens", arch, target, exact=not changes, changes=changes, dropped=dropped, notes=notes)
    report.write_notes(sae)
    return report


_SOURCE_TENSORS = {
    "standard": {"W_enc", "b_enc", "W_dec", "b_dec"}, "topk": {"W_enc", "b_enc", "W_dec", "b_dec"},
    "abstopk": {"W_enc", "b_enc", "W_dec", "b_dec"}, "jumprelu": {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"},
    "gated": {"W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"},
    "batchtopk": {"W_enc", "b_enc", "W_dec", "b_dec", "topk_threshold"},
}
_OPTIONAL_TENSORS = {"scaling_factor", "finetuning_scaling_factor"}


@malformed_files_are_errors
def import_saelens(path: str | Path):
    """Load a SAELens SAE directory (``cfg.json`` + ``sae_weights.safetensors``) as a probsae SAE
    with the same inference behaviour, or raise ``ConfigError``/``SAEFileError`` naming what
    probsae cannot represent (hook_z reshaping, fine-tuning scaling factors, un-folded
    normalisation scales, other architectures) or what is wrong with the files (non-float or
    NaN/inf weights, tensors the architecture does not have, shapes that do not match d_in/d_sae)."""
    path = Path(path)
    cfg = read_json(path / CONFIG_FILE)
    meta = cfg.get("metadata") or {}
    block = provenance_block(meta)
    arch = cfg.get("architecture") or "standard"
    act = cfg.get("activation_fn") or cfg.get("activation_fn_str")
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if arch == "standard" and act == "topk":  # pre-6 TopK configs
        arch = "topk"
    if arch not in IMPORTABLE:
        raise ConfigError(f"{path}: SAELens architecture {arch!r} has no probsae equivalent; importable: {IMPORTABLE}")
    d_in, d_sae = positive_int(cfg, "d_in", path / CONFIG_FILE), positive_int(cfg, "d_sae", path / CONFIG_FILE)
    allowed = _SOURCE_TENSORS[arch] | _OPTIONAL_TENSORS
    tensors = {k: v.double() for k, v in read_safetensors(path / WEIGHTS_FILE, allowed).items()}
    for key, shape in (("W_enc", (d_in, d_sae)), ("W_dec", (d_sae, d_in))):
        if key in tensors and tuple(tensors[key].shape) != shape:
            raise SAEFileError(f"{path / WEIGHTS_FILE}: {key} has shape {tuple(tensors[key].shape)}, but cfg.json's "
                               f"d_in={d_in}, d_sae={d_sae} imply {shape}")
    if (cfg.get("reshape_activations") or "none") != "none":
        raise ConfigError(f"{path}: reshape_activations={cfg['reshape_activations']!r} (hook_z SAEs) is not supported: "
                          "probsae SAEs read flat (…, d_in) activations")
    if "scaling_factor" in tensors and not torch.allclose(tensors["scaling_factor"], torch.ones(1, dtype=torch.float64)):
        raise ConfigError(f"{path}: a fine-tuning scaling factor is not supported")
    tensors.pop("scaling_factor", None)
    if cfg.get("finetuning_scaling_factor") and "finetuning_scaling_factor" in tensors:
        raise ConfigError(f"{path}: a fine-tuning scaling factor is not supported")
    for key in ("W_enc", "W_dec", "b_dec"):
        if key not in tensors:
            raise SAEFileError(f"{path / WEIGHTS_FILE} has no {key!r}")

    hparams: dict[str, Any] = {}
    if arch in ("topk", "abstopk", "batchtopk"):
        hparams["k"] = positive_int({"k": cfg.get("k", kwargs.get("k") if isinstance(kwargs, dict) else None)}, "k",
                                    path / CONFIG_FILE)
        if cfg.get("rescale_acts_by_decoder_norm"):  # fold the decoder norms into the encoder (exact)
            n = tensors["W_dec"].norm(dim=1)
            tensors["W_enc"] = tensors["W_enc"] * n
            if "b_enc" in tensors:
                tensors["b_enc"] = tensors["b_enc"] * n
            tensors["W_dec"] = tensors["W_dec"] / n[:, None]
            if arch == "batchtopk":
                raise ConfigError(f"{path}: batchtopk with rescale_acts_by_decoder_norm has a threshold in rescaled "
                                  "units that probsae cannot fold; save it as a SAELens inference (jumprelu) SAE first")

    if not cfg.get("apply_b_dec_to_input", True):
        # SAELens then encodes x without subtracting b_dec; probsae always subtracts it: fold it
        b = tensors["b_dec"]
        if arch == "gated":
            tensors["b_gate"] = tensors["b_gate"] + b @ tensors["W_enc"]
            tensors["b_mag"] = tensors["b_mag"] + b @ (tensors["W_enc"] * tensors["r_mag"].exp())
        else:
            tensors["b_enc"] = tensors["b_enc"] + b @ tensors["W_enc"]

    norm = cfg.get("normalize_activations") or "none"
    if norm == "none":
        normalize, c = "none", 1.0
        if block and block.get("config", {}).get("normalize") == "scalar" and "scale" in block:
            normalize, c = "scalar", 1.0 / float(block["scale"])  # restore the folded probsae scalar
    elif norm == "layer_norm":
        normalize, c = "unit", unit_to_layernorm_factor(d_in)
    elif norm == "expected_average_only_in":
        raise ConfigError(f"{path}: normalize_activations='expected_average_only_in' with the scaling factor kept "
                          "outside the weights; fold it first (SAELens: sae.fold_activation_norm_scaling_factor(f))")
    else:
        raise ConfigError(f"{path}: normalize_activations={norm!r} has no probsae equivalent "
                          "(probsae offers unit = SAELens layer_norm up to eps, scalar, none)")
    tensors = fold_input_scale(tensors, 1.0 / c)  # back to the working scale

    if arch == "standard":
        ours, names = "relu", ("W_enc", "b_enc", "W_dec", "b_dec")
    elif arch in ("topk", "abstopk"):
        ours, names = arch, ("W_enc", "b_enc", "W_dec", "b_dec")
    elif arch == "gated":
        ours, names = "gated", ("W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec")
    elif arch == "jumprelu":
        ours, names = "jumprelu", ("W_enc", "b_enc", "W_dec", "b_dec")
        theta = tensors.pop("threshold")
        # θ ≤ 0 behaves like θ = 0 in SAELens (ReLU(pre)·1[pre > θ]); log 0 = -inf keeps that exactly
        tensors["log_threshold"] = theta.clamp_min(0).log()
        if block and block.get("architecture") == "batchtopk" and bool((theta == theta[0]).all()) and theta[0] > 0:
            ours = "batchtopk"
            tensors["threshold"] = theta[0].reshape(())
            tensors.pop("log_threshold")
            hparams["k"] = int(block["config"]["k"])
    else:  # batchtopk training checkpoint
        ours, names = "batchtopk", ("W_enc", "b_enc", "W_dec", "b_dec")
        tensors["threshold"] = tensors.pop("topk_threshold").reshape(())
    sae = build_imported(ours, d_in, d_sae, normalize, hparams, block)
    state = {k: tensors[k] for k in names}
    for k in ("log_threshold", "threshold"):
        if k in tensors and k in sae.state_dict():
            state[k] = tensors[k]
    state["normalizer.scale"] = torch.tensor(1.0 / c if normalize == "scalar" else 1.0)
    state["normalizer.fitted"] = torch.tensor(normalize == "scalar")
    for k in sae.state_dict():
        if k not in state and k.startswith("normalizer."):
            state[k] = sae.state_dict()[k]
    load_into(sae, state, path)
    return sae
