"""On-disk sharded activation store.

Layout of a cache directory::

    manifest.json            metadata + shard list (written atomically after every shard)
    shard_00000.safetensors  one tensor "activations", shape (n_tokens_in_shard, d_model)
    shard_00001.safetensors
    ...

Shards are safetensors files: they carry their dtype and shape in a header (checked on read),
support bfloat16 (``.npy`` does not). Each carries a CRC-32 (``probsae.tensorfile``), recorded in
the manifest too and verified whenever the shard is read (once per process), so a flipped byte is
an error, not different training data. Raw activations are stored; normalisation belongs to the
SAE. See docs/DATA.md and docs/INTEGRITY.md.

Caches that ``prepare_caches`` manages are named by ``cache_dir_name``: a readable prefix and a
hash of everything that defines the activations (``cache_identity``), which the manifest records
and ``check_identity`` compares before a cache is reused.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from probsae.data.cache_manifest import MANIFEST, CacheManifest, ShardEntry, now, read_manifest
from probsae.data.errors import CacheError
from probsae.io import clean_stale_tmp, ensure_dir
from probsae.data.extract import ActivationStream
from probsae.tensorfile import load_tensors, read_header, save_tensors

TENSOR_KEY = "activations"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


CACHE_KEY_EXCLUDE = frozenset({"device", "extract_batch_size", "shard_tokens"})
"""DataSpec fields that cannot change the cached activations. Every other field — also one added to
DataSpec later — is part of a cache's identity, so changing it never reuses a stale cache."""
_OTHER_SPLIT_LIMIT = {"train": "eval_tokens", "holdout": "max_tokens"}  # the other split's token budget


def model_source(model: str) -> dict[str, Any]:
    """What identifies a model: a local directory's resolved path and files' fingerprints, or the name."""
    from probsae.io import files_fingerprint

    p = Path(str(model))
    if not p.is_dir():
        return {"name": str(model)}
    root = p.resolve()
    return {"path": str(root), "files": files_fingerprint(root, sorted(f for f in root.rglob("*") if f.is_file()))}


def cache_identity(spec: dict[str, Any], part: str) -> dict[str, Any]:
    """Everything that defines the activations of the ``part`` split of a data spec (a
    ``DataSpec.to_dict()``): every field but ``CACHE_KEY_EXCLUDE`` and the other split's token
    budget, the split, and fingerprints of the model (if local) and corpus files."""
    from probsae.data.corpus import load_corpus

    if part not in _OTHER_SPLIT_LIMIT:
        raise CacheError(f"split must be 'train' or 'holdout', got {part!r}")
    ident = {k: v for k, v in spec.items() if k not in CACHE_KEY_EXCLUDE and k != _OTHER_SPLIT_LIMIT[part]}
    ident["split"] = part
    ident["model_source"] = model_source(spec["model"])
    ident["corpus_source"] = load_corpus(spec["corpus"], text_field=spec.get("text_field", "text")).fingerprint()
    return json.loads(json.dumps(ident))


