"""File reading and writing that never leaves a torn file and never fails with a bare traceback.

Every file probsae writes (weights, configs, checkpoints, cache shards and manifests, logs that are
rewritten, metrics, reports, figures) goes through ``atomic_write``: the content is written to a
temporary file in the destination's directory, flushed to disk, given the permissions an ordinary
file gets (0666 minus the umask, i.e. 0644 by default, so colleagues on a shared cluster can read
it), then renamed over the destination. A crash or kill at any moment leaves either the old file
or the new one, never a mix. Temporary files a killed process left behind match ``TMP_GLOB`` and
are removed by ``clean_stale_tmp`` (every command that writes into a directory calls it first).
The one exception is ``append_line`` (the training log): a kill can tear only its last line,
which readers drop.

Operating-system failures become a :class:`~probsae.errors.FileIOError` naming the path and the
cause in words ("disk full", "permission denied", "read-only file system", …); ``read_json`` also
names invalid UTF-8, invalid JSON and JSON of the wrong type.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import time
import uuid
import zlib
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, FileIOError, ProbSAEError

TMP_MARKER = ".probsae-tmp-"
"""Every temporary file is named ``.<name>.probsae-tmp-<pid>-<random>``."""
TMP_GLOB = f".*{TMP_MARKER}*"
STALE_TMP_AGE_S = 3600.0
"""A temporary file whose writer still runs on this machine is left alone unless it is older than this."""

_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large: the file system's or the process's file-size limit (ulimit -f) was reached",
    errno.ENOENT: "no such file or directory",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "it is a directory",
    errno.EEXIST: "it already exists",
    errno.ENAMETOOLONG: "file name too long",
    errno.EIO: "input/output error",
    errno.EMFILE: "too many open files",
}
_OS_ERROR_IN_TEXT = re.compile(r"os error (\d+)|errno (\d+)|\[Errno (\d+)\]", re.IGNORECASE)


def os_reason(e: BaseException) -> str:
    """The cause of an operating-system error in words ("disk full", "permission denied", …)."""
    code = error_number(e)
    if code in _REASONS:
        return _REASONS[code]
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e)


def error_number(e: BaseException | None) -> int | None:
    """The errno behind ``e``: its own, one in its cause chain, or one a library quoted in its
    message (safetensors and torch wrap OS errors as "… (os error 28)")."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno is not None:
            return e.errno
        m = _OS_ERROR_IN_TEXT.search(str(e))
        if m:
            return int(next(g for g in m.groups() if g))
        e = e.__cause__ or e.__context__
        seen += 1
    return None


def io_error(action: str, path: str | os.PathLike, e: BaseException, cls: type[ProbSAEError] = FileIOError) -> ProbSAEError:
    """``cls("cannot <action> <path> (<cause>)")``, e.g. "cannot write run/metrics.json (disk full)"."""
    return cls(f"cannot {action} {path} ({os_reason(e)})")


# ---- writing ------------------------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def atomic_write(dest: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then move it over ``dest`` atomically.

    ``write`` receives a path in ``dest``'s directory and must create the file there (e.g.
    ``lambda tmp: fig.savefig(tmp, format="png")``). Returns ``dest`` as a Path. An OS failure
    (also one a library wrapped in its own exception) raises ``FileIOError`` naming ``dest`` and
    the cause; the old ``dest``, if any, is left as it was."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}{TMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    except ProbSAEError:
        raise
    except Exception as e:
        if isinstance(e, OSError) or error_number(e) is not None:
            raise io_error("write", dest, e) from e
        raise
    finally:
        _unlink_quietly(tmp)
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


def atomic_write_jsonl(dest: str | os.PathLike, records: list) -> Path:
    """One strict-JSON object per line."""
    return atomic_write_text(dest, "".join(dumps_json(r, indent=None) + "\n" for r in records))


def atomic_savefig(fig, dest: str | os.PathLike, **kw: Any) -> Path:
    """``fig.savefig`` through ``atomic_write`` (the format comes from ``dest``'s suffix)."""
    fmt = Path(dest).suffix.lstrip(".") or "png"
    return atomic_write(dest, lambda tmp: fig.savefig(tmp, format=fmt, **kw))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line (the training log). Not atomic: a kill can tear the last line only."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")
    except OSError as e:
        raise io_error("append to", path, e) from e


# ---- reading ------------------------------------------------------------------------------------

def read_bytes(path: str | os.PathLike, cls: type[ProbSAEError] = FileIOError) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise io_error("read", path, e, cls) from e


