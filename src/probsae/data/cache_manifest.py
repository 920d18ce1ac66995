"""The manifest of an activation cache (``manifest.json``), typed: ``CacheManifest`` and its
``ShardEntry`` list, read and written with exactly the JSON content ``build_cache`` has always
written (keys it does not know are kept as they are). ``read_manifest`` checks the file.
See data/cache.py for the cache layout."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from probsae.data.errors import CacheError
from probsae.io import atomic_write_json, json_field, read_json

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
NORMALISATION_NOTE = ("raw activations at the hook point; no normalisation applied "
                      "(input normalisation belongs to the SAE)")
PAIR_NOTE = ("; each row is the pair [input | target] of the activations at hook and at target_hook "
             "(d_model = both widths; equal halves for a transcoder)")

_MANIFEST_FIELDS = {"format_version": int, "d_model": (int, type(None)), "dtype": str, "shards": list,
                    "n_tokens": int, "model": str, "hook": str}
_SHARD_FIELDS = {"file": str, "n_tokens": int, "bytes": int}


def now() -> str:
    """The manifest's timestamp format (local time with its UTC offset)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _known(cls) -> list[str]:
    return [f.name for f in fields(cls) if f.name != "extra"]


def _to_dict(obj, keep_none: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object of ``obj``: its fields in order (an optional field that is None is left
    out unless named in ``keep_none``), then its ``extra`` keys."""
    out: dict[str, Any] = {}
    for name in _known(type(obj)):
        v = getattr(obj, name)
        if v is not None or name in keep_none:
            out[name] = [s.to_dict() for s in v] if name == "shards" else v
    return {**out, **obj.extra}


def _split(cls, d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the known fields present in ``d``, the other keys)."""
    names = set(_known(cls))
    return {k: v for k, v in d.items() if k in names}, {k: v for k, v in d.items() if k not in names}


@dataclass
class ShardEntry:
    """One shard file of a cache, as the manifest lists it."""

    file: str
    """File name inside the cache directory (``shard_00000.safetensors``)."""
    n_tokens: int
    """Rows (tokens) in the shard."""
    bytes: int
    """File size in bytes (checked on open)."""
    sha256: str | None = None
    """sha256 of the file: shards of early format-1 caches (new shards carry a CRC-32 instead)."""
    crc32: str | None = None
    """CRC-32 of the shard's tensor data (``probsae.tensorfile``), verified when it is read."""
    windows_end: int | None = None
    """Token windows of the stream consumed when the shard closed (where a resume restarts)."""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    """Keys of the JSON object this version does not know, kept as they are."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShardEntry:
        known, extra = _split(cls, d)
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass
class CacheManifest:
    """``manifest.json`` of an activation cache."""

    format_version: int
    """Cache format (``FORMAT_VERSION``)."""
    model: str
    """The model the activations come from."""
    hook: str
    """The hook point they were taken at."""
    d_model: int | None
    """Activation width (row length); None until the first shard is written."""
    dtype: str
    """Storage dtype: float32, float16 or bfloat16."""
    n_tokens: int
    """Tokens (rows) in the finished shards."""
    n_windows: int | None = None
    """Token windows of the stream consumed by the finished shards."""
    shards: list[ShardEntry] = field(default_factory=list)
    """The finished shards, in order."""
    complete: bool | None = None
    """True once extraction has finished."""
    meta: dict[str, Any] | None = None
    """Provenance given to ``build_cache`` (for managed caches: the cache identity)."""
    normalisation: str | None = None
    """What the rows are (raw activations; the pair layout of a transcoder's cache)."""
    probsae_version: str | None = None
    """probsae version that created the cache."""
    created: str | None = None
    """When the cache was created."""
    updated: str | None = None
    """When the last shard was written (null before the first)."""
    target_hook: str | None = None
    """A transcoder's cache: the hook point of the target half of each row."""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    """Keys of the JSON object this version does not know, kept as they are."""

    @classmethod
    def new(cls, meta: dict[str, Any], dtype: str, version: str) -> CacheManifest:
        """The manifest of an empty cache for ``meta`` (which names ``model`` and ``hook``)."""
        man = cls(format_version=FORMAT_VERSION, model=str(meta["model"]), hook=str(meta["hook"]), d_model=None,
                  dtype=dtype, n_tokens=0, n_windows=0, shards=[], complete=False, meta=json.loads(json.dumps(meta)),
                  normalisation=NORMALISATION_NOTE, probsae_version=version, created=now(), updated=None)
        if meta.get("target_hook"):  # a transcoder's cache: each row is [input | target], d_model wide in all
            man.target_hook, man.normalisation = str(meta["target_hook"]), NORMALISATION_NOTE + PAIR_NOTE
        return man

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CacheManifest:
        known, extra = _split(cls, d)
        known["shards"] = [ShardEntry.from_dict(s) for s in known.get("shards", [])]
        return cls(**known, extra=extra)

    @classmethod
    def read(cls, root: Path) -> CacheManifest:
        """The checked manifest of the cache at ``root`` (``CacheError`` naming what is wrong)."""
        return cls.from_dict(read_manifest(root))

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self, keep_none=("d_model", "updated"))

    def write(self, root: Path) -> None:
        """Write ``root/manifest.json`` atomically."""
        atomic_write_json(root / MANIFEST, self.to_dict())


def read_manifest(root: Path) -> dict[str, Any]:
    """The JSON object of ``root/manifest.json``, checked: the required fields and their types,
    and shard entries that name plain files inside the cache."""
    if not root.is_dir():
        raise CacheError(f"activation cache {root} does not exist (or is not a directory)")
    mp = root / MANIFEST
    if not mp.is_file():
        raise CacheError(f"activation cache {root} has no {MANIFEST}: not a cache, or extraction "
                         "never finished a shard")
    man = read_json(mp, dict, CacheError)
    missing = [k for k in _MANIFEST_FIELDS if k not in man]
    if missing:
        raise CacheError(f"{mp} is corrupt: missing fields {missing}")
    for k, t in _MANIFEST_FIELDS.items():
        json_field(man, k, t, mp, CacheError)
    if not isinstance(man.get("meta", {}), dict):
        raise CacheError(f"{mp}: field 'meta' is not an object")
    for i, sh in enumerate(man["shards"]):
        if not isinstance(sh, dict):
            raise CacheError(f"{mp}: shards[{i}] is not an object")
        for k, t in _SHARD_FIELDS.items():
            json_field(sh, k, t, f"{mp} shards[{i}]", CacheError)
        if "/" in sh["file"] or "\\" in sh["file"] or sh["file"].startswith("."):
            raise CacheError(f"{mp}: shards[{i}] names the file {sh['file']!r}, which is not a shard file name")
    return man
