"""SAE metadata (model, hook point(s), windows, corpus) lives in config.json next to the config."""

import json

import pytest

import probsae
from probsae.errors import SAEFileError
from probsae.saes import SAEMetadata


def test_save_keeps_metadata_and_load_returns_it(tmp_path):
    sae = probsae.build_sae("prob_topk", d_in=8, d_sae=16, k=2)
    sae.metadata = SAEMetadata(model_name="gpt2", hook_name="resid_pre.8", target_hook_name="resid_post.8",
                               context_length=1024, corpus="hf:openwebtext", holdout_every=20)
    sae.save(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["metadata"]["hook_name"] == "resid_pre.8" and raw["metadata"]["target_hook_name"] == "resid_post.8"
    assert "model_name" not in raw["config"]
    back = probsae.load_sae(tmp_path)
    assert back.metadata == sae.metadata


def test_configs_without_metadata_and_newer_keys(tmp_path):
    sae = probsae.build_sae("topk", d_in=8, d_sae=16, k=2)
    sae.save(tmp_path)
    assert "metadata" not in json.loads((tmp_path / "config.json").read_text())   # nothing to say: no key
    assert probsae.load_sae(tmp_path).metadata.empty
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["metadata"] = {"model_name": "gpt2", "prepend_bos": False, "sae_lens_version": "6.0"}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    m = probsae.load_sae(tmp_path).metadata
    assert m.model_name == "gpt2" and not m.prepend_bos and m.extra == {"sae_lens_version": "6.0"}
    raw["metadata"] = ["not", "an", "object"]
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(SAEFileError, match="metadata must be a JSON object"):
        probsae.load_sae(tmp_path)
