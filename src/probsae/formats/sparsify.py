"""EleutherAI sparsify format: one directory per hook point, each with ``sae.safetensors`` and
``cfg.json``.

Weights (sparsify's ``SparseCoder``): ``encoder.weight`` (d_sae, d_in) — the transpose of
probsae's ``W_enc`` —, ``encoder.bias`` (d_sae), ``W_dec`` (d_sae, d_in), ``b_dec`` (d_in).
``cfg.json``: ``activation`` ('topk'), ``k``, ``num_latents`` (and ``expansion_factor``),
``normalize_decoder``, ``multi_topk``, ``skip_connection``, ``transcode`` and ``d_in``; readers
drop keys they do not know (the ``probsae`` provenance block). A multi-hook-point run is a folder
of such directories named after the hook points (``layers.8``, ``h.8`` …).

sparsify's inference is TopK of ReLU(encoder(x − b_dec)) then ``W_dec`` + ``b_dec`` on raw
activations, with no input normalisation. Exact exports: probsae ``topk`` and ``vsae_topk``
(inference uses μ) with normalisation 'none' or 'scalar' (the scale is folded into the weights).
Lossy exports (``allow_lossy``): ``abstopk``/``prob_topk`` (sparsify keeps the K largest signed
pre-activations and zeroes negative codes), ``batchtopk`` (per-token top-k instead of the global
threshold), and 'unit' normalisation (which sparsify cannot express: the weights are written on
probsae's working scale and the user must normalise inputs and de-normalise outputs).
ReLU, Gated and JumpReLU SAEs have no sparsify form at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, SAEFileError
from ..io import atomic_write_text
from ._common import (
    BLOCK_KEY, ExportReport, build_imported, fold_input_scale, load_into, provenance, read_json,
    read_safetensors, refuse_or_allow, working_state, write_safetensors,
)

WEIGHTS_FILE = "sae.safetensors"
CONFIG_FILE = "cfg.json"


def sparsify_hookpoint(hook: str | None, model_name: str | None = None) -> str | None:
    """A default sparsify hook-point name (a module path of the HF model) for a probsae hook
    point: 'resid_post.L' (output of block L) → 'layers.L' ('h.L' for GPT-2), 'resid_pre.L' →
    the previous block's output for L > 0, 'module:x.y' → 'x.y'; None when there is none."""
    if not hook:
        return None
    hook = str(hook)
    if hook.startswith("module:"):
        return hook[len("module:"):]
    blocks = "h" if model_name and "gpt2" in str(model_name).lower() else "layers"
    for kind, shift in (("resid_post", 0), ("resid_pre", -1)):
        if hook.startswith(kind + "."):
            rest = hook[len(kind) + 1 :]
            if rest.isdigit() and int(rest) + shift >= 0:
                return f"{blocks}.{int(rest) + shift}"
            return None
    return hook


