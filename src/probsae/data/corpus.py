"""Text sources and their packing into fixed-length token windows.

Corpus specs accepted by :func:`load_corpus`:

* ``"pydoc"`` — offline default: Python's ``pydoc_data.topics`` plus docstrings of a fixed list
  of standard-library modules (deterministic for a given Python version).
* a local ``.txt`` (one document per blank-line-separated block), ``.jsonl`` (a ``text`` field),
  ``.parquet`` (a ``text`` column; needs pyarrow) file, or a directory of such files (sorted).
* ``"hf:NAME[:split]"`` — a Hugging Face dataset streamed with ``datasets`` (optional dependency).
* ``"offline-en"`` — the English corpus built offline by ``probsae corpus build offline-en``
  (``probsae.data.corpora``; resolved to its ``documents.jsonl``).

Hold-out: :func:`split_documents` keeps every ``holdout_every``-th document for evaluation.

Local files must be UTF-8: an invalid byte in a ``.txt`` or ``.jsonl`` file is a
:class:`CorpusError` naming the file, line and byte (never silently replaced), and an unreadable
file is reported when the corpus is opened, before any model runs.
"""

from __future__ import annotations

import importlib
import inspect
import io
import itertools
import json
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from probsae.data.corpora import resolve_named_corpus
from probsae.data.errors import CorpusError
from probsae.io import decode_utf8, files_fingerprint, io_error, read_bytes

# Fixed, deterministic list of stdlib modules whose docstrings make up the "pydoc" corpus.
# Modules with import side effects (this, antigravity, turtle, tkinter, idlelib...) are left out.
PYDOC_MODULES: tuple[str, ...] = (
    "abc", "argparse", "array", "ast", "asyncio", "base64", "bisect", "builtins", "bz2", "calendar",
    "cmath", "cmd", "codecs", "collections", "collections.abc", "colorsys", "concurrent.futures",
    "configparser", "contextlib", "contextvars", "copy", "copyreg", "csv", "ctypes", "dataclasses",
    "datetime", "decimal", "difflib", "dis", "doctest", "email", "email.message", "email.utils",
    "enum", "filecmp", "fileinput", "fnmatch", "fractions", "ftplib", "functools", "gc",
    "getopt", "getpass", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac", "html",
    "html.parser", "http", "http.client", "http.cookies", "http.server", "imaplib", "importlib",
    "importlib.metadata", "importlib.resources", "inspect", "io", "ipaddress", "itertools", "json",
    "keyword", "linecache", "locale", "logging", "logging.handlers", "lzma", "mailbox", "marshal",
    "math", "mimetypes", "mmap", "multiprocessing", "netrc", "numbers", "operator", "optparse", "os",
    "os.path", "pathlib", "pickle", "pickletools", "pkgutil", "platform", "plistlib", "poplib",
    "pprint", "profile", "pstats", "queue", "quopri", "random", "re", "reprlib", "rlcompleter",
    "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket",
    "socketserver", "sqlite3", "ssl", "stat", "statistics", "string", "stringprep", "struct",
    "subprocess", "symtable", "sys", "sysconfig", "tabnanny", "tarfile", "tempfile", "textwrap",
    "threading", "time", "timeit", "token", "tokenize", "tomllib", "trace", "traceback",
    "tracemalloc", "types", "typing", "unicodedata", "unittest", "unittest.mock", "urllib.parse",
    "urllib.request", "uuid", "warnings", "wave", "weakref", "xml.dom.minidom",
    "xml.etree.ElementTree", "xml.sax", "zipfile", "zipimport", "zlib", "zoneinfo",
)

#: Target size of a pydoc document in characters (documents are split at paragraph boundaries).
PYDOC_DOC_CHARS = 4000


