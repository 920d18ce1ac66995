"""safetensors files with a checksum, checked shapes and no surprises: the one home of probsae's
tensor-file reading and writing (SAE weights, training checkpoints, activation-cache shards).

Files are standard safetensors (any safetensors reader opens them). ``save_tensors`` adds one
metadata entry, ``probsae_crc32``: a CRC-32 over every tensor's name, dtype, shape and offsets,
the other metadata entries and the CRC-32s of all tensor bytes in 16 MiB blocks (computed in
parallel threads), so a flipped byte anywhere in the file except in padding is detected.
``load_tensors``

* reads and validates the header first (its size, the dtypes, that the offsets tile the data
  exactly), and checks names, shapes and dtypes against what the caller expects *before* reading
  or allocating any tensor data, so a config that claims 5,000,000 latents fails at once;
* maps the data (private, copy-on-write ``mmap``: no copy until a tensor is written to) and
  verifies the checksum when the file has one (files written by other tools have none and are
  only structure-checked);
* optionally refuses non-floating or non-finite tensors.

Pickle is never involved. Cost: CRC-32 runs at about 1.3 GB/s per core (zlib 1.2.13), on as
many cores as there are blocks; see docs/INTEGRITY.md for measurements.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import Tensor

from .errors import ProbSAEError, SAEFileError
from .io import atomic_write, io_error

CHECKSUM_KEY = "probsae_crc32"
MAX_HEADER_BYTES = 100 * 1024 * 1024

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class Entry:
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class Header:
    entries: dict[str, Entry]
    metadata: dict[str, str]
    data_start: int
    data_bytes: int


def _flat_bytes(t: Tensor):
    """A zero-copy uint8 numpy view of a contiguous CPU tensor's bytes."""
    return t.reshape(-1).view(torch.uint8).numpy()


CRC_BLOCK = 16 << 20
"""Tensor bytes are checksummed in blocks of this size, in parallel threads (zlib releases the GIL)."""


def _checksum(canonical: bytes, tensors: list) -> str:
    """CRC-32 of the canonical header description followed by the big-endian CRC-32 of every
    ``CRC_BLOCK``-byte block of every tensor's bytes (``tensors``: byte buffers, in file order)."""
    blocks = [mv[i:i + CRC_BLOCK] for t in tensors for mv in [memoryview(t).cast("B")]
              for i in range(0, len(mv), CRC_BLOCK)]
    workers = min(len(blocks), os.cpu_count() or 1, 16)
    if workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            crcs = list(ex.map(zlib.crc32, blocks))
    else:
        crcs = [zlib.crc32(b) for b in blocks]
    return f"{zlib.crc32(b''.join(c.to_bytes(4, 'big') for c in crcs), zlib.crc32(canonical)):08x}"


def _canonical(entries: dict[str, Entry], metadata: dict[str, str]) -> bytes:
    desc = {"tensors": [[n, e.dtype, list(e.shape), e.begin, e.end] for n, e in sorted(entries.items())],
            "metadata": {k: v for k, v in sorted(metadata.items()) if k != CHECKSUM_KEY}}
    return json.dumps(desc, separators=(",", ":")).encode()


