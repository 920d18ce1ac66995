"""SAELens format: a directory with ``sae_weights.safetensors`` and ``cfg.json`` (SAELens ≥ 6
layout: top-level ``architecture``, ``d_in``, ``d_sae``, ``dtype``, ``device``,
``apply_b_dec_to_input``, ``normalize_activations``, ``reshape_activations``, per-architecture
fields such as ``k``/``rescale_acts_by_decoder_norm``, and a ``metadata`` dict with
``sae_lens_version``, ``model_name``, ``hook_name`` …). Pre-6 readers' top-level keys
(``model_name``, ``hook_name``, ``hook_layer``, ``activation_fn_kwargs`` …) are written too.

Weights use SAELens's names and layout, which probsae shares: ``W_enc`` (d_in, d_sae),
``W_dec`` (d_sae, d_in), ``b_enc``, ``b_dec``; gated adds ``b_gate``, ``r_mag``, ``b_mag``;
jumprelu adds ``threshold`` (θ itself, probsae stores log θ).

Architecture map: each architecture module declares its own (``to_saelens``, and ``reads`` +
``from_saelens`` for import; see ``probsae.saes.declarations``); docs/FORMATS.md tabulates them.
Import picks the architecture named by the file's probsae provenance block first, then every
registered architecture that reads the file's SAELens architecture, in registry order.

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
from ..saes.declarations import check_flags, positive_int
from ._common import (
    BLOCK_KEY, ExportReport, block_scale, exported_core, expressible, fold_input_scale, load_imported, malformed_files_are_errors,
    provenance, provenance_block, read_json, read_safetensors, read_with, readable, refuse_or_allow, unit_to_layernorm_factor,
    working_state, write_safetensors,
)

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"
FLAGS = ("apply_b_dec_to_input", "rescale_acts_by_decoder_norm", "finetuning_scaling_factor")
"""The true/false fields of a SAELens cfg.json that an import reads."""
SAELENS_CFG_VERSION = "6.0.0"  # marks the v6 cfg.json layout (SAELens reads older layouts differently)


def saelens_hook_name(hook: str | None) -> str | None:
    """probsae hook point → TransformerLens/SAELens hook name: 'resid_post.8' →
    'blocks.8.hook_resid_post', 'resid_pre.8' → 'blocks.8.hook_resid_pre' (likewise resid_mid and
    mlp_out), 'module:x.y' → 'x.y'; others (mlp_in.L: TransformerLens folds ln2's affine into the MLP
    by default, so no hook holds it) are written as given."""
    if not hook:
        return None
    hook = str(hook)
    for kind in ("resid_pre", "resid_post", "resid_mid", "mlp_out"):
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
    export = expressible(sae.to_saelens(st), "SAELens", arch)
    refuse_or_allow("SAELens", arch, export.changes, allow_lossy)
    out: dict[str, torch.Tensor] = {**exported_core(st, export), **export.tensors}
    extra_cfg, target = export.config, export.target
    changes, dropped, notes = export.changes, export.dropped, list(export.notes)

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


@malformed_files_are_errors
def import_saelens(path: str | Path):
    """Load a SAELens SAE directory (``cfg.json`` + ``sae_weights.safetensors``) as a probsae SAE
    with the same inference behaviour, or raise ``ConfigError``/``SAEFileError`` naming what
    probsae cannot represent (hook_z reshaping, fine-tuning scaling factors, un-folded
    normalisation scales, other architectures) or what is wrong with the files (non-float or
    NaN/inf weights, tensors the SAE's architecture does not define, shapes that do not match
    d_in/d_sae, malformed cfg.json fields)."""
    path = Path(path)
    cfg = read_json(path / CONFIG_FILE)
    meta = cfg.get("metadata") or {}
    block = provenance_block(meta)
    arch = cfg.get("architecture") or "standard"
    act = cfg.get("activation_fn") or cfg.get("activation_fn_str")
    if arch == "standard" and act == "topk":  # pre-6 TopK configs
        arch = "topk"
    importable = readable("saelens")
    if arch not in importable:
        raise ConfigError(f"{path}: SAELens architecture {arch!r} has no probsae equivalent; importable: {importable}")
    d_in, d_sae = positive_int(cfg, "d_in", path / CONFIG_FILE), positive_int(cfg, "d_sae", path / CONFIG_FILE)
    check_flags(cfg, FLAGS, path / CONFIG_FILE)
    tensors = {k: v.double() for k, v in read_safetensors(path / WEIGHTS_FILE).items()}
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
    tensors.pop("finetuning_scaling_factor", None)  # not applied: cfg.json does not ask for it
    for key in ("W_enc", "W_dec", "b_dec"):
        if key not in tensors:
            raise SAEFileError(f"{path / WEIGHTS_FILE} has no {key!r}")
    ours, imported = read_with("saelens", arch, cfg, tensors, block, path)

    norm = cfg.get("normalize_activations") or "none"
    if norm == "none":
        normalize, c = "none", 1.0
        if block and block.get("config", {}).get("normalize") == "scalar" and "scale" in block:
            normalize, c = "scalar", 1.0 / block_scale(block, path / CONFIG_FILE)  # restore the folded probsae scalar
    elif norm == "layer_norm":
        normalize, c = "unit", unit_to_layernorm_factor(d_in)
    elif norm == "expected_average_only_in":
        raise ConfigError(f"{path}: normalize_activations='expected_average_only_in' with the scaling factor kept "
                          "outside the weights; fold it first (SAELens: sae.fold_activation_norm_scaling_factor(f))")
    else:
        raise ConfigError(f"{path}: normalize_activations={norm!r} has no probsae equivalent "
                          "(probsae offers unit = SAELens layer_norm up to eps, scalar, none)")
    return load_imported(ours, d_in, d_sae, normalize, c, imported, block, path)
