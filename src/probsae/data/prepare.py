"""From a data spec (model, hook point, corpus) to cached training and held-out activations.

``prepare_caches`` extracts each split once into an activation cache keyed by the spec, and
reuses (or resumes) it afterwards, so every run and sweep member on the same spec shares it.
``stream_batches`` is the cache-free path: activations straight from the model.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import DataError


@dataclass
class DataSpec:
    """Where activations come from."""

    model: str = "minilm"
    """Model: a short name (minilm, gpt2, qwen3-0.6b), a Hugging Face id or a local directory."""
    hook: str = "resid_pre.4"
    """Hook point: resid_pre.L, resid_post.L or module:<dotted.name> (docs/DATA.md)."""
    corpus: str = "pydoc"
    """Text: 'pydoc' (offline default), a .txt/.jsonl/.parquet file or folder, or hf:NAME[:split]."""
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
    device: str = "cpu"
    """Device of the model during extraction."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"unknown data option(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def slug(self, part: str) -> str:
        """A directory name identifying this spec's cache of one split."""
        limit = self.max_tokens if part == "train" else self.eval_tokens
        raw = f"{self.model}-{self.hook}-{self.corpus}-ctx{self.context_length}-{part}-{limit or 'all'}-{self.dtype}"
        raw += "" if self.exclude_special else "-special"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("_")[-150:]


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


def activation_stream(spec: DataSpec, part: str, handle=None, progress: bool = False):
    """An ActivationStream over the ``part`` ('train' or 'holdout') documents of the corpus."""
    from .extract import ActivationStream
    from .models import load_model

    handle = handle or load_model(spec.model, device=spec.device)
    limit = spec.max_tokens if part == "train" else spec.eval_tokens
    return ActivationStream.from_corpus(
        handle, spec.hook, split_docs(spec, part), context_length=spec.context_length,
        batch_size=spec.extract_batch_size, max_tokens=limit, exclude_special=spec.exclude_special,
        progress=progress)


def prepare_caches(spec: DataSpec, cache_root: str | Path, progress: bool = True,
                   parts: tuple[str, ...] = ("train", "holdout")):
    """The caches of ``parts`` (default: train, held-out) for ``spec`` under ``cache_root``:
    reused when complete, resumed when a previous extraction was killed, extracted otherwise."""
    from ..progress import say
    from .cache import build_cache

    root = Path(cache_root)
    out, handle = [], None
    for part in parts:
        path = root / spec.slug(part)
        cache = _complete_cache(path)
        if cache is None:
            if handle is None:
                from .models import load_model

                handle = load_model(spec.model, device=spec.device)
            meta = {"model": spec.model, "hook": spec.hook, "corpus": spec.corpus, "split": part,
                    "holdout_every": spec.holdout_every, "context_length": spec.context_length,
                    "max_tokens": spec.max_tokens if part == "train" else spec.eval_tokens,
                    "exclude_special": spec.exclude_special}
            t0 = time.perf_counter()
            say(f"extracting {part} activations: {spec.model} {spec.hook} on {spec.corpus} -> {path}")
            cache = build_cache(activation_stream(spec, part, handle, progress), path, meta,
                                shard_tokens=spec.shard_tokens, dtype=spec.dtype)
            dt = time.perf_counter() - t0
            say(f"{part}: {cache.n_tokens:,} tokens in {dt:.0f}s ({cache.n_tokens / max(dt, 1e-9):,.0f} tokens/s)")
        out.append(cache)
    return tuple(out)


def _complete_cache(path: Path):
    from .cache import ActivationCache

    if not (path / "manifest.json").is_file():
        return None
    cache = ActivationCache(path, allow_incomplete=True)
    return cache if cache.manifest.get("complete") else None


def rebatch(chunks, batch_size: int, shuffle_buffer: int = 0, seed: int = 0) -> Iterator[torch.Tensor]:
    """Fixed-size (batch_size, d) batches from a stream of variable-size (N, d) chunks; with
    ``shuffle_buffer`` > 0 tokens are shuffled within a buffer of that many batches."""
    gen = torch.Generator().manual_seed(seed)
    buf: list[torch.Tensor] = []
    n = 0
    target = batch_size * max(1, shuffle_buffer)
    for chunk in chunks:
        buf.append(chunk)
        n += chunk.shape[0]
        if n >= target:
            x = torch.cat(buf)
            if shuffle_buffer:
                x = x[torch.randperm(x.shape[0], generator=gen)]
            full = (x.shape[0] // batch_size) * batch_size
            yield from x[:full].split(batch_size)
            buf, n = [x[full:]], x.shape[0] - full
    if n >= batch_size:
        x = torch.cat(buf)
        yield from x[: (n // batch_size) * batch_size].split(batch_size)