def save_tensors(path: str | os.PathLike, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> str:
    """Write ``tensors`` (any device; moved to CPU) as a safetensors file with a CRC-32
    (atomically, through ``probsae.io.atomic_write``); returns the CRC-32 (8 hex digits).
    ``metadata`` values must be strings."""
    meta = dict(metadata or {})
    if any(not isinstance(k, str) or not isinstance(v, str) for k, v in meta.items()):
        raise TypeError("safetensors metadata keys and values must be strings")
    cpu: dict[str, Tensor] = {}
    for name, t in tensors.items():
        if t.dtype not in _NAMES:
            raise TypeError(f"tensor {name!r} has dtype {t.dtype}, which probsae does not store")
        cpu[name] = t.detach().to("cpu").contiguous()
    # widest element first keeps every tensor aligned to its element size
    order = sorted(cpu, key=lambda n: (-cpu[n].element_size(), n))
    entries, pos = {}, 0
    for n in order:
        size = cpu[n].numel() * cpu[n].element_size()
        entries[n] = Entry(_NAMES[cpu[n].dtype], tuple(cpu[n].shape), pos, pos + size)
        pos += size
    meta[CHECKSUM_KEY] = _checksum(_canonical(entries, meta), [_flat_bytes(cpu[n]) for n in order if cpu[n].numel()])
    header: dict[str, Any] = {"__metadata__": meta}
    header.update({n: {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [e.begin, e.end]}
                   for n, e in entries.items()})
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(len(head).to_bytes(8, "little"))
            f.write(head)
            for n in order:
                if cpu[n].numel():
                    f.write(_flat_bytes(cpu[n]))

    atomic_write(path, write)
    return meta[CHECKSUM_KEY]


def _bad(cls, path, why: str) -> ProbSAEError:
    return cls(f"{path} is not a valid safetensors file: {why}")


def read_header(path: str | os.PathLike, cls: type[ProbSAEError] = SAEFileError) -> Header:
    """The validated header of a safetensors file (reads only the header)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little") if size >= 8 else -1
            if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):
                raise _bad(cls, path, f"its header size field ({n}) does not fit the file's {size} bytes")
            raw = f.read(n)
    except OSError as e:
        raise io_error("read", path, e, cls) from e
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(cls, path, f"its header is not valid JSON ({e})") from None
    except RecursionError:
        raise _bad(cls, path, "its header's JSON is nested too deeply to parse") from None
    if not isinstance(obj, dict):
        raise _bad(cls, path, "its header is not a JSON object")
    meta = obj.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or any(not isinstance(v, str) for v in meta.values()):
        raise _bad(cls, path, "its __metadata__ is not a map of strings")
    entries: dict[str, Entry] = {}
    for name, info in obj.items():
        try:
            dtype, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
            ok = dtype in DTYPES and isinstance(shape, list) and all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape) \
                and all(isinstance(x, int) and not isinstance(x, bool) for x in (b, e))
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise _bad(cls, path, f"tensor {name!r} has a malformed or unsupported entry {str(info)[:120]}")
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        if not 0 <= b <= e or e - b != nbytes:
            raise _bad(cls, path, f"tensor {name!r} ({dtype} {shape}) has data offsets {[b, e]} that do not "
                                  f"match its {nbytes} bytes")
        entries[name] = Entry(dtype, tuple(shape), b, e)
    data_bytes = size - 8 - n
    pos = 0
    for name, ent in sorted(entries.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if ent.begin != pos:
            raise _bad(cls, path, f"tensor {name!r} starts at byte {ent.begin} of the data, expected {pos}")
        pos = ent.end
    if pos != data_bytes:
        raise _bad(cls, path, f"the tensors cover {pos} bytes but the file holds {data_bytes} (truncated or extended)")
    return Header(entries, {str(k): v for k, v in meta.items()}, 8 + n, data_bytes)


def check_entries(header: Header, path, expect: dict[str, tuple[tuple[int, ...], torch.dtype | None]],
                  cls: type[ProbSAEError] = SAEFileError, allow_missing: Iterable[str] = ()) -> None:
    """Names, shapes and dtypes of ``header`` against ``expect`` ({name: (shape, dtype or None)})."""
    missing = sorted(set(expect) - set(header.entries) - set(allow_missing))
    extra = sorted(set(header.entries) - set(expect))
    if missing or extra:
        raise cls(f"{path} does not hold the expected tensors: missing {missing}, unexpected {extra}")
    for name, ent in header.entries.items():
        shape, dtype = expect[name]
        if ent.shape != tuple(shape):
            raise cls(f"{path}: tensor {name!r} has shape {list(ent.shape)}, expected {list(shape)}")
        if dtype is not None and ent.torch_dtype != dtype:
            raise cls(f"{path}: tensor {name!r} has dtype {ent.torch_dtype}, expected {dtype}")


def load_tensors(path: str | os.PathLike, *, expect: dict | None = None, verify: bool = True,
                 checksum: str | bool | None = None, floating: Iterable[str] | bool = False,
                 finite: bool = False, cls: type[ProbSAEError] = SAEFileError, header: Header | None = None
                 ) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, checked as the module docstring says.

    ``expect``: {name: (shape, dtype or None)} checked against the header before any data is read.
    ``verify``: check the file's CRC-32 if it carries one. ``checksum``: True — the file must
    carry one (probsae wrote it: a missing one means its header was altered); a string — the
    file's CRC-32 must be this one (recorded elsewhere, e.g. in a manifest).
    ``floating``: True (every tensor) or the names that must hold floating-point values.
    ``finite``: refuse NaN/inf in floating-point tensors."""
    h = header or read_header(path, cls)
    if expect is not None:
        check_entries(h, path, expect, cls)
    must_float = set(h.entries) if floating is True else set(floating or ())
    for name in sorted(must_float & set(h.entries)):
        if not h.entries[name].torch_dtype.is_floating_point:
            raise cls(f"{path}: tensor {name!r} has dtype {h.entries[name].torch_dtype}, expected floating point")
    recorded = h.metadata.get(CHECKSUM_KEY)
    if checksum is True and recorded is None:
        raise cls(f"{path} carries no {CHECKSUM_KEY} although probsae wrote it: its header was altered")
    if isinstance(checksum, str) and recorded != checksum:
        raise cls(f"{path} carries checksum {recorded}, but {checksum} was recorded for it: the file was replaced "
                  "or its header altered")
    try:
        with open(path, "rb") as f:
            # a private (copy-on-write) mapping: the checksum reads the page cache directly and the
            # tensors share the pages; nothing is copied until a tensor is written to
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError) as e:
        raise io_error("read", path, e, cls) from e
    if len(buf) != h.data_start + h.data_bytes:
        raise _bad(cls, path, f"it changed size while being read ({len(buf)} bytes, expected {h.data_start + h.data_bytes})")
    if verify and recorded is not None:
        data = memoryview(buf)
        ranges = sorted((e.begin, e.end) for e in h.entries.values() if e.end > e.begin)
        crc = _checksum(_canonical(h.entries, h.metadata), [data[h.data_start + b:h.data_start + e] for b, e in ranges])
        if crc != recorded:
            raise cls(f"{path} is corrupt: its CRC-32 is {crc} but {recorded} was recorded when it "
                      "was written (the file changed on disk since)")
    out: dict[str, Tensor] = {}
    for name, ent in h.entries.items():
        dt, start = ent.torch_dtype, h.data_start + ent.begin
        if ent.end == ent.begin:
            t = torch.empty(ent.shape, dtype=dt)
        elif start % dt.itemsize == 0:
            t = torch.frombuffer(buf, dtype=dt, count=(ent.end - ent.begin) // dt.itemsize, offset=start)
        else:  # a foreign file with a misaligned tensor: copy it out
            t = torch.frombuffer(bytearray(buf[start:h.data_start + ent.end]), dtype=dt)
        out[name] = t.reshape(ent.shape)
    bad = nonfinite_names(out) if finite else []
    if bad:
        raise cls(f"{path}: tensor(s) {', '.join(map(repr, bad))} hold NaN/inf values")
    return out, h.metadata


def _is_log(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("log_")


def nonfinite_names(tensors: dict[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or ±inf, with one host sync for all of
    them. −inf is allowed in ``log_*`` tensors (it encodes 0, e.g. a JumpReLU threshold θ = 0)."""
    items = [(k, v) for k, v in tensors.items() if v.is_floating_point() and v.numel()]
    if not items:
        return []
    flags = torch.stack([(torch.isnan(v) | torch.isposinf(v)).any() if _is_log(k) else (~torch.isfinite(v)).any()
                         for k, v in items]).cpu().tolist()
    return [k for (k, _), bad in zip(items, flags) if bad]
