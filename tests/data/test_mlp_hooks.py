"""The MLP hook points resid_mid.L / mlp_in.L / mlp_out.L on tiny random GPT-2, Qwen3 and BERT:
each equals the tensor its definition names (docs/DATA.md), and they compose into the block."""

from __future__ import annotations

import copy

import pytest
import torch

from probsae.data.errors import HookPointError
from probsae.data.hooks import HookPoint, capture_many, splice
from probsae.data.models import ModelHandle
from probsae.data.tiny import tiny_model

L = 1


def _ids(h: ModelHandle) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(2, 40, (2, 7), generator=torch.Generator().manual_seed(3))
    return ids, torch.ones_like(ids)


def _acts(h: ModelHandle) -> dict[str, torch.Tensor]:
    ids, att = _ids(h)
    names = [f"resid_pre.{L}", f"resid_mid.{L}", f"mlp_in.{L}", f"mlp_out.{L}", f"resid_post.{L}"]
    with torch.no_grad():
        return {k.split(".")[0]: v for k, v in capture_many(h, names, ids, att).items()}


def test_parse() -> None:
    for s in ("resid_mid.2", "mlp_in.0", "mlp_out.11"):
        assert str(HookPoint.parse(s)) == s
    assert HookPoint.parse("mlp_out.3") == HookPoint("mlp_out", 3)


def test_gpt2_identities(tiny_gpt2: ModelHandle) -> None:
    a, block = _acts(tiny_gpt2), tiny_gpt2.blocks[L]
    with torch.no_grad():
        assert torch.equal(a["mlp_in"], block.ln_2(a["resid_mid"]))
        assert torch.equal(a["mlp_out"], block.mlp(block.ln_2(a["resid_mid"])))
        assert torch.equal(a["resid_mid"], a["resid_pre"] + block.attn(block.ln_1(a["resid_pre"]))[0])
    assert torch.equal(a["resid_mid"] + a["mlp_out"], a["resid_post"])


def test_qwen3_identities(tiny_qwen3: ModelHandle) -> None:
    a, block = _acts(tiny_qwen3), tiny_qwen3.blocks[L]
    with torch.no_grad():
        assert torch.equal(a["mlp_in"], block.post_attention_layernorm(a["resid_mid"]))
        assert torch.equal(a["mlp_out"], block.mlp(block.post_attention_layernorm(a["resid_mid"])))
    assert torch.equal(a["resid_mid"] + a["mlp_out"], a["resid_post"])


def test_bert_identities(tiny_bert: ModelHandle) -> None:
    """Post-norm: the MLP reads resid_mid as is; resid_post = LayerNorm(resid_mid + mlp_out)."""
    a, block = _acts(tiny_bert), tiny_bert.blocks[L]
    assert torch.equal(a["mlp_in"], a["resid_mid"])
    with torch.no_grad():
        assert torch.equal(a["mlp_out"], block.output.dense(block.intermediate(a["mlp_in"])))
        torch.testing.assert_close(block.output.LayerNorm(a["resid_mid"] + a["mlp_out"]), a["resid_post"],
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["gpt2", "qwen3", "bert"])
def test_splice_resid_mid_reaches_the_residual(family: str, tiny_gpt2: ModelHandle, tiny_qwen3: ModelHandle,
                                               tiny_bert: ModelHandle) -> None:
    """Splicing resid_mid changes the stream itself (the MLP and the residual add both see it):
    identity splice keeps resid_post; adding δ moves resid_post by exactly the block's response."""
    h = {"gpt2": tiny_gpt2, "qwen3": tiny_qwen3, "bert": tiny_bert}[family]
    ids, att = _ids(h)
    with torch.no_grad():
        clean = capture_many(h, [f"resid_post.{L}"], ids, att)[f"resid_post.{L}"]
        with splice(h, f"resid_mid.{L}", lambda x: x):
            same = capture_many(h, [f"resid_post.{L}"], ids, att)[f"resid_post.{L}"]
        torch.testing.assert_close(same, clean, rtol=0, atol=1e-6)
        seen = {}
        with splice(h, f"resid_mid.{L}", lambda x: seen.setdefault("x", x + 1.0)):
            moved = capture_many(h, [f"resid_post.{L}"], ids, att)[f"resid_post.{L}"]
        block, x = h.blocks[L], seen["x"]
        if family == "gpt2":
            want = x + block.mlp(block.ln_2(x))
        elif family == "qwen3":
            want = x + block.mlp(block.post_attention_layernorm(x))
        else:
            want = block.output.LayerNorm(x + block.output.dense(block.intermediate(x)))
        torch.testing.assert_close(moved, want, rtol=0, atol=1e-5)


def test_transcoder_splice_mlp_in_to_mlp_out_with_the_true_mlp_is_exact(tiny_gpt2: ModelHandle) -> None:
    h = tiny_gpt2
    mlp = copy.deepcopy(h.blocks[L].mlp)  # an unhooked copy: a perfect "transcoder"
    ids, att = _ids(h)
    with torch.no_grad():
        clean = h.model(input_ids=ids, attention_mask=att).logits
        with splice(h, f"mlp_out.{L}", lambda out, mlp_in: mlp(mlp_in), source=f"mlp_in.{L}"):
            spliced = h.model(input_ids=ids, attention_mask=att).logits
    assert torch.equal(spliced, clean)


def test_errors(tiny_gpt2: ModelHandle, tiny_qwen3: ModelHandle) -> None:
    with pytest.raises(HookPointError, match="out of range.*valid layers are 0..2"):
        HookPoint.parse("mlp_out.3").validate(tiny_gpt2)
    with pytest.raises(HookPointError, match="out of range"):
        HookPoint.parse("resid_mid.-1").validate(tiny_qwen3)
    with pytest.raises(HookPointError, match="invalid hook point.*'mlp_in.L'"):
        HookPoint.parse("mlp_mid.1")
    other = tiny_model("gpt2", n_layers=2)
    other.family = "other"
    with pytest.raises(HookPointError, match="GPT-2, Llama/Qwen-style and BERT-style.*module:"):
        HookPoint.parse("mlp_in.0").validate(other)
    sandwich = tiny_model("qwen3", n_layers=2)
    sandwich.blocks[0].post_feedforward_layernorm = torch.nn.Identity()
    with pytest.raises(HookPointError, match="normalise the MLP's output again"):
        HookPoint.parse("mlp_out.0").validate(sandwich)
