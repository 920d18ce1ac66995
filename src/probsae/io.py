"""File writing that never leaves a torn file: the one home of probsae's tmp-and-rename.

Every file probsae writes (weights, configs, checkpoints, cache shards and manifests, logs that are
rewritten, metrics, reports) goes through ``atomic_write``: the content is written to a temporary
file in the destination's directory, flushed to disk, given the permissions an ordinary file gets
(0666 minus the umask, i.e. 0644 by default, so colleagues on a shared cluster can read it), then
renamed over the destination. A crash or kill at any moment leaves either the old file or the new
one, never a mix. Temporary files a killed process left behind match ``TMP_GLOB`` and are removed
by ``clean_stale_tmp``.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Callable

TMP_MARKER = ".probsae-tmp-"
"""Every temporary file is named ``.<name>.probsae-tmp-<pid>-<random>``."""
TMP_GLOB = f".*{TMP_MARKER}*"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(dest: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then move it over ``dest`` atomically.

    ``write`` receives a path in ``dest``'s directory and must create the file there (e.g.
    ``lambda tmp: save_file(tensors, str(tmp))``). Returns ``dest`` as a Path."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}{TMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(dest, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(dest: str | os.PathLike, text: str) -> Path:
    return atomic_write(dest, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON has no NaN/Infinity)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def dumps_json(obj: Any, indent: int | None = 2, **kw: Any) -> str:
    """Strict JSON text (non-finite floats become null)."""
    return json.dumps(strict_json(obj), indent=indent, allow_nan=False, **kw)


def atomic_write_json(dest: str | os.PathLike, obj: Any, indent: int | None = 2, **kw: Any) -> Path:
    return atomic_write_text(dest, dumps_json(obj, indent=indent, **kw))


def clean_stale_tmp(directory: str | os.PathLike) -> int:
    """Remove the temporary files of killed writers in ``directory``; returns how many."""
    d = Path(directory)
    if not d.is_dir():
        return 0
    n = 0
    for f in d.glob(TMP_GLOB):
        if f.is_file():
            try:
                f.unlink()
                n += 1
            except OSError:
                pass
    return n