def export_sparsify(sae, out_dir: str | Path, *, hookpoint: str | None = None, allow_lossy: bool = False,
                    dtype: torch.dtype = torch.float32) -> ExportReport:
    """Write ``sae`` in sparsify's layout: ``out_dir/<hookpoint>/{cfg.json, sae.safetensors}``
    (directly into ``out_dir`` when ``hookpoint`` is None). Raises ``LossyExportError`` when
    inference would change, unless ``allow_lossy``; always writes ``PROBSAE_EXPORT.md``."""
    arch = sae.architecture
    if arch in ("relu", "gated", "jumprelu"):
        raise ConfigError(f"sparsify has no {arch!r} SAE (it only has TopK/GroupMax coders); export to SAELens instead")
    st = working_state(sae)
    k = int(sae.cfg.k)
    b_enc = st.get("b_enc", torch.zeros(sae.d_sae, dtype=torch.float64))
    changes: list[str] = []
    dropped: list[str] = []
    notes: list[str] = []
    if arch == "vsae_topk":
        dropped.append("the variance head (W_var, b_var) and kl_coeff: training-only (inference uses μ)")
    elif arch == "topk":
        dropped.append(f"aux_k={sae.cfg.aux_k}, aux_coeff={sae.cfg.aux_coeff} (training-only)")
    elif arch == "abstopk":
        changes.append("selection: probsae keeps the K largest |pre-activations| with their sign; sparsify keeps the "
                       "K largest signed pre-activations and applies ReLU, so negative codes are lost")
    elif arch == "prob_topk":
        changes.append("selection: probsae keeps the K latents with the largest gate score σ(LayerNorm(a)/β) + "
                       "λ_mag·|a| and their signed a; sparsify keeps the K largest a and applies ReLU (negative "
                       "codes are lost, and the gate no longer picks the latents)")
        dropped.append("the gate (ln_weight/ln_bias, β, lambda_mag); b_enc is written as zeros (the paper's encoder has none)")
    elif arch == "batchtopk":
        changes.append(f"selection: probsae's BatchTopK inference keeps every ReLU pre-activation above one global "
                       f"threshold θ={float(st['threshold']):.6g} (a variable number per token); sparsify keeps "
                       f"exactly k={k} per token")
    else:
        raise ConfigError(f"no sparsify mapping for probsae architecture {arch!r}")
    out = {"W_enc": st["W_enc"], "W_dec": st["W_dec"], "b_dec": st["b_dec"]}
    norm = sae.cfg.normalize
    if norm == "scalar":
        scale = float(st["normalizer.scale"])
        out = fold_input_scale(out, 1.0 / scale)
        notes.append(f"probsae 'scalar' normalisation (x·{scale:.6g}) is folded into the weights (exact)")
    elif norm == "unit":
        changes.append("input normalisation: sparsify has none. The weights are on probsae's working scale: feed "
                       "x_n = (x − mean(x))/‖x − mean(x)‖ (mean and norm over the hidden dimension, per token) and "
                       "map the output back with x̂ = x̂_n·‖x − mean(x)‖ + mean(x). Fed raw activations, the "
                       "sparsify SAE computes different codes and a reconstruction on the wrong scale. For an exact "
                       "sparsify export, train with --normalize none (or scalar, which is folded into the weights)")
    refuse_or_allow("sparsify", arch, changes, allow_lossy)
    path = Path(out_dir) / hookpoint if hookpoint else Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {"encoder.weight": out["W_enc"].t(), "encoder.bias": b_enc, "W_dec": out["W_dec"], "b_dec": out["b_dec"]}
    write_safetensors(path / WEIGHTS_FILE, {n: v.to(dtype) for n, v in tensors.items()})
    cfg: dict[str, Any] = {
        "activation": "topk", "expansion_factor": max(1, sae.d_sae // sae.d_in), "normalize_decoder": False,
        "num_latents": sae.d_sae, "k": k, "multi_topk": False, "skip_connection": False, "transcode": False,
        "d_in": sae.d_in, BLOCK_KEY: provenance(sae),
    }
    text = json.dumps(cfg, indent=2)
    atomic_write_text(path / CONFIG_FILE, text)
    report = ExportReport(path, "sparsify", arch, "topk", exact=not changes, changes=changes, dropped=dropped, notes=notes)
    report.write_notes(sae)
    return report


def find_hookpoints(path: str | Path) -> list[str]:
    """Hook-point subdirectories (holding a cfg.json) of a sparsify run directory."""
    path = Path(path)
    return sorted(p.name for p in path.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file()) if path.is_dir() else []


def import_sparsify(path: str | Path, hookpoint: str | None = None):
    """Load a sparsify SAE as a probsae ``topk`` SAE (normalisation 'none', or the probsae
    normalisation recorded at export). ``path`` is a hook-point directory, or a run directory
    together with ``hookpoint`` (optional when it holds exactly one)."""
    path = Path(path)
    if hookpoint:
        path = path / hookpoint
    elif not (path / CONFIG_FILE).is_file():
        hps = find_hookpoints(path)
        if len(hps) != 1:
            raise SAEFileError(f"{path} is not a sparsify SAE directory" + (
                f"; it holds the hook points {hps}: choose one (CLI: --hookpoint)" if hps else " (no cfg.json)"))
        path = path / hps[0]
    cfg = read_json(path / CONFIG_FILE)
    w = {k: v.double() for k, v in read_safetensors(path / WEIGHTS_FILE).items()}
    if cfg.get("transcode"):
        raise ConfigError(f"{path}: a transcoder (predicts another activation) is not an autoencoder probsae can load")
    if cfg.get("skip_connection") or "W_skip" in w:
        raise ConfigError(f"{path}: skip connections (W_skip) have no probsae equivalent")
    if (cfg.get("activation") or "topk") != "topk":
        raise ConfigError(f"{path}: activation {cfg.get('activation')!r} has no probsae equivalent (only 'topk')")
    if cfg.get("signed"):
        raise ConfigError(f"{path}: signed sparsify coders have no probsae equivalent")
    for key in ("encoder.weight", "encoder.bias", "W_dec", "b_dec"):
        if key not in w:
            raise SAEFileError(f"{path / WEIGHTS_FILE} has no {key!r}")
    d_sae, d_in = w["encoder.weight"].shape
    if "d_in" in cfg and int(cfg["d_in"]) != d_in:
        raise SAEFileError(f"{path}: cfg d_in={cfg['d_in']} but encoder.weight is {tuple(w['encoder.weight'].shape)}")
    block = cfg.get(BLOCK_KEY)
    tensors = {"W_enc": w["encoder.weight"].t(), "b_enc": w["encoder.bias"], "W_dec": w["W_dec"], "b_dec": w["b_dec"]}
    normalize, c = "none", 1.0
    bcfg = (block or {}).get("config") or {}
    if bcfg.get("normalize") == "scalar" and "scale" in (block or {}):
        normalize, c = "scalar", 1.0 / float(block["scale"])
    elif bcfg.get("normalize") == "unit":
        normalize = "unit"  # exported (lossily) on the working scale: nothing to unfold
    tensors = fold_input_scale(tensors, 1.0 / c)
    sae = build_imported("topk", d_in, d_sae, normalize, {"k": int(cfg["k"])}, block)
    tensors["normalizer.scale"] = torch.tensor(1.0 / c if normalize == "scalar" else 1.0)
    tensors["normalizer.fitted"] = torch.tensor(normalize == "scalar")
    load_into(sae, tensors, path)
    return sae
