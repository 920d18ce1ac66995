"""Latent logit effects read through the folded unembedding (tests/data/test_unembed.py checks the
fold itself against the model's own logits)."""

import torch

from probsae import build_sae
from probsae.data.tiny import tiny_model
from probsae.interp.logit_effects import logit_effects


def qwen3_with_spread_gain():
    h = tiny_model("qwen3")
    with torch.no_grad():
        h.model.model.norm.weight.copy_(torch.rand(h.d_model, generator=torch.Generator().manual_seed(1)) * 5 - 2)
    return h


def test_effects_rank_tokens_by_the_folded_unembedding():
    h = qwen3_with_spread_gain()
    sae = build_sae("topk", d_in=h.d_model, d_sae=8, k=2)
    effects, note = logit_effects(sae, h, n=5)
    W = h.model.lm_head.weight.detach() * h.model.model.norm.weight.detach()
    eff = sae.W_dec.detach() @ W.T
    assert effects["pos_ids"].tolist() == eff.topk(5).indices.tolist()
    assert effects["neg_ids"].tolist() == eff.topk(5, largest=False).indices.tolist()
    torch.testing.assert_close(effects["pos_vals"], eff.topk(5).values)
    unfolded = sae.W_dec.detach() @ h.model.lm_head.weight.detach().T
    assert effects["pos_ids"].tolist() != unfolded.topk(5).indices.tolist()
    assert "RMSNorm" in note and "model.norm" in note


def test_layernorm_effects_are_centred():
    h = tiny_model("gpt2")
    with torch.no_grad():
        h.model.transformer.ln_f.weight.copy_(torch.linspace(-2, 3, h.d_model))
    sae = build_sae("topk", d_in=h.d_model, d_sae=4, k=2)
    effects, note = logit_effects(sae, h, n=3)
    d = sae.W_dec.detach()
    eff = (d - d.mean(1, keepdim=True)) @ (h.model.lm_head.weight.detach() * torch.linspace(-2, 3, h.d_model)).T
    torch.testing.assert_close(effects["pos_vals"], eff.topk(3).values, atol=1e-5, rtol=1e-5)
    assert "LayerNorm" in note and "centred" in note


def test_encoders_and_other_widths_have_no_effects():
    bert = tiny_model("bert")
    effects, note = logit_effects(build_sae("topk", d_in=bert.d_model, d_sae=4, k=2), bert)
    assert effects is None and "not a causal LM" in note
    gpt2 = tiny_model("gpt2")
    effects, note = logit_effects(build_sae("topk", d_in=2 * gpt2.d_model, d_sae=4, k=2), gpt2)
    assert effects is None and "unembedding width" in note


def test_a_cache_written_before_the_fold_is_reused_with_its_effects_rewritten(tiny_setup, tmp_path):
    import json

    from probsae.interp.latent_cache_writer import build_latent_cache

    handle, docs, sae = tiny_setup
    cache = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=8)
    want = cache.logit_effects()
    man = json.loads((tmp_path / "c" / "manifest.json").read_text())
    old_note = "W_dec · W_U (direct effect on the logits, no final norm)"   # as written before the fold
    (tmp_path / "c" / "manifest.json").write_text(json.dumps({**man, "logit_note": old_note}))
    (tmp_path / "c" / "logits.safetensors").unlink()
    chunks = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c").glob("chunk_*")}
    again = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=8)
    assert "folded into the unembedding" in again.manifest["logit_note"]
    assert all((again.logit_effects()[k] == want[k]).all() for k in want)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c").glob("chunk_*")} == chunks   # not re-encoded
    assert build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=8).manifest == again.manifest
