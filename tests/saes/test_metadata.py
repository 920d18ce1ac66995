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
    # a newer writer's keys are kept in ``extra`` rather than refused
    m = SAEMetadata.from_dict({"model_name": "gpt2", "prepend_bos": False, "sae_lens_version": "6.0"})
    assert m.model_name == "gpt2" and not m.prepend_bos and m.extra == {"sae_lens_version": "6.0"}
    with pytest.raises(SAEFileError, match="metadata must be a JSON object"):
        SAEMetadata.from_dict(["not", "an", "object"])


def test_metadata_is_covered_by_the_weights_checksum(tmp_path):
    """config.json's metadata is part of the config the weights record the checksum of: set it and
    save again to change it; an edited config.json is refused on load."""
    sae = probsae.build_sae("topk", d_in=8, d_sae=16, k=2)
    sae.metadata = SAEMetadata(model_name="gpt2", hook_name="resid_pre.8")
    sae.save(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["metadata"]["hook_name"] = "resid_pre.9"
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(SAEFileError, match="differs from the config sae.safetensors was saved with"):
        probsae.load_sae(tmp_path)
    raw["metadata"] = ["not", "an", "object"]
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(SAEFileError, match="metadata must be a JSON object"):
        probsae.load_sae(tmp_path)
    sae.metadata.hook_name = "resid_pre.9"                      # the way to change it: save again
    sae.save(tmp_path)
    assert probsae.load_sae(tmp_path).metadata.hook_name == "resid_pre.9"
