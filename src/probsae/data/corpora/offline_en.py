"""``offline-en``: an English natural-language corpus built offline from Debian packages.

Sources (each a Debian package fetched with ``apt-get download``; see docs/DATA.md for licences):

======================  ========  =============================================================
package                 kind      what is kept
======================  ========  =============================================================
dict-gcide              dictd     every entry of GCIDE (Webster's 1913 + additions): definitions
dict-devil              dictd     Ambrose Bierce's *The Devil's Dictionary* (public domain)
dict-jargon             dictd     the Jargon File (public domain)
wordnet-base            wordnet   every synset's gloss with its first lemma ("dog: a member of …")
fortunes, fortunes-min  fortunes  every fortune cookie (quotations, aphorisms, jokes)
debian-handbook         html      the English (en-US) book's paragraphs and list items
debian-reference-en     html      the English guide's paragraphs and list items
======================  ========  =============================================================

Cleaning: pronunciation and source tags of dictionary entries are removed, hard-wrapped lines are
joined, whitespace is collapsed; HTML keeps ``<p>``/``<li>``/``<dd>`` text outside ``<pre>`` and
drops paragraphs that are mostly not letters (commands, file listings). Units (an entry, a gloss,
a fortune, a paragraph) shorter than ``MIN_UNIT_CHARS`` are dropped and exact duplicates (after
lower-casing and collapsing punctuation/whitespace) are kept once, across all sources. Units are
packed in source order into documents of about ``DOC_CHARS`` characters, and the documents of
all sources are shuffled with a fixed seed, so any prefix of the corpus mixes every source and
``split_documents`` (every 20th document held out) holds out a sample of each.

Output directory: ``documents.jsonl`` (one ``{"text", "source"}`` record per document; also
gzipped as ``documents.jsonl.gz`` to carry to an offline machine),
``manifest.json`` (packages, versions, .deb sha256, licences, per-source unit/duplicate/document/
character/token counts, the file's sha256) and ``licences/<package>.copyright``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ..errors import CorpusError
from .debian import DebPackage, download_deb

NAME = "offline-en"
DOCUMENTS_FILE = "documents.jsonl"
DOCUMENTS_FILE_GZ = "documents.jsonl.gz"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
#: Target document size in characters (units are never split).
DOC_CHARS = 2000
#: Units shorter than this are dropped (headword-only entries, stray list items).
MIN_UNIT_CHARS = 40
#: Seed of the document shuffle.
SHUFFLE_SEED = 0


@dataclass(frozen=True)
class Source:
    package: str
    kind: str       # dictd | wordnet | fortunes | html
    path: str       # dictd: path stem of .dict.dz/.index; others: a folder prefix
    licence: str    # as stated in the package's copyright file (copied next to the corpus)
    suffix: str = ""  # html: only files ending with this


SOURCES: tuple[Source, ...] = (
    Source("dict-gcide", "dictd", "/usr/share/dictd/gcide", "GPL-2+ (GCIDE; see copyright)"),
    Source("dict-devil", "dictd", "/usr/share/dictd/devil", "public domain"),
    Source("dict-jargon", "dictd", "/usr/share/dictd/jargon", "public domain"),
    Source("wordnet-base", "wordnet", "/usr/share/wordnet/", "WordNet 3.0 licence (BSD-style)"),
    Source("fortunes-min", "fortunes", "/usr/share/games/fortunes/", "BSD (fortune-mod); see copyright"),
    Source("fortunes", "fortunes", "/usr/share/games/fortunes/", "BSD (fortune-mod); see copyright"),
    Source("debian-handbook", "html", "/usr/share/doc/debian-handbook/html/en-US/", "GPL-2+ or CC-BY-SA-3.0", ".html"),
    Source("debian-reference-en", "html", "/usr/share/debian-reference/", "GPL-2+", ".en.html"),
)


# ---- cleaning ------------------------------------------------------------------------------------
_WS = re.compile(r"[ \t\r\f\v]+")
_PRON = re.compile(r"\\[^\\\n]{0,80}\\")          # GCIDE pronunciation \Ab*do"men\
_BRACES = re.compile(r"\{([^{}\n]{0,80})\}")             # GCIDE cross-reference {Tooth}
_TAG_LINE = re.compile(r"^\s*\[[^\]\n]{1,40}\]\s*$", re.M)   # [1913 Webster], [PJC], [WordNet 1.5]


def unwrap(text: str) -> str:
    """Join hard-wrapped lines inside paragraphs (blank-line separated); one paragraph per line."""
    paras = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    out = [_WS.sub(" ", " ".join(line.strip() for line in p.splitlines())).strip() for p in paras]
    return "\n".join(p for p in out if p)


def clean_dict_entry(text: str) -> str:
    """A dictd entry as plain prose: no pronunciation, no source-tag lines, lines unwrapped."""
    text = _BRACES.sub(r"\1", _TAG_LINE.sub("", _PRON.sub("", text)))
    return re.sub(r" +([,;.])", r"\1", unwrap(text))


def dedupe_key(text: str) -> str:
    return hashlib.sha1(re.sub(r"[\W_]+", " ", text.lower()).strip().encode()).hexdigest()


def letter_ratio(text: str) -> float:
    return sum(c.isalpha() or c == " " for c in text) / max(1, len(text))


# ---- per-kind unit extraction ----------------------------------------------------------------------
_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _b64num(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64[c]
    return n


def dictd_units(index: str, dict_bytes: bytes) -> Iterator[str]:
    """Entries of a dictd database in index order (each (offset, length) once; 00-database-* skipped)."""
    seen = set()
    for line in index.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        try:
            span = (_b64num(parts[1]), _b64num(parts[2]))
        except KeyError:
            continue
        if span in seen:
            continue
        seen.add(span)
        yield clean_dict_entry(dict_bytes[span[0]:span[0] + span[1]].decode("utf-8", "replace"))


def wordnet_units(data: str) -> Iterator[str]:
    """'lemma: gloss' of every synset line of a WordNet data.* file (licence header skipped)."""
    for line in data.splitlines():
        if line.startswith(" ") or " | " not in line:
            continue
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        if len(fields) < 5:
            continue
        lemma = re.sub(r"\(.*?\)$", "", fields[4]).replace("_", " ")
        yield f"{lemma}: {_WS.sub(' ', gloss).strip()}"


def fortune_units(text: str) -> Iterator[str]:
    """Fortune cookies of a strfile source (separated by lines holding a single %)."""
    for cookie in re.split(r"\n%\n", text.replace("\r\n", "\n")):
        yield unwrap(cookie.replace("\t", " ").strip("%\n "))


class _ProseHTML(HTMLParser):
    """Text of <p>, <li>, <dd>, <dt> elements outside <pre>/<script>/<style>/<code> blocks."""

    BLOCKS = {"p", "li", "dd", "dt"}
    SKIP = {"pre", "script", "style", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.units: list[str] = []
        self._buf: list[str] | None = None
        self._depth = 0
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1
        elif tag in self.BLOCKS:
            self._flush()
            self._buf, self._depth = [], self._depth + 1

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCKS:
            self._flush()
            self._depth = max(0, self._depth - 1)

    def handle_data(self, data):
        if self._buf is not None and not self._skip:
            self._buf.append(data)

    def _flush(self) -> None:
        if self._buf:
            text = _WS.sub(" ", " ".join("".join(self._buf).split())).strip()
            if text:
                self.units.append(text)
        self._buf = [] if self._depth else None

    def close(self):
        super().close()
        self._flush()


def html_units(html: str, min_letter_ratio: float = 0.8) -> Iterator[str]:
    """Prose paragraphs of an HTML page (mostly-letter text only: drops commands and listings)."""
    p = _ProseHTML()
    p.feed(html)
    p.close()
    for u in p.units:
        if letter_ratio(u) >= min_letter_ratio:
            yield u


def source_units(src: Source, deb: DebPackage) -> Iterator[str]:
    if src.kind == "dictd":
        index = deb.read(src.path + ".index").decode("utf-8", "replace")
        yield from dictd_units(index, gzip.decompress(deb.read(src.path + ".dict.dz")))
    elif src.kind == "wordnet":
        for pos in ("noun", "verb", "adj", "adv"):
            p = f"{src.path}data.{pos}"
            if p in deb.files(src.path):
                yield from wordnet_units(deb.read(p).decode("utf-8", "replace"))
    elif src.kind == "fortunes":
        for p in deb.files(src.path):
            if "/" in p[len(src.path):] or p.endswith((".dat", ".u8")):
                continue  # offensive subfolder, index files
            yield from fortune_units(deb.read(p).decode("utf-8", "replace"))
    elif src.kind == "html":
        for p in deb.files(src.path):
            if p.endswith(src.suffix) and "/" not in p[len(src.path):]:
                yield from html_units(deb.read(p).decode("utf-8", "replace"))
    else:
        raise CorpusError(f"unknown source kind {src.kind!r}")


def pack(units: list[str], doc_chars: int = DOC_CHARS) -> list[str]:
    """Consecutive units joined (blank line between) into documents of about ``doc_chars``."""
    docs, buf, n = [], [], 0
    for u in units:
        if buf and n + len(u) > doc_chars:
            docs.append("\n\n".join(buf))
            buf, n = [], 0
        buf.append(u)
        n += len(u) + 2
    if buf:
        docs.append("\n\n".join(buf))
    return docs


# ---- the build -------------------------------------------------------------------------------------
def build(out_dir: str | Path, debs_dir: str | Path | None = None, sources: tuple[Source, ...] = SOURCES,
          count_tokens: Callable[[list[str]], list[int]] | None = None, tokenizer_name: str | None = None,
          doc_chars: int = DOC_CHARS, seed: int = SHUFFLE_SEED, log: Callable[[str], None] = lambda s: None
          ) -> dict[str, Any]:
    """Build the corpus into ``out_dir`` from the sources' .deb files (taken from ``debs_dir`` when
    present there, else downloaded into it with ``apt-get download``). ``count_tokens`` maps a list
    of documents to their token counts (the CLI passes the MiniLM tokenizer). Returns the manifest."""
    from ...io import atomic_write_bytes, atomic_write_json, atomic_write_text

    out = Path(out_dir)
    debs = Path(debs_dir) if debs_dir else out / "debs"
    t0 = time.time()
    seen: set[str] = set()
    docs: list[tuple[str, str]] = []
    stats = []
    for src in sources:
        deb = DebPackage(download_deb(src.package, debs))
        units, dup, short = [], 0, 0
        for u in source_units(src, deb):
            if len(u) < MIN_UNIT_CHARS:
                short += 1
                continue
            key = dedupe_key(u)
            if key in seen:
                dup += 1
                continue
            seen.add(key)
            units.append(u)
        packed = pack(units, doc_chars)
        docs += [(d, src.package) for d in packed]
        copyright_rel = f"licences/{src.package}.copyright"
        (out / "licences").mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / copyright_rel, deb.copyright() or "(the package ships no copyright file)\n")
        stats.append({"package": src.package, "version": deb.version, "deb": deb.path.name,
                      "deb_sha256": deb.sha256, "licence": src.licence, "copyright_file": copyright_rel,
                      "kind": src.kind, "units": len(units), "duplicates_dropped": dup,
                      "short_dropped": short, "documents": len(packed),
                      "characters": sum(len(d) for d in packed)})
        log(f"{src.package} {deb.version}: {len(units):,} units ({dup:,} duplicates, {short:,} short dropped) "
            f"→ {len(packed):,} documents")
    if not docs:
        raise CorpusError("the offline-en build produced no documents")
    random.Random(seed).shuffle(docs)
    if count_tokens is not None:
        counts = count_tokens([d for d, _ in docs])
        for s in stats:
            s["tokens"] = sum(c for (d, pkg), c in zip(docs, counts) if pkg == s["package"])
    lines = "".join(json.dumps({"text": d, "source": pkg}, ensure_ascii=False) + "\n" for d, pkg in docs)
    data = lines.encode("utf-8")
    atomic_write_bytes(out / DOCUMENTS_FILE, data)
    gz = gzip.compress(data, compresslevel=9, mtime=0)  # small enough to carry to an offline machine
    atomic_write_bytes(out / DOCUMENTS_FILE_GZ, gz)
    manifest = {
        "name": NAME, "format_version": FORMAT_VERSION, "file": DOCUMENTS_FILE,
        "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "gz_file": DOCUMENTS_FILE_GZ,
        "documents": len(docs), "characters": sum(len(d) for d, _ in docs),
        "tokens": sum(s["tokens"] for s in stats) if count_tokens is not None else None,
        "tokenizer": tokenizer_name if count_tokens is not None else None,
        "doc_chars": doc_chars, "min_unit_chars": MIN_UNIT_CHARS, "shuffle_seed": seed,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S"), "build_seconds": round(time.time() - t0, 1),
        "sources": stats,
    }
    atomic_write_json(out / MANIFEST_FILE, manifest)
    return manifest


def verify(out_dir: str | Path) -> dict[str, Any]:
    """The manifest of a built corpus after checking the documents file against its sha256."""
    out = Path(out_dir)
    try:
        manifest = json.loads((out / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as e:
        raise CorpusError(f"{out} has no readable {MANIFEST_FILE}: {e}") from None
    data = (out / DOCUMENTS_FILE).read_bytes() if (out / DOCUMENTS_FILE).is_file() else b""
    if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
        raise CorpusError(f"{out / DOCUMENTS_FILE} does not match the sha256 in its manifest: rebuild it "
                          f"with 'probsae corpus build {NAME} --out {out}'")
    return manifest