def _clean(text: str) -> str:
    text = inspect.cleandoc(text).replace("\r\n", "\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _chunk(text: str, size: int) -> Iterator[str]:
    """Split ``text`` at paragraph boundaries into pieces of about ``size`` characters."""
    buf: list[str] = []
    n = 0
    for para in text.split("\n\n"):
        if buf and n + len(para) > size:
            yield "\n\n".join(buf)
            buf, n = [], 0
        buf.append(para)
        n += len(para) + 2
    if buf:
        yield "\n\n".join(buf)


def _module_text(name: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _module_text_unchecked(name)


def _module_text_unchecked(name: str) -> str | None:
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            mod = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a module that fails to import is skipped
        return None
    parts = [f"Module {name}\n\n{_clean(mod.__doc__)}" if mod.__doc__ else f"Module {name}"]
    for attr in sorted(vars(mod)):
        if attr.startswith("_"):
            continue
        obj = vars(mod)[attr]
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__module__", name) not in (name, None) and name != "builtins":
            continue  # re-exported from elsewhere
        doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else None
        if doc and doc.strip():
            parts.append(f"{name}.{attr}\n\n{_clean(doc)}")
        if inspect.isclass(obj):
            for meth in sorted(vars(obj)):
                mdoc = getattr(vars(obj)[meth], "__doc__", None)
                if meth.startswith("_") or not isinstance(mdoc, str) or not mdoc.strip():
                    continue
                if mdoc == doc or not callable(vars(obj)[meth]):
                    continue
                parts.append(f"{name}.{attr}.{meth}\n\n{_clean(mdoc)}")
    return "\n\n".join(parts)


def pydoc_documents(doc_chars: int = PYDOC_DOC_CHARS) -> Iterator[str]:
    """The offline "pydoc" corpus: ``pydoc_data.topics`` texts, then stdlib module docstrings."""
    from pydoc_data.topics import topics

    texts = (_clean(topics[k]) for k in sorted(topics))
    mods = (_module_text(name) for name in PYDOC_MODULES)
    for text in itertools.chain(texts, mods):
        for piece in _chunk(text or "", doc_chars):
            piece = re.sub(r"\n{3,}", "\n\n", piece).strip()
            if piece:
                yield piece


def _txt_documents(path: Path) -> Iterator[str]:
    text = decode_utf8(read_bytes(path, CorpusError), path, CorpusError)
    for block in re.split(r"\n\s*\n", text):
        if block.strip():
            yield block.strip()


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file; an invalid byte is a CorpusError naming its line."""
    try:
        with path.open("rb") as f:
            for i, raw in enumerate(f, 1):
                try:
                    yield i, raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise CorpusError(f"{path}:{i}: not UTF-8 text (invalid byte 0x{raw[e.start]:02x} at column "
                                      f"{e.start + 1}); re-encode the file as UTF-8") from None
    except OSError as e:
        raise io_error("read corpus file", path, e, CorpusError) from e


def _jsonl_documents(path: Path, text_field: str) -> Iterator[str]:
    for i, line in _lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}:{i}: invalid JSON ({e.msg})") from e
        if not isinstance(rec, dict) or text_field not in rec:
            raise CorpusError(f"{path}:{i}: record has no field {text_field!r} "
                              f"(set text_field to the right one)")
        if isinstance(rec[text_field], str) and rec[text_field].strip():
            yield rec[text_field]


def _parquet_documents(path: Path, text_field: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise CorpusError(f"reading {path} needs pyarrow: pip install 'probsae[parquet]'") from e
    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        raise CorpusError(f"{path}: no column {text_field!r} (columns: {pf.schema_arrow.names})")
    for batch in pf.iter_batches(columns=[text_field]):
        for t in batch.column(0).to_pylist():
            if isinstance(t, str) and t.strip():
                yield t


_SUFFIXES = (".txt", ".jsonl", ".parquet")


def _file_documents(path: Path, text_field: str) -> Iterator[str]:
    if path.suffix == ".txt":
        return _txt_documents(path)
    if path.suffix == ".jsonl":
        return _jsonl_documents(path, text_field)
    if path.suffix == ".parquet":
        return _parquet_documents(path, text_field)
    raise CorpusError(f"unsupported corpus file {path}: expected one of {', '.join(_SUFFIXES)}")


def _hf_documents(spec: str, text_field: str) -> Iterator[str]:
    rest = spec[len("hf:"):]
    name, _, split = rest.partition(":")
    try:
        import datasets
    except ImportError as e:
        raise CorpusError(f"corpus {spec!r} needs the 'datasets' package: "
                          "pip install 'probsae[hub]'") from e
    from probsae.data.models import hub_reachable

    if not hub_reachable():
        raise CorpusError(f"corpus {spec!r}: the Hugging Face hub is unreachable (offline or "
                          "HF_HUB_OFFLINE set); use a local .txt/.jsonl/.parquet corpus instead")
    ds = datasets.load_dataset(name, split=split or "train", streaming=True)
    for rec in ds:
        t = rec.get(text_field)
        if isinstance(t, str) and t.strip():
            yield t


class Corpus:
    """A re-iterable sequence of documents (each iteration starts again from the beginning)."""

    def __init__(self, spec: str, text_field: str = "text") -> None:
        self.spec = spec
        self.text_field = text_field
        self.path = resolve_named_corpus(spec) or spec  # 'offline-en' → its built documents.jsonl
        self._check()

    def _check(self) -> None:
        s = self.path
        if s == "pydoc" or s.startswith("hf:"):
            return
        p = Path(s)
        if not p.exists():
            raise CorpusError(f"corpus {s!r} not found: not 'pydoc', not 'hf:NAME[:split]' and not an "
                              "existing file or directory")
        if p.is_dir() and not self._files():
            raise CorpusError(f"corpus directory {s} has no {'/'.join(_SUFFIXES)} files")
        if p.is_file() and p.suffix not in _SUFFIXES:
            raise CorpusError(f"unsupported corpus file {p}: expected one of {', '.join(_SUFFIXES)}")
        for f in self._files():  # unreadable files fail now, not halfway through an extraction
            try:
                with f.open("rb") as fh:
                    fh.read(1)
            except OSError as e:
                raise io_error("read corpus file", f, e, CorpusError) from e

    def _files(self) -> list[Path]:
        p = Path(self.path)
        if p.is_file():
            return [p]
        try:
            return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in _SUFFIXES)
        except OSError as e:
            raise io_error("list corpus directory", p, e, CorpusError) from e

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this corpus's text (part of an activation cache's key): for local files
        the resolved path and each file's size and content hash (size and mtime for corpora over
        64 MiB); for 'pydoc' the Python version whose docstrings it reads; else the spec."""
        if self.spec == "pydoc":
            import sys

            return {"name": "pydoc", "python": "%d.%d" % sys.version_info[:2]}
        if self.spec.startswith("hf:"):
            return {"name": self.spec}
        root = Path(self.path).resolve()  # a built corpus's name: its documents file
        return {"path": str(root), "files": files_fingerprint(root, [f.resolve() for f in self._files()])}

    def __iter__(self) -> Iterator[str]:
        n = 0
        if self.spec == "pydoc":
            it: Iterable[str] = pydoc_documents()
        elif self.spec.startswith("hf:"):
            it = _hf_documents(self.spec, self.text_field)
        else:
            it = (d for f in self._files() for d in _file_documents(f, self.text_field))
        for doc in it:
            n += 1
            yield doc
        if n == 0:
            raise CorpusError(f"corpus {self.spec!r} is empty (no non-blank documents)")

    def __repr__(self) -> str:
        return f"Corpus({self.spec!r})"


def load_corpus(spec: str, text_field: str = "text") -> Corpus:
    """Open a corpus; iterate the result for documents (str). See the module docstring for specs."""
    return Corpus(spec, text_field=text_field)


def split_documents(docs: Iterable[str], part: str, holdout_every: int = 20) -> Iterator[str]:
    """Deterministic train/hold-out split: document ``i`` is held out iff ``i % holdout_every == 
    holdout_every - 1`` (every 20th by default). ``part`` is ``"train"``, ``"holdout"`` or ``"all"``.
    """
    if part not in ("train", "holdout", "all"):
        raise CorpusError(f"part must be 'train', 'holdout' or 'all', got {part!r}")
    if holdout_every < 2:
        raise CorpusError(f"holdout_every must be >= 2, got {holdout_every}")
    for i, d in enumerate(docs):
        held = i % holdout_every == holdout_every - 1
        if part == "all" or (part == "holdout") == held:
            yield d


@dataclass
class WindowBatch:
    """A batch of token windows.

    Attributes:
        input_ids: (B, T) long.
        attention_mask: (B, T) long, 0 on padding.
        token_mask: (B, T) bool, True on tokens whose activations are used (not special, not pad).
        first_window: index of this batch's first window in the whole window stream.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_mask: torch.Tensor
    first_window: int

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to_cpu(self) -> "WindowBatch":
        """This batch with its tensors on the CPU (itself if they already are)."""
        if all(t.device.type == "cpu" for t in (self.input_ids, self.attention_mask, self.token_mask)):
            return self
        return WindowBatch(self.input_ids.cpu(), self.attention_mask.cpu(), self.token_mask.cpu(), self.first_window)


def _tok_info(tokenizer: Any) -> dict[str, Any]:
    def tid(attr: str) -> int | None:
        v = getattr(tokenizer, attr, None)
        return int(v) if isinstance(v, int) else None

    info: dict[str, Any] = {k: tid(f"{k}_token_id") for k in ("bos", "eos", "cls", "sep", "pad")}
    # Structural special tokens only: UNK/MASK and chat markers count as ordinary tokens.
    info["special"] = {v for v in info.values() if v is not None}
    return info


def window_ids(docs: Iterable[str], tokenizer: Any, context_length: int, style: str = "auto",
               prepend_bos: bool = True, drop_last: bool = False, tokenize_chunk: int = 64
               ) -> Iterator[list[int]]:
    """Pack tokenised documents into windows of at most ``context_length`` token ids.

    Styles: ``"bert"`` — each window is ``[CLS] tokens [SEP]``, documents inside a window separated
    by ``[SEP]``; ``"causal"`` — documents concatenated with EOS separators, each window starting
    with BOS (or EOS if the tokenizer has no BOS) when ``prepend_bos``. ``"auto"``: ``"bert"`` if the
    tokenizer has CLS and SEP tokens and no BOS/EOS, else ``"causal"``. The last partial window is
    yielded (shorter) unless ``drop_last``.
    """
    info = _tok_info(tokenizer)
    if style == "auto":
        style = "bert" if info["cls"] is not None and info["sep"] is not None \
            and info["bos"] is None and info["eos"] is None else "causal"
    if style == "bert":
        head, tail, sep = [info["cls"]], [info["sep"]], info["sep"]
    elif style == "causal":
        start = info["bos"] if info["bos"] is not None else info["eos"]
        head = [start] if prepend_bos and start is not None else []
        tail, sep = [], info["eos"]
    else:
        raise CorpusError(f"window style must be 'auto', 'bert' or 'causal', got {style!r}")
    body = context_length - len(head) - len(tail)
    if body < 1:
        raise CorpusError(f"context_length {context_length} leaves no room for text tokens")

    buf: list[int] = []
    first = True

    def texts() -> Iterator[list[str]]:
        chunk: list[str] = []
        for d in docs:
            chunk.append(d)
            if len(chunk) == tokenize_chunk:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    for chunk in texts():
        enc = tokenizer(chunk, add_special_tokens=False, verbose=False, return_attention_mask=False,
                        return_token_type_ids=False)["input_ids"]
        for ids in enc:
            if not first and sep is not None:
                buf.append(sep)
            first = False
            buf.extend(ids)
            while len(buf) >= body:
                yield head + buf[:body] + tail
                buf = buf[body:]
    if buf and not drop_last:
        yield head + buf + tail


def token_windows(docs: Iterable[str], tokenizer: Any, context_length: int, batch_size: int = 8,
                  max_length: int | None = None, style: str = "auto", prepend_bos: bool = True,
                  exclude_special: bool = True, drop_last: bool = False, skip_windows: int = 0
                  ) -> Iterator[WindowBatch]:
    """Batches of packed token windows (see :func:`window_ids`), right-padded to the longest window.

    ``context_length`` is capped at ``max_length`` (the model's max positions) when given.
    ``token_mask`` excludes padding and, if ``exclude_special``, the structural special
    tokens (BOS/EOS/CLS/SEP/PAD; not UNK or MASK). ``skip_windows`` skips that many windows first (resume), without
    yielding them; ``first_window`` keeps counting from the true start.
    """
    if max_length is not None:
        context_length = min(context_length, max_length)
    if batch_size < 1:
        raise CorpusError(f"batch_size must be >= 1, got {batch_size}")
    info = _tok_info(tokenizer)
    pad = info["pad"] if info["pad"] is not None else (info["eos"] if info["eos"] is not None else 0)
    special = torch.tensor(sorted(info["special"]), dtype=torch.long)

    def make(rows: list[list[int]], first_window: int) -> WindowBatch:
        T = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad] * (T - len(r)) for r in rows], dtype=torch.long)
        att = (torch.arange(T) < torch.tensor([len(r) for r in rows])[:, None]).long()
        mask = att.bool()
        if exclude_special and special.numel():
            mask &= ~torch.isin(ids, special)
        return WindowBatch(ids, att, mask, first_window)

    rows: list[list[int]] = []
    idx = 0
    start = skip_windows
    for w in window_ids(docs, tokenizer, context_length, style=style, prepend_bos=prepend_bos,
                        drop_last=drop_last):
        idx += 1
        if idx <= skip_windows:
            continue
        rows.append(w)
        if len(rows) == batch_size:
            yield make(rows, start)
            start += len(rows)
            rows = []
    if rows:
        yield make(rows, start)
