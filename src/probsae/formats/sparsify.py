"""EleutherAI sparsify format: one directory per hook point, each with ``sae.safetensors`` and
``cfg.json``.

Weights (sparsify's ``SparseCoder``): ``encoder.weight`` (d_sae, d_in) — the transpose of
probsae's ``W_enc`` —, ``encoder.bias`` (d_sae), ``W_dec`` (d_sae, d_in), ``b_dec`` (d_in).
``cfg.json``: ``activation`` ('topk'), ``k``, ``num_latents`` (and ``expansion_factor``),
``normalize_decoder``, ``multi_topk``, ``skip_connection``, ``transcode`` and ``d_in``; readers
drop keys they do not know (the ``probsae`` provenance block). A multi-hook-point run is a folder
of such directories named after the hook points (``layers.8``, ``h.8`` …).

sparsify's inference is TopK of ReLU(encoder(x − b_dec)) then ``W_dec`` + ``b_dec`` on raw
activations, with no input normalisation. A transcoder (``transcode``: true) encodes x without
subtracting ``b_dec`` and adds ``x W_skipᵀ`` with ``skip_connection`` (``W_skip`` (d_out, d_in));
its declaration folds b_dec into the encoder bias and its target scale into the decoder, and the
importer reads sparsify's 'topk' transcoders as the kind ``'topk transcoder'``. Each architecture module declares its sparsify form
(``to_sparsify``: exact, lossy with the differences listed, or not expressible) and whether it
reads sparsify coders (``reads``/``from_sparsify``); docs/FORMATS.md tabulates them. 'scalar'
normalisation is folded into the weights (exact); 'unit' normalisation cannot be expressed: the
weights are written on probsae's working scale and the user must normalise inputs and de-normalise
outputs (a lossy export).
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
    BLOCK_KEY, ExportReport, block_scale, exported_core, expressible, fold_input_scale, load_imported, malformed_files_are_errors, provenance,
    provenance_block, read_json, read_safetensors, read_with, readable, refuse_or_allow, working_state,
    write_safetensors,
)

WEIGHTS_FILE = "sae.safetensors"
CONFIG_FILE = "cfg.json"


#: Where each model type's blocks sit in its Hugging Face base model (``AutoModel``), the model
#: sparsify names hook points in; other types: ``layers`` (Llama, Qwen, Mistral, GPT-NeoX, …).
BASE_BLOCKS = {"gpt2": "h", "distilbert": "transformer.layer",
               **{t: "encoder.layer" for t in ("bert", "roberta", "xlm-roberta", "electra", "mpnet", "deberta",
                                               "deberta-v2")}}


def base_blocks(model_name: str | None) -> str:
    """The module path of the block list in ``model_name``'s base model: from its config.json's
    ``model_type`` when it can be read offline, else from the name ('gpt2' → 'h', BERT-like names
    such as 'minilm' → 'encoder.layer'), else 'layers'."""
    from ..data.models import config_model_type

    name = str(model_name or "")
    model_type = config_model_type(name) if name else None
    if model_type is None:
        low = name.lower()
        model_type = ("gpt2" if "gpt2" in low else "distilbert" if "distilbert" in low else
                      "bert" if any(w in low for w in ("bert", "minilm", "electra", "mpnet")) else None)
    return BASE_BLOCKS.get(model_type or "", "layers")


def sparsify_hookpoint(hook: str | None, model_name: str | None = None,
                       target_hook: str | None = None) -> str | None:
    """A default sparsify hook-point name (a module path of the HF base model, :func:`base_blocks`)
    for a probsae hook point (or a TransformerLens name of one): 'resid_post.L' (output of block L)
    → 'layers.L' ('h.L' for GPT-2, 'encoder.layer.L' for BERT), 'resid_pre.L' → the previous
    block's output for L > 0, 'mlp_out.L' → 'layers.L.mlp' ('encoder.layer.L.output.dense' for
    BERT), 'resid_mid.L' → 'encoder.layer.L.attention' for BERT (an output there, an input's sum
    elsewhere), 'module:x.y' → 'x.y'; None when there is none; a string that is no hook point is
    returned as given. A transcoder (``target_hook``) is named by the module it stands in for, whose
    input and output sparsify hooks: 'mlp_in.L' → 'mlp_out.L' is 'layers.L.mlp'."""
    from ..data.errors import HookPointError
    from ..data.hooks import HookPoint

    if not hook:
        return None
    try:
        hp = HookPoint.parse(str(hook))
    except HookPointError:
        return str(hook)
    if hp.kind == "module":
        return hp.module
    blocks = base_blocks(model_name)
    encoder = blocks == "encoder.layer"
    mlp = "output.dense" if encoder else "mlp" if blocks != "transformer.layer" else None
    L = hp.layer
    if L is None or L < 0:
        return None
    if target_hook:
        try:
            target = HookPoint.parse(str(target_hook))
        except HookPointError:
            return None
        same_mlp = hp.kind == "mlp_in" and target.kind == "mlp_out" and target.layer == L
        return f"{blocks}.{L}.mlp" if same_mlp and mlp == "mlp" else None
    if hp.kind == "mlp_out":
        return f"{blocks}.{L}.{mlp}" if mlp else None
    if hp.kind == "resid_mid":
        return f"{blocks}.{L}.attention" if encoder else None  # BERT's attention sublayer ends in its LayerNorm
    if hp.kind == "mlp_in":
        return None  # a module's input, not an output: sparsify hooks outputs
    L = L + (-1 if hp.kind == "resid_pre" else 0)
    return f"{blocks}.{L}" if L >= 0 else None


def export_sparsify(sae, out_dir: str | Path, *, hookpoint: str | None = None, allow_lossy: bool = False,
                    dtype: torch.dtype = torch.float32) -> ExportReport:
    """Write ``sae`` in sparsify's layout: ``out_dir/<hookpoint>/{cfg.json, sae.safetensors}``
    (directly into ``out_dir`` when ``hookpoint`` is None). Raises ``LossyExportError`` when
    inference would change, unless ``allow_lossy``; always writes ``PROBSAE_EXPORT.md``."""
    arch = sae.architecture
    st = working_state(sae)
    export = expressible(sae.to_sparsify(st), "sparsify", arch)
    k = int(export.config["k"])
    b_enc = export.tensors.get("b_enc", torch.zeros(sae.d_sae, dtype=torch.float64))
    changes, dropped, notes = list(export.changes), export.dropped, list(export.notes)
    out = exported_core(st, export)
    norm = sae.cfg.normalize
    if norm == "scalar":
        scale = float(st["normalizer.scale"])
        out = fold_input_scale(out, 1.0 / scale)
        notes.append(f"probsae 'scalar' normalisation (x·{scale:.6g}) is folded into the weights (exact)")
    elif norm == "unit":
        changes.append("input normalisation: sparsify has none. The weights are on probsae's working scale: feed "
                       "x_n = (x − mean(x))/‖x − mean(x)‖ (mean and norm over the hidden dimension, per token) and "
                       "map the output back with x̂ = x̂_n·‖x − mean(x)‖ + mean(x) (for a transcoder too: its output "
                       "is mapped back with the input x's mean and norm). Fed raw activations, the "
                       "sparsify SAE computes different codes and a reconstruction on the wrong scale. For an exact "
                       "sparsify export, train with --normalize none (or scalar, which is folded into the weights)")
    refuse_or_allow("sparsify", arch, changes, allow_lossy)
    path = ensure_dir(Path(out_dir) / hookpoint if hookpoint else Path(out_dir), "export directory")
    tensors = {"encoder.weight": out["W_enc"].t(), "encoder.bias": b_enc, "W_dec": out["W_dec"], "b_dec": out["b_dec"]}
    if "W_skip" in export.tensors:
        tensors["W_skip"] = export.tensors["W_skip"]
    write_safetensors(path / WEIGHTS_FILE, {n: v.to(dtype) for n, v in tensors.items()})
    cfg: dict[str, Any] = {
        "activation": export.target, "expansion_factor": max(1, sae.d_sae // sae.d_in), "normalize_decoder": False,
        "num_latents": sae.d_sae, "k": k, "multi_topk": False,
        "skip_connection": bool(export.config.get("skip_connection", False)),
        "transcode": bool(export.config.get("transcode", False)),
        "d_in": sae.d_in, BLOCK_KEY: provenance(sae),
    }
    text = json.dumps(cfg, indent=2)
    atomic_write_text(path / CONFIG_FILE, text)
    report = ExportReport(path, "sparsify", arch, export.target, exact=not changes, changes=changes, dropped=dropped, notes=notes)
    report.write_notes(sae)
    return report


def find_hookpoints(path: str | Path) -> list[str]:
    """Hook-point subdirectories (holding a cfg.json) of a sparsify run directory."""
    path = Path(path)
    return sorted(p.name for p in path.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file()) if path.is_dir() else []


@malformed_files_are_errors
def import_sparsify(path: str | Path, hookpoint: str | None = None):
    """Load a sparsify SAE as the probsae architecture that reads its coder (a TopK coder: ``topk``),
    with normalisation 'none', or the probsae normalisation recorded at export. ``path`` is a hook-point directory, or a run directory
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
    check_flags(cfg, ("transcode", "skip_connection", "signed"), path / CONFIG_FILE)
    allowed = {"encoder.weight", "encoder.bias", "W_dec", "b_dec", "W_skip"}
    w = {k: v.double() for k, v in read_safetensors(path / WEIGHTS_FILE, allowed).items()}
    if not cfg.get("transcode") and (cfg.get("skip_connection") or "W_skip" in w):
        raise ConfigError(f"{path}: skip connections (W_skip) of an autoencoder have no probsae equivalent")
    activation, readable_here = cfg.get("activation") or "topk", readable("sparsify")
    if cfg.get("transcode"):  # a transcoder: read by the architectures that read sparsify transcoders
        activation = f"{activation} transcoder"
    if activation not in readable_here:
        raise ConfigError(f"{path}: activation {activation!r} has no probsae equivalent (only {readable_here})")
    if cfg.get("signed"):
        raise ConfigError(f"{path}: signed sparsify coders have no probsae equivalent")
    for key in ("encoder.weight", "encoder.bias", "W_dec", "b_dec"):
        if key not in w:
            raise SAEFileError(f"{path / WEIGHTS_FILE} has no {key!r}")
    d_sae, d_in = w["encoder.weight"].shape
    if "d_in" in cfg and positive_int(cfg, "d_in", path / CONFIG_FILE) != d_in:
        raise SAEFileError(f"{path}: cfg d_in={cfg['d_in']} but encoder.weight is {tuple(w['encoder.weight'].shape)}")
    block = provenance_block(cfg)
    tensors = {"W_enc": w["encoder.weight"].t(), "b_enc": w["encoder.bias"], "W_dec": w["W_dec"], "b_dec": w["b_dec"]}
    if "W_skip" in w:
        tensors["W_skip"] = w["W_skip"].t()  # sparsify's (d_out, d_in) → probsae's x @ W_skip
    normalize, c = "none", 1.0
    bcfg = (block or {}).get("config") or {}
    if bcfg.get("normalize") == "scalar" and "scale" in (block or {}):
        normalize, c = "scalar", 1.0 / block_scale(block, path / CONFIG_FILE)
    elif bcfg.get("normalize") == "unit":
        normalize = "unit"  # exported (lossily) on the working scale: nothing to unfold
    ours, imported = read_with("sparsify", activation, cfg, tensors, block, path)
    return load_imported(ours, d_in, d_sae, normalize, c, imported, block, path)
