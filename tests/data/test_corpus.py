"""Tests for probsae.data.corpus: sources, hold-out split, window packing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from probsae.data.corpus import (load_corpus, pydoc_documents, split_documents, token_windows,
                                 window_ids)
from probsae.data.errors import CorpusError, DataError
from probsae.data.tiny import bert_tokenizer, tiny_tokenizer

from probsae.data.tiny import TINY_DOCS as DOCS


def test_pydoc_corpus_deterministic_and_sized() -> None:
    docs = list(load_corpus("pydoc"))
    assert len(docs) > 300
    assert docs == list(pydoc_documents())
    assert sum(map(len, docs)) > 1_000_000  # ~360k MiniLM tokens
    assert all(d.strip() == d and d for d in docs)
    assert all("\n\n\n" not in d for d in docs)
    assert any(d.startswith("Module json") for d in docs)


def test_txt_file_and_dir(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first doc\nline two\n\n\nsecond doc\n  \n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "third"}) + "\n\n" + json.dumps({"text": "  "}) + "\n")
    (tmp_path / "ignored.md").write_text("not a corpus file")
    assert list(load_corpus(str(tmp_path / "a.txt"))) == ["first doc\nline two", "second doc"]
    assert list(load_corpus(str(tmp_path))) == ["first doc\nline two", "second doc", "third"]


def test_jsonl_custom_field_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"body": "x y"}) + "\n")
    assert list(load_corpus(str(p), text_field="body")) == ["x y"]
    with pytest.raises(CorpusError, match="no field 'text'"):
        list(load_corpus(str(p)))
    p.write_text("{not json\n")
    with pytest.raises(CorpusError, match=r"c.jsonl:1: invalid JSON"):
        list(load_corpus(str(p)))


def test_parquet(tmp_path: Path) -> None:
    p = tmp_path / "d.parquet"
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        p.write_bytes(b"PAR1")
        with pytest.raises(CorpusError, match="needs pyarrow"):
            list(load_corpus(str(p)))
        return
    pq.write_table(pa.table({"text": ["a b", "", "c"]}), p)
    assert list(load_corpus(str(p))) == ["a b", "c"]


def test_missing_empty_unsupported(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(str(tmp_path / "nope.txt"))
    (tmp_path / "e.txt").write_text("\n\n  \n")
    with pytest.raises(CorpusError, match="is empty"):
        list(load_corpus(str(tmp_path / "e.txt")))
    (tmp_path / "f.csv").write_text("a,b")
    with pytest.raises(CorpusError, match="unsupported corpus file"):
        load_corpus(str(tmp_path / "f.csv"))
    (tmp_path / "sub").mkdir()
    with pytest.raises(CorpusError, match="has no"):
        load_corpus(str(tmp_path / "sub"))
    assert issubclass(CorpusError, DataError)


def test_hf_without_datasets_or_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CorpusError, match="(needs the 'datasets' package|hub is unreachable)"):
        list(load_corpus("hf:openwebtext"))


def test_split_documents_disjoint_and_complete() -> None:
    docs = [f"d{i}" for i in range(45)]
    train = list(split_documents(docs, "train", holdout_every=20))
    hold = list(split_documents(docs, "holdout", holdout_every=20))
    assert hold == ["d19", "d39"]
    assert set(train).isdisjoint(hold) and len(train) + len(hold) == 45
    assert list(split_documents(docs, "all")) == docs
    with pytest.raises(CorpusError):
        list(split_documents(docs, "test"))


def test_causal_windows_packing() -> None:
    tok = tiny_tokenizer()
    eos = tok.eos_token_id
    ws = list(window_ids(DOCS, tok, 11))
    flat = tok(list(DOCS), add_special_tokens=False)["input_ids"]
    stream = [t for i, d in enumerate(flat) for t in ([eos] if i else []) + d]
    assert all(w[0] == tok.bos_token_id for w in ws)
    assert all(len(w) == 11 for w in ws[:-1]) and 1 < len(ws[-1]) <= 11
    assert [t for w in ws for t in w[1:]] == stream  # nothing lost, nothing duplicated
    assert len(ws[-1]) < 11  # (with these docs) the last window is partial...
    assert list(window_ids(DOCS, tok, 11, drop_last=True)) == ws[:-1]  # ...and drop_last drops it


def test_bert_windows_are_cls_sep() -> None:
    tok = bert_tokenizer()
    ws = list(window_ids(DOCS, tok, 12))
    assert all(w[0] == tok.cls_token_id and w[-1] == tok.sep_token_id for w in ws)
    assert all(len(w) == 12 for w in ws[:-1])
    assert tok.cls_token_id not in [t for w in ws for t in w[1:]]


def test_token_windows_masks_and_cap() -> None:
    tok = tiny_tokenizer()
    batches = list(token_windows(DOCS, tok, 100, batch_size=2, max_length=9))
    assert all(b.input_ids.shape[1] <= 9 for b in batches)
    b = batches[0]
    assert b.input_ids.shape == (2, 9) and b.attention_mask.dtype == torch.long
    special = {tok.bos_token_id, tok.eos_token_id}
    for ids, att, m in zip(torch.cat([x.input_ids for x in batches]),
                           torch.cat([x.attention_mask for x in batches]),
                           torch.cat([x.token_mask for x in batches])):
        for t, a, k in zip(ids.tolist(), att.tolist(), m.tolist()):
            assert k == (a == 1 and t not in special)
    assert [x.first_window for x in batches] == list(range(0, 2 * len(batches), 2))
    keep_all = list(token_windows(DOCS, tok, 9, batch_size=2, exclude_special=False))
    assert torch.equal(keep_all[0].token_mask, keep_all[0].attention_mask.bool())


def test_token_windows_padding_and_skip() -> None:
    tok = bert_tokenizer()
    batches = list(token_windows(DOCS, tok, 16, batch_size=2))  # windows of 16, 16 | 16, 6
    last = batches[-1]
    assert (last.attention_mask == 0).any()  # the last window is short, so padded
    assert (last.input_ids[last.attention_mask == 0] == tok.pad_token_id).all()
    assert not last.token_mask[last.attention_mask == 0].any()
    skipped = list(token_windows(DOCS, tok, 16, batch_size=2, skip_windows=2))
    assert len(skipped) == 1 and skipped[0].first_window == 2
    assert torch.equal(skipped[0].input_ids, batches[1].input_ids)