def cache_key(identity: dict[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(identity, sort_keys=True).encode(), digest_size=8).hexdigest()


def cache_dir_name(identity: dict[str, Any]) -> str:
    """A readable prefix (model, hook, corpus, split) and the identity's hash."""
    corpus = str(identity.get("corpus", ""))
    raw = f"{Path(str(identity.get('model', ''))).name}-{identity.get('hook', '')}-{Path(corpus).name or corpus}-{identity['split']}"
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', raw).strip('_.')[:80]}-{cache_key(identity)}"


def check_identity(cache: "ActivationCache", identity: dict[str, Any]) -> None:
    """Refuse to reuse ``cache`` unless its manifest records exactly ``identity``."""
    stored = cache.manifest.get("meta") or {}
    diff = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
    if diff:
        raise CacheError(f"cache {cache.path} was built for different data (differs in {', '.join(diff)}): "
                         "it was modified or copied from elsewhere; move it away to extract it again")


def _dtype_name(dtype: torch.dtype | str) -> str:
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise CacheError(f"unsupported cache dtype {dtype!r}: use one of {sorted(_DTYPES)}")
        return dtype
    for k, v in _DTYPES.items():
        if v == dtype:
            return k
    raise CacheError(f"unsupported cache dtype {dtype}: use one of {sorted(_DTYPES)}")


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("probsae")
    except Exception:  # noqa: BLE001
        return "unknown"


def _sha256(path: Path) -> str:
    """sha256 of a file (shards of format-1 caches recorded it; new shards carry a CRC-32)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class CacheWriter:
    """Appends shards to the cache at ``root`` and keeps its manifest current: rows are buffered
    (on the model's device) until ``shard_tokens`` are reached, then written as one shard to a
    temporary file renamed into place, and the manifest is rewritten atomically after every
    shard, so a killed run loses at most one shard of work."""

    def __init__(self, root: Path, manifest: CacheManifest, shard_tokens: int):
        self.root, self.manifest, self.shard_tokens = root, manifest, shard_tokens
        self.windows_end = manifest.n_windows or 0
        """Token windows of the stream consumed so far (shards record it; a resume restarts there)."""
        self._buf: list[torch.Tensor] = []
        self._n_buf = 0

    @classmethod
    def open(cls, root: Path, meta: dict[str, Any], dtype: str, shard_tokens: int, resume: bool,
             overwrite: bool) -> CacheWriter:
        """A writer for a new cache at ``root``, or for the partial (or complete) cache there."""
        ensure_dir(root, "activation cache directory")
        if (root / MANIFEST).exists() and overwrite:
            for f in root.glob("shard_*.safetensors*"):
                f.unlink()
            (root / MANIFEST).unlink()
        if (root / MANIFEST).exists():
            man = _resumed_manifest(root, meta, dtype, resume)
        else:
            man = CacheManifest.new(meta, dtype, _version())
        return cls(root, man, shard_tokens)

    @property
    def d_model(self) -> int | None:
        """The row width: the manifest's, else the first buffered batch's, else None."""
        if self.manifest.d_model is not None:
            return self.manifest.d_model
        return self._buf[0].shape[1] if self._buf else None

    def add(self, acts: torch.Tensor, windows_end: int) -> None:
        """Buffer one (N, d) batch that ends the stream's window ``windows_end``; write a shard
        once the buffer holds ``shard_tokens`` rows."""
        self.windows_end = windows_end
        if acts.dim() != 2:
            raise CacheError(f"build_cache: activations must be (N, d), got {tuple(acts.shape)}")
        d = self.d_model
        if d is not None and acts.shape[1] != d:
            raise CacheError(f"build_cache: activation width {acts.shape[1]} != d_model {d}")
        if acts.shape[0]:
            self._buf.append(acts.detach())  # stays on the model's device until the shard is written
            self._n_buf += acts.shape[0]
        if self._n_buf >= self.shard_tokens:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as the next shard (nothing if the buffer is empty)."""
        if not self._n_buf:
            return
        man = self.manifest
        x = torch.cat(self._buf).to(_DTYPES[man.dtype]).cpu().contiguous()  # one device->host copy per shard
        if man.d_model is None:
            man.d_model = int(x.shape[1])
        name = f"shard_{len(man.shards):05d}.safetensors"
        crc = save_tensors(self.root / name, {TENSOR_KEY: x})
        man.shards.append(ShardEntry(file=name, n_tokens=int(x.shape[0]), bytes=(self.root / name).stat().st_size,
                                     crc32=crc, windows_end=self.windows_end))
        man.n_tokens += int(x.shape[0])
        man.n_windows = self.windows_end
        man.updated = now()
        man.write(self.root)
        self._buf, self._n_buf = [], 0

    def finish(self, meta: dict[str, Any]) -> None:
        """Write the last shard and mark the cache complete (an empty cache is a CacheError)."""
        self.flush()
        if not self.manifest.n_tokens:
            raise CacheError(_empty_reason(self.root, meta, self.windows_end))
        self.manifest.complete = True
        self.manifest.write(self.root)


def _resumed_manifest(root: Path, meta: dict[str, Any], dtype: str, resume: bool) -> CacheManifest:
    """The manifest of the cache already at ``root``, if it may be continued with ``meta``/``dtype``."""
    if not resume:
        raise CacheError(f"{root} already holds a cache; pass resume=True to continue it or "
                         "overwrite=True to replace it")
    man = CacheManifest.read(root)
    stored = man.meta or {}
    for k, v in meta.items():
        if k in stored and json.loads(json.dumps(v)) != stored[k]:
            raise CacheError(f"cannot resume {root}: meta {k!r} is {stored[k]!r} on disk "
                             f"but {v!r} now")
    if man.dtype != dtype:
        raise CacheError(f"cannot resume {root}: stored dtype {man.dtype}, requested {dtype}")
    return man


def _check_build_args(meta: dict[str, Any], shard_tokens: int) -> None:
    for k in ("model", "hook"):
        if k not in meta:
            raise CacheError(f"build_cache: meta must contain {k!r}")
    if shard_tokens < 1:
        raise CacheError(f"shard_tokens must be >= 1, got {shard_tokens}")


def _check_stream(stream: ActivationStream | Iterable[torch.Tensor], man: CacheManifest, root: Path) -> None:
    """A partial cache can be continued only from a resumable stream."""
    if man.shards and not (isinstance(stream, ActivationStream) and stream.resumable):
        raise CacheError(f"cannot resume {root}: the stream is not resumable (build it with "
                         "ActivationStream.from_corpus), or pass overwrite=True")


def _batches(stream: ActivationStream | Iterable[torch.Tensor], start: CacheWriter) -> Iterator[tuple[torch.Tensor, int]]:
    """(activations, windows consumed so far) of each batch still to write: an ActivationStream
    restarts after the windows of the finished shards; a plain tensor counts as one window."""
    if isinstance(stream, ActivationStream) and len(stream.hooks) > 1:
        raise CacheError(f"build_cache: the stream has {len(stream.hooks)} hook points; a cache holds one "
                         "(build one cache per hook point)")
    batches: Iterable[Any] = stream
    if isinstance(stream, ActivationStream):
        batches = stream.batches(skip_windows=start.windows_end, tokens_done=start.manifest.n_tokens)
    windows_end = start.windows_end
    for b in batches:
        if torch.is_tensor(b):
            windows_end += 1
            yield b, windows_end
        else:
            windows_end = b.windows_end
            yield b.acts, windows_end


def build_cache(stream: ActivationStream | Iterable[torch.Tensor], out_dir: str | Path,
                meta: dict[str, Any], shard_tokens: int = 1 << 16,
                dtype: torch.dtype | str = torch.float32, resume: bool = True,
                overwrite: bool = False) -> "ActivationCache":
    """Write activations from ``stream`` into a sharded cache at ``out_dir`` and return it.

    Args:
        stream: an :class:`ActivationStream` (resumable) or any iterable of (N, d) tensors.
        out_dir: cache directory (created).
        meta: provenance stored in the manifest: at least ``model`` and ``hook``; usually also
            ``corpus``, ``context_length``, ``split``. On resume it must equal the stored one.
        shard_tokens: target tokens per shard; shards close at the first batch boundary at or past
            it, so a resumed run restarts exactly after the last finished shard's windows.
        dtype: storage dtype (float32, float16 or bfloat16).
        resume: continue a partial cache in ``out_dir`` (needs a resumable stream).
        overwrite: delete an existing cache in ``out_dir`` first.

    Each shard is written to a temporary file and renamed into place, and the manifest is
    rewritten (atomically) after every shard, so a killed run loses at most one shard of work
    (``CacheWriter``).
    """
    root = Path(out_dir)
    dname = _dtype_name(dtype)
    _check_build_args(meta, shard_tokens)
    writer = CacheWriter.open(root, meta, dname, shard_tokens, resume, overwrite)
    if writer.manifest.complete:
        return ActivationCache(root)
    _check_stream(stream, writer.manifest, root)
    clean_stale_tmp(root)  # stray temporaries of a killed run are garbage
    for acts, windows_end in _batches(stream, writer):
        writer.add(acts, windows_end)
    writer.finish(meta)
    return ActivationCache(root)


def _empty_reason(root: Path, meta: dict[str, Any], n_windows: int) -> str:
    what = f"the {meta['split']} split of corpus {meta.get('corpus')!r}" if meta.get("split") else "the stream"
    if n_windows:
        why = f"all {n_windows} token windows of {what} hold only excluded (special) tokens"
    elif meta.get("split") == "holdout" and meta.get("holdout_every"):
        n = meta["holdout_every"]
        why = (f"{what} holds no documents: document i is held out when i % {n} == {n - 1}, and the corpus has "
               f"fewer than {n} non-blank documents (lower holdout_every, or use a larger corpus)")
    else:
        why = f"{what} holds no documents with text tokens"
    return f"no activations to cache in {root}: {why}"


_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) of shards whose checksum passed


class ActivationCache:
    """Read access to a cache written by :func:`build_cache`.

    Args:
        path: cache directory.
        model / hook / d_model: if given, must match the manifest (else :class:`CacheError`).
        allow_incomplete: accept a cache whose extraction has not finished.
        verify: check each shard's checksum when it is read (the default; once per process for
            an unchanged file). Sizes and the safetensors header are checked either way.
        shards: restrict to these shard indices (used by :meth:`split`).
    """

    def __init__(self, path: str | Path, model: str | None = None, hook: str | None = None,
                 d_model: int | None = None, allow_incomplete: bool = False, verify: bool = True,
                 shards: list[int] | None = None) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        m = self.manifest
        for key, want in (("model", model), ("hook", hook), ("d_model", d_model)):
            if want is not None and str(m[key]) != str(want):
                raise CacheError(f"cache {self.path} holds {key} {m[key]!r}, but {want!r} was "
                                 "requested")
        if not m.get("complete", False) and not allow_incomplete:
            raise CacheError(f"cache {self.path} is incomplete ({m['n_tokens']} tokens so far): "
                             "resume the extraction, or pass allow_incomplete=True")
        if m["dtype"] not in _DTYPES:
            raise CacheError(f"cache {self.path}: unknown dtype {m['dtype']!r} in manifest")
        all_shards = [ShardEntry.from_dict(s) for s in m["shards"]]
        idx = list(range(len(all_shards))) if shards is None else list(shards)
        self._index = idx
        self.verify = verify
        self.shards = [all_shards[i] for i in idx]
        for s in self.shards:
            p = self.path / s.file
            if not p.is_file():
                raise CacheError(f"cache {self.path}: shard {s.file} is missing")
            if p.stat().st_size != s.bytes:
                raise CacheError(f"cache {self.path}: shard {s.file} has {p.stat().st_size} bytes, "
                                 f"manifest says {s.bytes} (truncated or replaced)")

    # -- facts -------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        """Tokens in this cache (or view)."""
        return sum(s.n_tokens for s in self.shards)

    @property
    def d_in(self) -> int:
        """Activation width (the SAE's input dimension)."""
        return int(self.manifest["d_model"])

    @property
    def dtype(self) -> torch.dtype:
        """Storage dtype."""
        return _DTYPES[self.manifest["dtype"]]

    def __len__(self) -> int:
        return self.n_tokens

    def n_batches(self, batch_size: int, epochs: int = 1, drop_last: bool = False) -> int:
        """Number of batches :meth:`iter_batches` yields with these arguments."""
        total = self.n_tokens * epochs
        return total // batch_size if drop_last else math.ceil(total / batch_size)

    def __repr__(self) -> str:
        return (f"ActivationCache({str(self.path)!r}, model={self.manifest['model']!r}, "
                f"hook={self.manifest['hook']!r}, n_tokens={self.n_tokens}, d_in={self.d_in}, "
                f"dtype={self.manifest['dtype']}, shards={len(self.shards)})")

    # -- reading -----------------------------------------------------------------------------
    def load_shard(self, i: int) -> torch.Tensor:
        """Shard ``i`` of this view as a tensor in the storage dtype, checked against the manifest."""
        s = self.shards[i]
        p = self.path / s.file
        try:
            st = p.stat()
        except OSError:
            st = None
        memo = (str(p.resolve()), st.st_size, st.st_mtime_ns) if st else None
        check = self.verify and memo not in _VERIFIED
        header = read_header(p, CacheError)
        if check and s.crc32 is None and s.sha256 and _sha256(p) != s.sha256:  # a format-1 cache
            raise CacheError(f"cache {self.path}: shard {s.file} fails its sha256 check (the file changed on disk)")
        t, _ = load_tensors(p, header=header, verify=check, checksum=s.crc32 if check else None, cls=CacheError)
        if check and memo:
            _VERIFIED.add(memo)
        if TENSOR_KEY not in t:
            raise CacheError(f"cache {self.path}: shard {s.file} has no tensor {TENSOR_KEY!r}")
        x = t[TENSOR_KEY]
        if tuple(x.shape) != (s.n_tokens, self.d_in):
            raise CacheError(f"cache {self.path}: shard {s.file} has shape {tuple(x.shape)}, "
                             f"manifest says ({s.n_tokens}, {self.d_in})")
        if x.dtype != self.dtype:
            raise CacheError(f"cache {self.path}: shard {s.file} has dtype {x.dtype}, manifest "
                             f"says {self.manifest['dtype']}")
        return x

    def iter_batches(self, batch_size: int, shuffle: bool = True, seed: int = 0, epochs: int = 1,
                     dtype: torch.dtype = torch.float32, buffer_shards: int = 4,
                     drop_last: bool = False, device: str | torch.device = "cpu"
                     ) -> Iterator[torch.Tensor]:
        """Yield (batch_size, d_in) tensors, ``epochs`` passes over the cache.

        With ``shuffle``, shards are visited in a random order (per epoch) and tokens are shuffled
        within a buffer of ``buffer_shards`` shards; at most ``buffer_shards`` shards (plus one
        partial batch) are in memory. Without it, tokens come in storage order. Deterministic for
        a given ``seed``. The last batch of the run may be short unless ``drop_last``.
        """
        if batch_size < 1:
            raise CacheError(f"batch_size must be >= 1, got {batch_size}")
        gen = torch.Generator().manual_seed(seed)
        carry: torch.Tensor | None = None
        for _ in range(epochs):
            order = torch.randperm(len(self.shards), generator=gen).tolist() if shuffle \
                else list(range(len(self.shards)))
            step = max(1, buffer_shards) if shuffle else 1
            for g in range(0, len(order), step):
                parts = [self.load_shard(i) for i in order[g:g + step]]
                if carry is not None:
                    parts.insert(0, carry)
                x = torch.cat(parts) if len(parts) > 1 else parts[0]
                if shuffle:
                    x = x.index_select(0, torch.randperm(x.shape[0], generator=gen))
                n_full = (x.shape[0] // batch_size) * batch_size
                for s in range(0, n_full, batch_size):
                    yield x[s:s + batch_size].to(device=device, dtype=dtype)
                carry = x[n_full:] if n_full < x.shape[0] else None
        if carry is not None and carry.shape[0] and not drop_last:
            yield carry.to(device=device, dtype=dtype)

    def split(self, holdout_fraction: float) -> tuple["ActivationCache", "ActivationCache"]:
        """Split into (train, holdout) views over disjoint shards: the last
        ``ceil(holdout_fraction * n_shards)`` shards are held out. Needs >= 2 shards.

        For a held-out set of documents never seen in training, prefer building a separate cache
        from ``split_documents(corpus, "holdout")``; this split holds out whole shards, i.e.
        contiguous runs of windows.
        """
        n = len(self.shards)
        if not 0 < holdout_fraction < 1:
            raise CacheError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
        if n < 2:
            raise CacheError(f"cache {self.path} has {n} shard(s); splitting needs at least 2 "
                             "(rebuild with a smaller shard_tokens)")
        k = min(n - 1, max(1, math.ceil(holdout_fraction * n)))
        kw = dict(allow_incomplete=True)
        return (ActivationCache(self.path, shards=self._index[: n - k], **kw),
                ActivationCache(self.path, shards=self._index[n - k:], **kw))
