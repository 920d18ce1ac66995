"""Tests for probsae.data.hooks: parsing, capture == hidden_states, early stop, splicing."""

from __future__ import annotations

import pytest
import torch

from probsae.data.errors import HookPointError
from probsae.data.hooks import HookPoint, capture, splice
from probsae.data.models import ModelHandle


def _batch(h: ModelHandle, B: int = 2, T: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, min(len(h.tokenizer), 50), (B, T), generator=g)
    return ids, torch.ones_like(ids)


def _hidden(h: ModelHandle, ids: torch.Tensor, att: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return h.model(input_ids=ids, attention_mask=att, output_hidden_states=True).hidden_states


def test_parse_roundtrip() -> None:
    assert HookPoint.parse("resid_pre.8") == HookPoint("resid_pre", 8)
    assert HookPoint.parse("resid_post.0") == HookPoint("resid_post", 0)
    assert HookPoint.parse("module:transformer.h.1.mlp") == HookPoint("module", module="transformer.h.1.mlp")
    for s in ("resid_pre.8", "resid_post.3", "module:a.b"):
        assert str(HookPoint.parse(s)) == s


@pytest.mark.parametrize("bad", ["resid.3", "resid_pre", "resid_pre.x", "module:", "blocks.3.hook"])
def test_parse_errors(bad: str) -> None:
    with pytest.raises(HookPointError, match="invalid hook point"):
        HookPoint.parse(bad)


def test_resid_matches_hidden_states(tiny_any: ModelHandle) -> None:
    h = tiny_any
    ids, att = _batch(h)
    hs = _hidden(h, ids, att)
    assert len(hs) == h.n_layers + 1
    with torch.no_grad():
        for L in range(h.n_layers):
            torch.testing.assert_close(capture(h, f"resid_pre.{L}", ids, att), hs[L], rtol=0, atol=0)
        for L in range(h.n_layers - 1):
            torch.testing.assert_close(capture(h, f"resid_post.{L}", ids, att), hs[L + 1], rtol=0, atol=0)


def test_last_hidden_state_has_final_norm(tiny_gpt2: ModelHandle, tiny_qwen3: ModelHandle,
                                          tiny_bert: ModelHandle) -> None:
    """GPT-2 / Qwen3 hidden_states[-1] is final_norm(resid_post.last); BERT's is resid_post.last."""
    finals = {"gpt2": lambda h: h.model.transformer.ln_f, "qwen3": lambda h: h.model.model.norm}
    for h in (tiny_gpt2, tiny_qwen3, tiny_bert):
        ids, att = _batch(h)
        hs = _hidden(h, ids, att)
        with torch.no_grad():
            last = capture(h, f"resid_post.{h.n_layers - 1}", ids, att)
            if h.model_type in finals:
                assert not torch.allclose(last, hs[-1])
                torch.testing.assert_close(finals[h.model_type](h)(last), hs[-1])
            else:
                torch.testing.assert_close(last, hs[-1], rtol=0, atol=0)


def test_module_hook(tiny_gpt2: ModelHandle) -> None:
    h = tiny_gpt2
    ids, att = _batch(h)
    with torch.no_grad():
        got = capture(h, "module:transformer.h.1", ids, att)
    torch.testing.assert_close(got, _hidden(h, ids, att)[2], rtol=0, atol=0)
    with pytest.raises(HookPointError, match="no submodule 'transformer.nope'"):
        capture(h, "module:transformer.nope", ids, att)


def test_forward_stops_early(tiny_any: ModelHandle) -> None:
    h = tiny_any
    ids, att = _batch(h)
    ran: list[int] = []
    before = [(set(b._forward_hooks), set(b._forward_pre_hooks)) for b in h.blocks]
    handles = [b.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, b in enumerate(h.blocks)]
    try:
        with torch.no_grad():
            capture(h, "resid_pre.1", ids, att)
            assert ran == [0]
            ran.clear()
            capture(h, "resid_post.1", ids, att)
            assert ran == [0, 1]  # block 2 never ran
            ran.clear()
            h.model(input_ids=ids, attention_mask=att)
            assert ran == list(range(h.n_layers))
    finally:
        for x in handles:
            x.remove()
    # capture removed its hooks (transformers may keep its own output-capturing hooks)
    assert [(set(b._forward_hooks), set(b._forward_pre_hooks)) for b in h.blocks] == before


def test_lm_head_not_run(tiny_gpt2: ModelHandle) -> None:
    h = tiny_gpt2
    ids, att = _batch(h)
    calls: list[int] = []
    hd = h.model.lm_head.register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        with torch.no_grad():
            capture(h, f"resid_post.{h.n_layers - 1}", ids, att)
        assert calls == []
    finally:
        hd.remove()


@pytest.mark.parametrize("spec", ["resid_pre.3", "resid_post.7", "resid_pre.-1"])
def test_layer_out_of_range(tiny_qwen3: ModelHandle, spec: str) -> None:
    ids, att = _batch(tiny_qwen3)
    with pytest.raises(HookPointError, match=r"has 3 layers, valid layers are 0\.\.2"):
        capture(tiny_qwen3, spec, ids, att)


@pytest.mark.parametrize("spec", ["resid_pre.1", "resid_post.1", "module:transformer.h.0.mlp"])
def test_splice_identity_and_change(tiny_gpt2: ModelHandle, spec: str) -> None:
    h = tiny_gpt2
    ids, att = _batch(h)
    with torch.no_grad():
        clean = h.model(input_ids=ids, attention_mask=att).logits
        with splice(h, spec, lambda x: x):
            same = h.model(input_ids=ids, attention_mask=att).logits
        with splice(h, spec, lambda x: x * 0):
            zero = h.model(input_ids=ids, attention_mask=att).logits
        after = h.model(input_ids=ids, attention_mask=att).logits
    torch.testing.assert_close(same, clean, rtol=0, atol=0)
    assert not torch.allclose(zero, clean)
    torch.testing.assert_close(after, clean, rtol=0, atol=0)


def test_splice_pre_and_post_agree(tiny_qwen3: ModelHandle) -> None:
    """resid_pre.L and resid_post.(L-1) are the same stream: splicing either gives the same logits."""
    h = tiny_qwen3
    ids, att = _batch(h)
    with torch.no_grad():
        with splice(h, "resid_pre.2", lambda x: x + 1.0):
            a = h.model(input_ids=ids, attention_mask=att).logits
        with splice(h, "resid_post.1", lambda x: x + 1.0):
            b = h.model(input_ids=ids, attention_mask=att).logits
        clean = h.model(input_ids=ids, attention_mask=att).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, clean)


