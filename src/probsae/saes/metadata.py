"""Where an SAE's activations come from, saved with the SAE.

``config.json`` holds ``"config"`` (the hyperparameters that build the SAE) and, next to it,
``"metadata"``: the model, hook point(s), windowing and corpus the SAE was trained on. The
metadata changes nothing in the SAE's computation; it lets ``probsae.load_run`` / ``encode_text``
feed the SAE text exactly as training did, and exporters fill SAELens's ``model_name`` /
``hook_name`` from it. ``probsae train`` and ``probsae sweep`` fill it; ``sae.save`` keeps it;
``load_sae`` returns it as ``sae.metadata``.

A transcoder reads one hook point and predicts another: ``hook_name`` is where the input is read,
``target_hook_name`` where the output is compared (None for an SAE, which reconstructs its input).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import SAEFileError


@dataclass
class SAEMetadata:
    """Provenance of a trained SAE (not hyperparameters: nothing here changes its outputs)."""

    model_name: str | None = None
    """Model the activations come from: a short name (minilm, gpt2, qwen3-0.6b), a Hugging Face id
    or a local directory."""
    hook_name: str | None = None
    """Hook point the SAE reads (resid_pre.L, resid_post.L or module:<dotted.name>)."""
    target_hook_name: str | None = None
    """Hook point whose activations the output is compared with; None: the input itself (an SAE).
    A transcoder reads ``hook_name`` and predicts ``target_hook_name``."""
    context_length: int | None = None
    """Tokens per window the training activations were extracted with."""
    exclude_special: bool = True
    """BOS/CLS/SEP/EOS/PAD positions were dropped from the training activations (and are never
    encoded by ``encode_text``)."""
    window_style: str = "auto"
    """How documents were packed into windows: 'auto', 'bert' ([CLS] … [SEP]) or 'causal'
    (BOS first, EOS between documents); see ``probsae.data.window_ids``."""
    prepend_bos: bool = True
    """Causal windows start with BOS (or EOS when the tokenizer has no BOS)."""
    corpus: str | None = None
    """Text the SAE was trained on (pydoc, a file or folder, hf:NAME[:split])."""
    text_field: str = "text"
    """Field holding the text in .jsonl/.parquet/hf corpora."""
    holdout_every: int | None = None
    """Every N-th document of the corpus was held out (never trained on)."""
    activation_dtype: str | None = None
    """Storage dtype of the training activations (float32, float16, bfloat16)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (sweep name, run directory, …)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SAEMetadata":
        """Read the ``"metadata"`` object of a config.json; unknown keys (a newer writer) are kept in
        ``extra`` rather than refused, since metadata never changes the SAE's computation."""
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise SAEFileError(f"SAE metadata must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        extra = dict(d.get("extra") or {})
        extra.update({k: v for k, v in d.items() if k not in known})
        return cls(**{k: v for k, v in d.items() if k in known and k != "extra"}, extra=extra)

    @property
    def empty(self) -> bool:
        return self == SAEMetadata()
