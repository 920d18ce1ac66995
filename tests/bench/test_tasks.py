"""Probing tasks built from files: seeded, balanced, classes with too few files skipped, a clear
error when nothing can be built."""

import json

import pytest

from probsae.bench.tasks import build_tasks, code_task, offline_en_task, source_text, split_classes
from probsae.errors import InputError


def fake_languages(tmp_path, counts):
    langs = {}
    for lang, n in counts.items():
        d = tmp_path / lang
        d.mkdir()
        for i in range(n):
            (d / f"f{i:03d}.{lang}").write_text("\n".join(f"{lang} line {j} of file {i}" for j in range(40)))
        langs[lang] = (lambda d=str(d): [d], (f"*.{lang}",), ())
    return langs


def test_code_task_is_seeded_and_skips_small_classes(tmp_path):
    langs = fake_languages(tmp_path, {"aa": 12, "bb": 12, "cc": 3})
    t = code_task(6, 4, seed=1, languages=langs)
    assert t.classes == ["aa", "bb"] and "cc" in t.skipped
    assert all(len(v) == 6 for v in t.train.values()) and all(len(v) == 4 for v in t.test.values())
    assert not set(t.train["aa"]) & set(t.test["aa"])
    assert code_task(6, 4, seed=1, languages=langs).train == t.train
    assert code_task(6, 4, seed=2, languages=langs).train != t.train
    assert all(x.startswith("aa line 20") for x in t.train["aa"])  # the file's second half


def test_source_text_rejects_short_binary_and_minified(tmp_path):
    (tmp_path / "short").write_text("x = 1\n")
    (tmp_path / "bin").write_bytes(b"\xff\xfe" * 400)
    (tmp_path / "min").write_text("var a=1;" * 200)
    assert source_text(str(tmp_path / "short")) is None
    assert source_text(str(tmp_path / "bin")) is None
    assert source_text(str(tmp_path / "min")) is None
    assert source_text(str(tmp_path / "missing")) is None


def test_offline_en_task_groups_sources(tmp_path):
    docs = tmp_path / "documents.jsonl"
    rows = [{"text": f"doc {i} from {s}", "source": s} for s in ("fortunes", "fortunes-min", "dict-gcide")
            for i in range(5)]
    docs.write_text("\n".join(json.dumps(r) for r in rows))
    t = offline_en_task(3, 2, 0, documents=docs)
    assert t.classes == ["dictionary", "fortune"]
    assert len(t.train["fortune"]) == 3
    assert offline_en_task(8, 4, 0, documents=docs) is None  # dictionary has 5: only one class left


def test_no_task_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(__import__("probsae.bench.tasks", fromlist=["TASKS"]).TASKS, "code",
                        lambda *a: None)
    monkeypatch.setenv("PROBSAE_CORPORA", "/nonexistent")
    with pytest.raises(InputError, match="no probing task could be built.*code.*offline-en.*not built"):
        build_tasks(["code", "offline-en"], 100, 50)
    with pytest.raises(InputError, match="unknown probing task"):
        build_tasks(["nope"], 1, 1)


def test_split_classes_needs_two_classes():
    assert split_classes("t", "", {"a": ["x"] * 5}, 2, 2, 0) is None
