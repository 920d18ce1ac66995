"""Tests for probsae.data.models."""

from __future__ import annotations

import time

import pytest
import torch

from probsae.data.errors import DataError, ModelLoadError
from probsae.data.models import ModelHandle, find_blocks, hub_reachable, load_model
from probsae.data.tiny import tiny_model


@pytest.mark.parametrize("family,expect_family,causal", [("gpt2", "gpt2", True),
                                                          ("qwen3", "llama", True),
                                                          ("bert", "bert", False)])
def test_handle_facts(family: str, expect_family: str, causal: bool) -> None:
    h = tiny_model(family, n_layers=2, d_model=32)
    assert h.family == expect_family
    assert h.is_causal is causal
    assert h.n_layers == 2 and len(h.blocks) == 2
    assert h.d_model == 32
    assert h.max_length == 64
    assert h.blocks is find_blocks(h.model)
    assert not h.model.training


def test_bert_special_ids() -> None:
    h = tiny_model("bert", n_layers=1)
    assert (h.cls_id, h.sep_id, h.pad_id, h.bos_id) == (101, 102, 0, None)
    assert {0, 101, 102} <= h.special_ids


def test_load_minilm_offline() -> None:
    h = load_model("minilm")
    assert (h.n_layers, h.d_model, h.max_length, h.family, h.is_causal) == (6, 384, 512, "bert", False)
    assert h.name == "minilm"
    assert next(h.model.parameters()).dtype == torch.float32


def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub_reachable()
    t = time.time()
    with pytest.raises(ModelLoadError) as ei:
        load_model("some-org/definitely-not-cached-model-xyz")
    assert time.time() - t < 10
    msg = str(ei.value)
    assert "definitely-not-cached-model-xyz" in msg and "unreachable" in msg and "minilm" in msg
    assert isinstance(ei.value, DataError) and isinstance(ei.value, ValueError)


def test_bad_local_dir(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="local directory"):
        load_model(str(tmp_path))


def test_from_model_causal_override() -> None:
    h = tiny_model("gpt2", n_layers=1)
    h2 = ModelHandle.from_model(h.model, h.tokenizer, is_causal=False)
    assert h2.is_causal is False
