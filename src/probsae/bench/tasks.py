"""Labelled text-classification tasks for sparse probing, built offline from what the machine holds
(docs/BENCH.md). Deterministic: files are listed in sorted order, then drawn with the task's seed.

* ``code``: the programming language of a source file (Python's standard library, C headers,
  Perl modules, shell scripts, JavaScript, CMake); a language with too few files is skipped.
* ``offline-en``: the Debian package an ``offline-en`` document came from (a dictionary, WordNet,
  the Jargon File, the Devil's Dictionary, fortunes, the Debian manuals).

A class needs ``n_train + n_test`` examples; classes with fewer are skipped (``ProbeTask.skipped``
says why) and a task with fewer than two classes is not built.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import random
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

MIN_FILE_CHARS = 300
"""Source files shorter than this (after reading) are not used."""
MAX_LINE_CHARS = 200
"""Files whose mean line is longer (minified JavaScript, generated tables) are not used."""
READ_CHARS = 65_536
"""Characters read from each source file."""
TEXT_CHARS = 2_000
"""Characters kept per example (the probe reads at most its context length of tokens of them)."""
MAX_CANDIDATES = 5_000
"""Files listed per language at most (the walk stops there)."""


@dataclass
class ProbeTask:
    """A multi-class task: texts per class, split into train and test."""

    name: str
    description: str
    train: dict[str, list[str]]
    test: dict[str, list[str]]
    skipped: dict[str, str] = field(default_factory=dict)
    """Classes left out, with the reason (e.g. too few files)."""

    @property
    def classes(self) -> list[str]:
        return list(self.train)

    def summary(self) -> dict:
        return {"description": self.description, "classes": self.classes,
                "n_train": {c: len(v) for c, v in self.train.items()},
                "n_test": {c: len(v) for c, v in self.test.items()}, "skipped": self.skipped}


def split_classes(name: str, description: str, pools: dict[str, list[str]], n_train: int, n_test: int,
                  seed: int, skipped: dict[str, str] | None = None) -> ProbeTask | None:
    """Draw ``n_train + n_test`` texts per class from ``pools`` (with ``seed``); classes with
    fewer are skipped. None when fewer than two classes remain."""
    rng = random.Random(seed)
    skipped = dict(skipped or {})
    train, test = {}, {}
    need = n_train + n_test
    for cls, texts in pools.items():
        if len(texts) < need:
            skipped[cls] = f"{len(texts)} examples, {need} needed"
            continue
        pick = rng.sample(texts, need)
        train[cls], test[cls] = pick[:n_train], pick[n_train:]
    if len(train) < 2:
        return None
    return ProbeTask(name, description, train, test, skipped)


# ---- programming languages -----------------------------------------------------------------------
def _stdlib() -> list[str]:
    return [sysconfig.get_paths()["stdlib"]]


#: language → (function giving the folders to walk, file-name patterns, shebang words or ()).
LANGUAGES: dict[str, tuple[Callable[[], list[str]], tuple[str, ...], tuple[str, ...]]] = {
    "python": (_stdlib, ("*.py",), ()),
    "c": (lambda: ["/usr/include"], ("*.h",), ()),
    "perl": (lambda: sorted(glob.glob("/usr/share/perl*") + glob.glob("/usr/lib/*/perl*")), ("*.pm",), ()),
    "shell": (lambda: ["/usr/bin", "/usr/sbin", "/usr/share", "/usr/lib", "/etc"], ("*.sh",), ("sh", "bash", "dash")),
    "javascript": (lambda: ["/usr/share/javascript", "/usr/lib/node_modules"], ("*.js",), ()),
    "cmake": (lambda: sorted(glob.glob("/usr/share/cmake*")), ("*.cmake",), ()),
}


def _shebang(path: str, shells: tuple[str, ...]) -> bool:
    try:
        with open(path, "rb") as f:
            line = f.readline(100).decode("ascii", "replace")
    except OSError:
        return False
    if not line.startswith("#!"):
        return False
    words = line[2:].replace("/", " ").split()
    return any(w in shells for w in words[:3])


def _walk(roots: list[str], patterns: tuple[str, ...], shells: tuple[str, ...]) -> Iterator[str]:
    """Files under ``roots`` (sorted walk, symlinks not followed) matching a pattern, or — with
    ``shells`` — directly in a root and starting with such a shebang."""
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                if any(fnmatch.fnmatch(name, p) for p in patterns):
                    yield path
                elif shells and dirpath == root and "." not in name and _shebang(path, shells):
                    yield path


def source_text(path: str) -> str | None:
    """The example text of a source file: its lines from the middle on (past licence headers and
    module docstrings), at most ``TEXT_CHARS`` characters; None for a file too short, unreadable,
    not text or minified."""
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            text = f.read(READ_CHARS)
    except (OSError, UnicodeDecodeError):
        return None
    lines = text.splitlines()
    if len(text) < MIN_FILE_CHARS or not lines or len(text) / len(lines) > MAX_LINE_CHARS:
        return None
    return "\n".join(lines[len(lines) // 2:])[:TEXT_CHARS].strip() or None


def language_pools(languages: dict = LANGUAGES, max_files: int = MAX_CANDIDATES) -> dict[str, list[str]]:
    """language → example texts of its files found on this machine (at most ``max_files`` listed)."""
    pools = {}
    for lang, (roots, patterns, shells) in languages.items():
        texts, seen = [], set()
        for path in _walk([r for r in roots() if os.path.isdir(r)], patterns, shells):
            if len(seen) >= max_files:
                break
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            t = source_text(path)
            if t:
                texts.append(t)
        pools[lang] = texts
    return pools


def code_task(n_train: int, n_test: int, seed: int, languages: dict = LANGUAGES) -> ProbeTask | None:
    pools = language_pools(languages, max_files=max(MAX_CANDIDATES, 4 * (n_train + n_test)))
    return split_classes("code", "programming language of a source file on this machine (its second half)",
                         pools, n_train, n_test, seed)


# ---- offline-en sources --------------------------------------------------------------------------
#: offline-en package → class (two fortune packages and the two Debian manuals are one class each).
OFFLINE_EN_CLASSES = {
    "dict-gcide": "dictionary", "dict-devil": "devil", "dict-jargon": "jargon", "wordnet-base": "wordnet",
    "fortunes": "fortune", "fortunes-min": "fortune", "debian-handbook": "manual", "debian-reference-en": "manual",
}


def offline_en_task(n_train: int, n_test: int, seed: int, documents: str | Path | None = None) -> ProbeTask | None:
    """The source class of ``offline-en`` documents (``documents``: its documents.jsonl; default:
    the built corpus, ``probsae corpus build offline-en``). Raises InputError when it is not built."""
    if documents is None:
        from ..data.corpora import resolve_named_corpus

        try:
            documents = resolve_named_corpus("offline-en")
        except Exception as e:
            raise InputError(f"task offline-en: {e}") from None
    pools: dict[str, list[str]] = {}
    with open(documents, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            cls = OFFLINE_EN_CLASSES.get(rec.get("source"), rec.get("source"))
            if cls:
                pools.setdefault(cls, []).append(rec["text"][:TEXT_CHARS])
    return split_classes("offline-en", "the source package of an offline-en document", dict(sorted(pools.items())),
                         n_train, n_test, seed)


#: Task name → builder(n_train, n_test, seed) → ProbeTask or None.
TASKS: dict[str, Callable[[int, int, int], ProbeTask | None]] = {"code": code_task, "offline-en": offline_en_task}


def build_tasks(names: list[str], n_train: int, n_test: int, seed: int = 0) -> tuple[list[ProbeTask], dict[str, str]]:
    """The tasks ``names`` that can be built here, and {name: why not} for the others. Raises
    InputError naming every reason when none can be built."""
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise InputError(f"unknown probing task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    tasks, missing = [], {}
    for name in names:
        try:
            task = TASKS[name](n_train, n_test, seed)
        except (InputError, OSError) as e:
            task, missing[name] = None, str(e)
        if task is None:
            missing.setdefault(name, f"fewer than two classes with {n_train + n_test} examples each")
        else:
            tasks.append(task)
    if not tasks:
        raise InputError("no probing task could be built: " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
    return tasks, missing
