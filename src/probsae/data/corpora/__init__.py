"""Corpora that probsae builds itself from packages (offline): ``offline-en``.

A built corpus is a folder ``<root>/<name>/`` with ``documents.jsonl`` and ``manifest.json``;
``<root>`` is ``$PROBSAE_CORPORA`` or ``./corpora``. ``resolve_named_corpus("offline-en")`` gives
the documents file that ``--corpus offline-en`` reads (a clear error if it is not built yet).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CorpusError

#: Names of the corpora probsae can build (``probsae corpus build NAME``).
BUILDABLE = ("offline-en",)


def corpora_root() -> Path:
    return Path(os.environ.get("PROBSAE_CORPORA") or "corpora")


def corpus_dir(name: str, root: str | Path | None = None) -> Path:
    return Path(root) / name if root else corpora_root() / name


def resolve_named_corpus(spec: str) -> str | None:
    """The documents file of a buildable corpus name, or None when ``spec`` is not such a name."""
    if spec not in BUILDABLE:
        return None
    from .offline_en import DOCUMENTS_FILE

    path = corpus_dir(spec) / DOCUMENTS_FILE
    if not path.is_file():
        raise CorpusError(f"corpus {spec!r} is not built (no {path}): run 'probsae corpus build {spec}' "
                          f"(downloads Debian packages with apt-get; set PROBSAE_CORPORA to build elsewhere)")
    return str(path)