def test_splice_shape_error(tiny_gpt2: ModelHandle) -> None:
    ids, att = _batch(tiny_gpt2)
    with pytest.raises(HookPointError, match="replacement has shape"):
        with torch.no_grad(), splice(tiny_gpt2, "resid_pre.0", lambda x: x[..., :3]):
            tiny_gpt2.model(input_ids=ids, attention_mask=att)


# ---- TransformerLens / SAELens hook names (issue 24: what `probsae export` writes is accepted) ----
@pytest.mark.parametrize("tl, ours", [("blocks.4.hook_resid_pre", "resid_pre.4"), ("blocks.0.hook_resid_post", "resid_post.0"),
                                      ("blocks.2.hook_resid_mid", "resid_mid.2"), ("blocks.1.hook_mlp_out", "mlp_out.1")])
def test_transformer_lens_names_are_our_hook_points(tl: str, ours: str) -> None:
    from probsae.formats import saelens_hook_name

    hp = HookPoint.parse(tl)
    assert hp == HookPoint.parse(ours) and str(hp) == ours and hp.alias == tl
    assert saelens_hook_name(ours) == tl  # the export writes exactly the name that is accepted back


@pytest.mark.parametrize("kind", ["resid_pre", "resid_mid", "resid_post", "mlp_out"])
def test_a_transformer_lens_name_captures_the_same_activation(tiny_gpt2: ModelHandle, kind: str) -> None:
    ids, att = _batch(tiny_gpt2)
    with torch.no_grad():
        torch.testing.assert_close(capture(tiny_gpt2, f"blocks.1.hook_{kind}", ids, att),
                                   capture(tiny_gpt2, f"{kind}.1", ids, att), rtol=0, atol=0)


@pytest.mark.parametrize("tl, needle", [
    ("blocks.3.hook_mlp_in", "probsae's resid_mid.3"), ("blocks.3.ln2.hook_normalized", "probsae's mlp_in.3"),
    ("blocks.3.attn.hook_z", "blocks.L.hook_resid_pre (= resid_pre.L)"), ("hook_embed", "module:"),
])
def test_transformer_lens_names_without_an_equivalent_say_what_to_use(tl: str, needle: str) -> None:
    with pytest.raises(HookPointError, match="TransformerLens hook name") as e:
        HookPoint.parse(tl)
    assert needle in str(e.value)


def test_transformer_lens_post_norm_names_are_refused_for_bert(tiny_bert: ModelHandle, tiny_gpt2: ModelHandle) -> None:
    """TransformerLens's BERT resid_mid/resid_post are before the LayerNorm, probsae's after it."""
    for kind in ("resid_mid", "resid_post"):
        with pytest.raises(HookPointError, match=f"give '{kind}.1'"):
            HookPoint.parse(f"blocks.1.hook_{kind}").validate(tiny_bert)
        HookPoint.parse(f"blocks.1.hook_{kind}").validate(tiny_gpt2)
    HookPoint.parse("blocks.1.hook_resid_pre").validate(tiny_bert)  # the same in every family
    HookPoint.parse("resid_post.1").validate(tiny_bert)
