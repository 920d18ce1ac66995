"""From a data spec (model, hook point, corpus) to cached training and held-out activations.

``prepare_caches`` extracts each split once into an activation cache keyed by the spec, and
reuses (or resumes) it afterwards, so every run and sweep member on the same spec shares it.
``model_stream`` is the cache-free path: training batches straight from the model.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from .errors import DataError


@dataclass
class DataSpec:
    """Where activations come from."""

    model: str = "minilm"
    """Model: a short name (minilm, smollm2, gpt2, qwen3-0.6b), a Hugging Face id, a local directory
    or a GGUF file."""
    hook: str = "resid_pre.4"
    """Hook point: resid_pre.L, resid_post.L, resid_mid.L, mlp_in.L, mlp_out.L (block L; the MLP
    sites of GPT-2, Llama/Qwen and BERT blocks) or module:<dotted.name> (docs/DATA.md)."""
    target_hook: str | None = None
    """A transcoder's target hook point (e.g. module:transformer.h.L.mlp, the MLP's output, for
    hook module:transformer.h.L.ln_2, its input): rows become [input | target] pairs, the cache
    stores both sides. None: an SAE, which reconstructs the hook's activations."""
    corpus: str = "pydoc"
    """Text: 'pydoc' (offline default), 'offline-en' (built by 'probsae corpus build offline-en'), a
    .txt/.jsonl/.parquet file or folder, or hf:NAME[:split]."""
    text_field: str = "text"
    """Field holding the text in .jsonl/.parquet/hf corpora."""
    context_length: int = 256
    """Tokens per window (the paper: 1024), capped at the model's maximum."""
    extract_batch_size: int = 8
    """Windows per model forward during extraction."""
    max_tokens: int | None = None
    """Training tokens to extract (None: the whole training split of the corpus)."""
    eval_tokens: int | None = 50_000
    """Held-out tokens to extract for evaluation (None: the whole held-out split)."""
    holdout_every: int = 20
    """Every N-th document is held out for evaluation and never trained on."""
    exclude_special: bool = True
    """Drop BOS/CLS/SEP/EOS/PAD positions from the activations."""
    dtype: str = "float32"
    """Cache storage dtype: float32, float16 or bfloat16."""
    shard_tokens: int = 65_536
    """Tokens per cache shard."""
    device: str = "auto"
    """Device of the model during extraction: 'auto' (the training device in `probsae train`,
    else CUDA when available), 'cpu', 'cuda', 'cuda:1', …"""
    model_dtype: str = "auto"
    """Dtype of the model during extraction: 'auto' (bfloat16 on a GPU that supports it, and for
    causal LMs on a CPU with bfloat16 instructions (AVX512-BF16/AMX), else float32), 'float32',
    'bfloat16' or 'float16'. Activations are handed on as float32 either way;
    the cache records the dtype the model ran in (a bf16 cache is a different cache)."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"unknown data option(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Raise a ``DataError``/``ConfigError`` naming the first invalid field (no model is loaded)."""
        from ..devices import MODEL_DTYPES, resolve_device
        from ..validators import whole

        for name in ("model", "hook", "corpus", "text_field"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise DataError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if self.target_hook is not None and (not isinstance(self.target_hook, str) or not self.target_hook
                                             or self.target_hook == self.hook or "," in self.hook):
            raise DataError(f"target_hook must be a hook point other than the one input hook {self.hook!r}, "
                            f"got {self.target_hook!r}")
        whole("context_length", self.context_length, 2)
        whole("extract_batch_size", self.extract_batch_size, 1)
        for name in ("max_tokens", "eval_tokens"):
            if getattr(self, name) is not None:
                whole(name, getattr(self, name), 1, "a positive integer or None (all)")
        whole("holdout_every", self.holdout_every, 2)
        whole("shard_tokens", self.shard_tokens, 1)
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise DataError(f"dtype must be float32, float16 or bfloat16, got {self.dtype!r}")
        if self.model_dtype != "auto" and self.model_dtype not in MODEL_DTYPES:
            raise DataError(f"model_dtype must be auto, {', '.join(MODEL_DTYPES)}; got {self.model_dtype!r}")
        resolve_device(self.device)

    def cache_identity(self, part: str, model_dtype: torch.dtype) -> dict[str, Any]:
        """The identity of this spec's cache of one split (``data.cache.cache_identity``) with
        ``model_dtype`` the dtype the model actually runs in (:meth:`placement`), never 'auto':
        'auto' on the CPU and 'float32' are the same cache, a bf16 extraction is another one."""
        from ..devices import dtype_name
        from .cache import cache_identity

        spec = {**self.to_dict(), "model_dtype": dtype_name(model_dtype)}
        if spec["target_hook"] is None:  # an SAE's cache keeps the identity it had before transcoders
            del spec["target_hook"]
        return cache_identity(spec, part)

    def slug(self, part: str, device: str | torch.device | None = None) -> str:
        """A directory name identifying this spec's cache of one split (a hash of its identity;
        ``device``: as for :meth:`placement`, which decides the model's dtype)."""
        from .cache import cache_dir_name

        return cache_dir_name(self.cache_identity(part, self.placement(device)[1]))

    def placement(self, device: str | torch.device | None = None) -> tuple[torch.device, torch.dtype]:
        """(device, dtype) of the model: ``device`` (e.g. the training device) when given and
        this spec's device is 'auto', else this spec's; the dtype from ``model_dtype``."""
        from ..devices import resolve_device, resolve_model_dtype
        from .models import is_causal_model

        dev = resolve_device(device if device is not None and self.device == "auto" else self.device)
        return dev, resolve_model_dtype(self.model_dtype, dev, causal=lambda: is_causal_model(self.model))

    def load(self, device: str | torch.device | None = None):
        """The spec's model, on :meth:`placement`'s device and dtype."""
        from .models import load_model

        dev, dtype = self.placement(device)
        return load_model(self.model, device=dev, dtype=dtype)


class _Split:
    """Re-iterable view of one split of a corpus (a stream factory re-iterates it)."""

    def __init__(self, corpus, part: str, every: int):
        self.corpus, self.part, self.every = corpus, part, every

    def __iter__(self):
        from .corpus import split_documents

        return split_documents(self.corpus, self.part, holdout_every=self.every)


def split_docs(spec: DataSpec, part: str) -> _Split:
    """The ``part`` ('train' or 'holdout') documents of the spec's corpus, re-iterable."""
    from .corpus import load_corpus

    return _Split(load_corpus(spec.corpus, text_field=spec.text_field), part, spec.holdout_every)


def activation_stream(spec: DataSpec, part: str, handle=None, progress: bool = False, hooks=None):
    """An ActivationStream over the ``part`` ('train' or 'holdout') documents of the corpus, at
    ``hooks`` (default: the spec's hook point; a list: one forward feeds them all)."""
    from .extract import ActivationStream

    handle = handle or spec.load()
    limit = spec.max_tokens if part == "train" else spec.eval_tokens
    return ActivationStream.from_corpus(
        handle, hooks or spec.hook, split_docs(spec, part), context_length=spec.context_length,
        batch_size=spec.extract_batch_size, max_tokens=limit, exclude_special=spec.exclude_special,
        progress=progress, target_hook=spec.target_hook)


def model_stream(spec: DataSpec, batch_size: int, handle=None, hooks=None, buffer_tokens: int | None = None,
                 seed: int = 0):
    """Training batches straight from the model (:class:`~probsae.data.stream.ModelStream`) over
    the training documents, at ``hooks`` (default: the spec's); ``spec.max_tokens`` sizes the run."""
    from .stream import ModelStream

    handle = handle or spec.load()
    stream = activation_stream(spec, "train", handle, hooks=hooks)
    stream.max_tokens = None  # the stream runs to the end of the corpus; max_tokens counts steps
    return ModelStream(stream, batch_size, buffer_tokens=buffer_tokens, seed=seed, max_tokens=spec.max_tokens)


def prepare_caches(spec: DataSpec, cache_root: str | Path, progress: bool = True,
                   parts: tuple[str, ...] = ("train", "holdout"), device: str | torch.device | None = None,
                   handle=None):
    """The caches of ``parts`` (default: train, held-out) for ``spec`` under ``cache_root``:
    reused when complete, resumed when a previous extraction was killed, extracted otherwise.
    The model runs on ``spec.placement(device)`` (``handle``: an already loaded one); each
    extraction prints its tokens/s (silenced by ``--no-progress``)."""
    from ..devices import dtype_name
    from ..io import check_writable_dir
    from ..progress import say
    from .cache import build_cache, cache_dir_name

    spec.validate()
    root = Path(cache_root)
    dev, dtype = (handle.device, next(handle.model.parameters()).dtype) if handle is not None else spec.placement(device)
    out = []
    for part in parts:
        meta = spec.cache_identity(part, dtype)  # what the manifest records and reuse checks
        path = root / cache_dir_name(meta)
        cache = _complete_cache(path, meta)
        if cache is None:
            check_writable_dir(root, "cache directory")  # before the model loads
            if handle is None:
                from .models import load_model

                handle = load_model(spec.model, device=dev, dtype=dtype)
            t0 = time.perf_counter()
            hooks = spec.hook + (f" -> {spec.target_hook}" if spec.target_hook else "")
            say(f"extracting {part} activations: {spec.model} {hooks} on {spec.corpus} "
                f"({dev}, {dtype_name(dtype)}) -> {path}")
            stream = activation_stream(spec, part, handle, progress)
            cache = build_cache(stream, path, meta, shard_tokens=spec.shard_tokens, dtype=spec.dtype)
            dt = time.perf_counter() - t0
            n = cache.n_tokens
            say(f"{part}: {n:,} tokens in {dt:.1f}s: extraction {n / max(dt, 1e-9):,.0f} tokens/s "
                f"(model forward {stream.forward_seconds:.1f}s)")
        out.append(cache)
    return tuple(out)


def _complete_cache(path: Path, identity: dict[str, Any]):
    from .cache import ActivationCache, check_identity

    if not (path / "manifest.json").is_file():
        return None
    cache = ActivationCache(path, allow_incomplete=True)
    check_identity(cache, identity)
    return cache if cache.manifest.get("complete") else None
