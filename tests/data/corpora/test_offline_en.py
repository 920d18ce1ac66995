"""The offline-en builder on tiny fake Debian packages (no network): .deb reading, cleaning,
dedup across sources, manifest, licences, the shuffle + hold-out, and ``--corpus offline-en``."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from probsae.cli.main import main
from probsae.data.corpora import offline_en, resolve_named_corpus
from probsae.data.corpora.debian import DebPackage, download_deb
from probsae.data.corpus import load_corpus, split_documents
from probsae.data.errors import CorpusError

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(n: int) -> str:
    s = ""
    while True:
        s = B64[n % 64] + s
        n //= 64
        if n == 0:
            return s


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name.lstrip("/"))
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_deb(path: Path, package: str, version: str, files: dict[str, bytes]) -> Path:
    control = f"Package: {package}\nVersion: {version}\nDescription: test\n long line\n".encode()
    files = {**files, f"/usr/share/doc/{package}/copyright": f"License: test-{package}\n".encode()}
    members = [("debian-binary", b"2.0\n"), ("control.tar.gz", _tar({"control": control})),
               ("data.tar.gz", _tar(files))]
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    path.write_bytes(out)
    return path


def dictd(entries: list[str]) -> tuple[bytes, bytes]:
    body, index, pos = b"", [], 0
    for e in ["00-database-info\nThis is a database.\n", *entries]:
        data = e.encode()
        index.append(f"{e.split()[0]}\t{b64(pos)}\t{b64(len(data))}")
        body += data
        pos += len(data)
    return gzip.compress(body), ("\n".join(index) + "\n").encode()


DUP = "A fortune that appears in two packages and must be kept only once, after cleaning."
GCIDE = [
    'Abdomen \\Ab*do"men\\, n. [L. abdomen.]\n   1. (Anat.) The belly, or that part of the body\n'
    '      between the thorax and the pelvis. See {Belly}.\n      [1913 Webster]\n',
    "Tiny \\Ti\"ny\\, a.\n   Small.\n",   # too short after cleaning: dropped
]


@pytest.fixture()
def debs(tmp_path):
    d = tmp_path / "debs"
    d.mkdir()
    gz, idx = dictd(GCIDE)
    make_deb(d / "dict-gcide_1.0_all.deb", "dict-gcide", "1.0",
             {"/usr/share/dictd/gcide.dict.dz": gz, "/usr/share/dictd/gcide.index": idx})
    for pkg, stem, text in (("dict-devil", "devil", "ABNORMAL, adj. Not conforming to standard in matters of thought.\n"),
                            ("dict-jargon", "jargon", "kludge n. A clever programming trick intended to solve a problem.\n")):
        gz, idx = dictd([text])
        make_deb(d / f"{pkg}_2.0_all.deb", pkg, "2.0",
                 {f"/usr/share/dictd/{stem}.dict.dz": gz, f"/usr/share/dictd/{stem}.index": idx})
    noun = ("  1 This software and database is being provided under the licence | not a synset\n"
            "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known to exist  \n"
            "00002137 03 n 02 physical_entity 0 thing 0 000 | an entity that has physical existence in space\n")
    make_deb(d / "wordnet-base_3.0_all.deb", "wordnet-base", "1:3.0", {"/usr/share/wordnet/data.noun": noun.encode()})
    fort = f"{DUP}\n%\nA cloud does not know why it moves\nin just such a direction.\n\t\t-- Messiah's Handbook\n%\nshort\n%\n"
    make_deb(d / "fortunes-min_1_all.deb", "fortunes-min", "1", {"/usr/share/games/fortunes/lit": fort.encode(),
                                                                  "/usr/share/games/fortunes/lit.dat": b"\x00\x01"})
    make_deb(d / "fortunes_1_all.deb", "fortunes", "1",
             {"/usr/share/games/fortunes/wisdom": f"{DUP.upper()}\n%\n".encode(),
              "/usr/share/games/fortunes/off/rude": b"An offensive fortune that must never be read here at all.\n%\n"})
    html = ("<html><body><h1>Title</h1><p>Debian is a free operating system that many people use every day "
            "on their computers.</p><pre>apt-get install --yes foo bar baz qux quux corge grault</pre>"
            "<p>$ ls -la /etc/apt/sources.list.d/*.list | grep -v '^#' &amp;&amp; echo 1 2 3 4 5 6</p>"
            "<ul><li>Packages are installed with a package manager, which also resolves dependencies.</li></ul>"
            "</body></html>")
    make_deb(d / "debian-handbook_11_all.deb", "debian-handbook", "11",
             {"/usr/share/doc/debian-handbook/html/en-US/ch1.html": html.encode(),
              "/usr/share/doc/debian-handbook/html/de-DE/ch1.html": b"<p>Ein deutscher Absatz, der nicht gelesen wird.</p>"})
    make_deb(d / "debian-reference-en_2_all.deb", "debian-reference-en", "2",
             {"/usr/share/debian-reference/ch1.en.html": b"<p>The reference explains how a Debian system is administered.</p>"})
    return d


def _texts(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "documents.jsonl").read_text().splitlines()]


def test_deb_reader(debs):
    deb = DebPackage(debs / "dict-gcide_1.0_all.deb")
    assert deb.name == "dict-gcide" and deb.version == "1.0"
    assert deb.sha256 == hashlib.sha256((debs / "dict-gcide_1.0_all.deb").read_bytes()).hexdigest()
    assert "/usr/share/dictd/gcide.index" in deb.files("/usr/share/dictd/")
    assert deb.copyright().startswith("License: test-dict-gcide")
    (debs / "bad.deb").write_bytes(b"not an archive")
    with pytest.raises(CorpusError, match="not a Debian package"):
        DebPackage(debs / "bad.deb")


def test_cleaning_units():
    text = offline_en.clean_dict_entry(GCIDE[0])
    assert text == ("Abdomen, n. [L. abdomen.] 1. (Anat.) The belly, or that part of the body between the thorax "
                    "and the pelvis. See Belly.")
    assert list(offline_en.fortune_units("one\ntwo\n%\nthree\n")) == ["one two", "three"]
    assert [u.split(":")[0] for u in offline_en.wordnet_units("00 03 n 01 dog_house 0 000 | a shelter  \n")] == ["dog house"]
    assert offline_en.pack(["a" * 30, "b" * 30, "c" * 30], doc_chars=70) == ["a" * 30 + "\n\n" + "b" * 30, "c" * 30]


def test_build_cleans_dedupes_and_writes_a_manifest(debs, tmp_path):
    out = tmp_path / "corpus"
    m = offline_en.build(out, debs, count_tokens=lambda docs: [len(d.split()) for d in docs], tokenizer_name="words")
    docs = _texts(out)
    texts = "\n".join(d["text"] for d in docs)
    assert "1913 Webster" not in texts and "Ab*do" not in texts and "{Belly}" not in texts
    assert "Tiny" not in texts and "short" not in texts          # under MIN_UNIT_CHARS
    assert texts.lower().count(DUP.lower()) == 1                   # dedup across packages, case-insensitive
    assert "offensive" not in texts and "deutscher" not in texts and "apt-get" not in texts and "$ ls" not in texts
    assert "Debian is a free operating system" in texts and "resolves dependencies" in texts
    by = {s["package"]: s for s in m["sources"]}
    assert [s["package"] for s in m["sources"]] == [s.package for s in offline_en.SOURCES]
    assert by["fortunes"]["duplicates_dropped"] == 1 and by["dict-gcide"]["short_dropped"] == 1
    assert by["wordnet-base"]["version"] == "1:3.0" and by["wordnet-base"]["units"] == 2
    assert by["dict-gcide"]["deb_sha256"] == hashlib.sha256((debs / "dict-gcide_1.0_all.deb").read_bytes()).hexdigest()
    assert m["documents"] == len(docs) == sum(s["documents"] for s in m["sources"])
    assert m["tokens"] == sum(len(d["text"].split()) for d in docs) and m["tokenizer"] == "words"
    assert m["sha256"] == hashlib.sha256((out / "documents.jsonl").read_bytes()).hexdigest()
    assert (out / by["dict-devil"]["copyright_file"]).read_text().startswith("License: test-dict-devil")
    assert gzip.decompress((out / "documents.jsonl.gz").read_bytes()) == (out / "documents.jsonl").read_bytes()
    assert offline_en.verify(out)["sha256"] == m["sha256"]
    (out / "documents.jsonl").write_text("tampered\n")
    with pytest.raises(CorpusError, match="does not match the sha256"):
        offline_en.verify(out)


def test_named_corpus_resolution_and_holdout(debs, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBSAE_CORPORA", str(tmp_path / "root"))
    with pytest.raises(CorpusError, match="probsae corpus build offline-en"):
        load_corpus("offline-en")
    assert main(["corpus", "build", "offline-en", "--debs", str(debs), "--no-token-count"]) == 0
    path = resolve_named_corpus("offline-en")
    assert path == str(tmp_path / "root" / "offline-en" / "documents.jsonl")
    docs = list(load_corpus("offline-en"))
    assert docs == [d["text"] for d in _texts(Path(path).parent)]
    # an activation cache of --corpus offline-en is keyed by the built documents file itself
    fp = load_corpus("offline-en").fingerprint()
    assert fp["path"] == str(Path(path).resolve()) and len(fp["files"]) == 1
    held = list(split_documents(docs, "holdout", holdout_every=2))
    assert held == docs[1::2]
    assert resolve_named_corpus("pydoc") is None


def test_download_without_apt_get_says_what_to_do(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(CorpusError, match="apt-get is not available"):
        download_deb("dict-gcide", tmp_path)
    (tmp_path / "dict-gcide_9_all.deb").write_bytes(b"x")
    assert download_deb("dict-gcide", tmp_path).name == "dict-gcide_9_all.deb"  # present: no download


def test_build_status_lines_follow_the_progress_flag(debs, tmp_path, capsys):
    """`corpus build` reports its steps on stderr like every command, and `--no-progress` silences
    them (the summary line on stdout stays)."""
    argv = ["corpus", "build", "offline-en", "--debs", str(debs), "--no-token-count"]
    assert main(argv + ["--out", str(tmp_path / "a"), "--progress"]) == 0
    loud = capsys.readouterr()
    assert "[corpus]" in loud.err and "documents" in loud.out
    assert main(argv + ["--out", str(tmp_path / "b"), "--no-progress"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and "documents" in quiet.out