def decode_utf8(data: bytes, path: str | os.PathLike, cls: type[ProbSAEError] = FileIOError) -> str:
    """``data`` decoded as UTF-8, or ``cls`` naming the file, line and byte of the first invalid byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise cls(f"{path} is not UTF-8 text: invalid byte 0x{data[e.start]:02x} at byte {e.start} "
                  f"(line {line})") from None


def read_text(path: str | os.PathLike, cls: type[ProbSAEError] = FileIOError) -> str:
    return decode_utf8(read_bytes(path, cls), path, cls)


_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
               bool: "true/false", type(None): "null"}


def json_type_name(obj: Any) -> str:
    return _JSON_TYPES.get(type(obj), type(obj).__name__)


def read_json(path: str | os.PathLike, expect: type | tuple[type, ...] = dict,
              cls: type[ProbSAEError] = FileIOError) -> Any:
    """Parse the JSON file ``path`` and check that its top level is ``expect`` (default: an
    object). Unreadable files, invalid UTF-8, invalid JSON and the wrong type raise ``cls`` naming
    the file and what is wrong (also JSON nested too deeply for Python's parser)."""
    text = read_text(path, cls)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise cls(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise cls(f"{path} is not usable JSON: its arrays/objects are nested too deeply to parse") from None
    if not isinstance(obj, expect):
        want = expect if isinstance(expect, tuple) else (expect,)
        raise cls(f"{path} holds {json_type_name(obj)} where {' or '.join(_JSON_TYPES.get(t, t.__name__) for t in want)} "
                  "was expected")
    return obj


def read_jsonl(path: str | os.PathLike, cls: type[ProbSAEError] = FileIOError,
               check: Callable[[dict[str, Any]], str | None] | None = None) -> list[dict[str, Any]]:
    """The records of a JSONL file written with ``append_line`` (a log); [] if it does not exist.
    A last line that is not valid JSON (torn by a kill) is dropped; any other invalid line,
    invalid UTF-8, a line that is not a JSON object, or a record for which ``check`` returns a
    problem raises ``cls`` naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = read_text(path, cls).splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):
                continue  # the last line, torn by a kill
            raise cls(f"{path} line {i} is not valid JSON ({e.msg}): the log is corrupt") from None
        if not isinstance(rec, dict):
            raise cls(f"{path} line {i} is not a JSON object: the log is corrupt")
        problem = check(rec) if check is not None else None
        if problem:
            raise cls(f"{path} line {i}: {problem}: the log is corrupt")
        out.append(rec)
    return out


def json_field(obj: dict, key: str, expect: type | tuple[type, ...], path: str | os.PathLike,
          cls: type[ProbSAEError] = FileIOError) -> Any:
    """``obj[key]`` checked to be ``expect`` (a bool is not accepted as a number)."""
    if key not in obj:
        raise cls(f"{path}: field {key!r} is missing")
    v = obj[key]
    want = expect if isinstance(expect, tuple) else (expect,)
    if not isinstance(v, want) or (isinstance(v, bool) and bool not in want):
        raise cls(f"{path}: field {key!r} holds {json_type_name(v)} ({v!r:.40}), expected "
                  f"{' or '.join(_JSON_TYPES.get(t, t.__name__) for t in want)}")
    return v


# ---- directories --------------------------------------------------------------------------------

def ensure_dir(path: str | os.PathLike, what: str = "directory") -> Path:
    """Create ``path`` (and its parents); a file in the way or a denied permission is a
    ``FileIOError`` naming the path."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FileIOError(f"{what} {p} is a file, not a directory") from None
    except OSError as e:
        raise io_error(f"create {what}", p, e) from e
    return p


def check_writable_dir(path: str | os.PathLike, what: str = "directory") -> Path:
    """Create ``path`` if needed and check that a file can be created in it (before any work is
    done whose result would then be lost)."""
    p = ensure_dir(path, what)
    probe = p / f".write-test{TMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch()
    except OSError as e:
        raise io_error(f"write into {what}", p, e) from e
    _unlink_quietly(probe)
    return p


def check_output_dir(path: str | os.PathLike, is_ours: Callable[[Path], bool], force: bool, what: str) -> Path:
    """Refuse to write into ``path`` when it is a non-empty directory that ``is_ours`` does not
    recognise (the user's own files would be overwritten), unless ``force``. Returns the path."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise FileIOError(f"{p} is a file, not a directory")
    if not p.is_dir() or force:
        return p
    try:
        entries = [e for e in p.iterdir() if TMP_MARKER not in e.name]
    except OSError as e:
        raise io_error("list", p, e) from e
    if entries and not is_ours(p):
        shown = ", ".join(sorted(e.name for e in entries)[:5]) + (", …" if len(entries) > 5 else "")
        raise ConfigError(f"{p} is not empty ({shown}) and is not a {what}: refusing to overwrite its files. "
                          "Choose another output directory, or pass --force (force=True) to write into it anyway")
    return p


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def clean_stale_tmp(directory: str | os.PathLike, max_age_s: float = STALE_TMP_AGE_S) -> int:
    """Remove the temporary files of killed writers in ``directory``; returns how many.

    A temporary file is stale when the process that wrote it (its name holds the pid) no longer
    runs on this machine, or when it has not been touched for ``max_age_s`` seconds."""
    d = Path(directory)
    try:
        files = list(d.glob(TMP_GLOB)) if d.is_dir() else []
    except OSError:
        return 0
    n, now = 0, time.time()
    for f in files:
        m = re.search(re.escape(TMP_MARKER) + r"(\d+)-", f.name)
        try:
            if not f.is_file():
                continue
            fresh = now - f.stat().st_mtime < max_age_s
            if m and fresh and (int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1)))):
                continue
            f.unlink()
            n += 1
        except OSError:
            pass
    return n


# ---- fingerprints -------------------------------------------------------------------------------

CONTENT_HASH_LIMIT = 64 << 20
"""Files totalling at most this many bytes are fingerprinted by content, larger ones by size and mtime."""


def files_fingerprint(root: Path, files: list[Path]) -> dict[str, list]:
    """{path relative to ``root``: [size, CRC-32 of the content]} when the files total at most
    ``CONTENT_HASH_LIMIT`` bytes, else {…: [size, mtime in ns]} (cheap for big corpora and models)."""
    try:
        stats = [(f, f.stat()) for f in files]
        by_content = sum(st.st_size for _, st in stats) <= CONTENT_HASH_LIMIT
        out = {}
        for f, st in stats:
            name = f.name if f == root else str(f.relative_to(root))
            out[name] = [st.st_size, f"crc32:{zlib.crc32(f.read_bytes()):08x}" if by_content else st.st_mtime_ns]
    except OSError as e:
        raise io_error("read", getattr(e, "filename", None) or root, e) from e
    return out
