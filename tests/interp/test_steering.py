"""Steering (interp/steering.py) on tiny random-weight GPT-2 and Llama models, checked against the
model itself: the latent's delta added by a plain forward pre-hook on the block, written here."""

import pytest
import torch

import probsae
from probsae.errors import ConfigError
from probsae.interp.steering import latent_delta, steered_generate, steering_value

LAYER = 1
PROMPT = "the cat sat on the mat and"


def llama():
    import transformers as T

    from probsae.data.models import ModelHandle
    from probsae.data.tiny import tiny_tokenizer

    torch.manual_seed(1)
    tok = tiny_tokenizer()
    cfg = T.LlamaConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=64,
                        bos_token_id=1, eos_token_id=1)
    return ModelHandle.from_model(T.LlamaForCausalLM(cfg).eval(), tok, name="tiny-llama-steer")


def handle_of(family):
    from probsae.data.tiny import tiny_model

    return llama() if family == "llama" else tiny_model("gpt2")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def setup(request):
    h = handle_of(request.param)
    h.model.double()                 # float64: the comparison is exact up to rounding, even at strength 40
    torch.manual_seed(0)
    sae = probsae.build_sae("topk", d_in=h.d_model, d_sae=64, k=4).double()   # 'unit' input normalisation
    with torch.no_grad():
        sae.b_dec.normal_()
    return h, sae


def ids_of(h):
    from probsae.interp.steering import prompt_ids

    return prompt_ids(h, PROMPT)


def hand_logits(h, sae, latent, value, ids):
    """Next-token logits with the delta added by a forward pre-hook on block LAYER (resid_pre):
    value · W_dec[latent] · ‖x_t − mean(x_t)‖ at every position but the BOS token."""
    def pre(mod, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        c = x - x.mean(-1, keepdim=True)
        d = value * sae.W_dec[latent].detach() * c.norm(dim=-1, keepdim=True)
        d[:, 0] = 0                                        # the prompt's BOS is never steered
        y = x + d
        return ((y, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": y})

    hd = h.blocks[LAYER].register_forward_pre_hook(pre, with_kwargs=True)
    try:
        with torch.no_grad():
            return h.model(input_ids=ids).logits[0, -1].float()
    finally:
        hd.remove()


def test_strength_zero_changes_nothing(setup):
    h, sae = setup
    r = steered_generate(h, f"resid_pre.{LAYER}", sae, 3, 0.0, PROMPT, max_new_tokens=6)
    assert r.baseline_ids == r.steered_ids and r.baseline == r.steered
    assert len(r.baseline_ids) >= 1
    assert torch.allclose(r.baseline_logits, r.steered_logits)


def test_large_strength_matches_the_delta_added_by_hand(setup):
    h, sae = setup
    ids = ids_of(h)
    with torch.no_grad():
        plain = h.model(input_ids=ids).logits[0, -1].float()
    value = 40.0
    r = steered_generate(h, f"resid_pre.{LAYER}", sae, 5, value, PROMPT, max_new_tokens=8)
    expected = hand_logits(h, sae, 5, value, ids)
    assert torch.allclose(r.baseline_logits, plain, atol=1e-4)
    assert torch.allclose(r.steered_logits, expected, atol=1e-4), (r.steered_logits - expected).abs().max()
    assert (r.steered_logits - plain).abs().max() > 1e-2          # the push is real
    assert r.steered_ids != r.baseline_ids
    # the hook is gone: a later forward is the plain model's
    with torch.no_grad():
        after = h.model(input_ids=ids).logits[0, -1].float()
    assert torch.equal(after, plain)


def test_delta_is_the_saes_decode_difference(setup):
    _, sae = setup
    x = torch.randn(5, sae.d_in, dtype=torch.float64) * 3
    d = latent_delta(sae, 7, 2.5, x)
    _, stats = sae.normalizer(x)
    codes = torch.zeros(5, sae.d_sae, dtype=torch.float64)
    codes[:, 7] = 2.5
    with torch.no_grad():
        ref = sae.decode(codes, stats=stats) - sae.decode(torch.zeros_like(codes), stats=stats)
    assert torch.allclose(d, ref, atol=1e-5)
    assert steering_value(2.0, 1.5) == 3.0


def test_refused_on_an_encoder_and_bad_arguments(setup):
    from probsae.data.tiny import tiny_model

    h, sae = setup
    bert = tiny_model("bert")
    with pytest.raises(ConfigError, match="causal LM"):
        steered_generate(bert, "resid_pre.1", probsae.build_sae("topk", d_in=bert.d_model, d_sae=8, k=2),
                         0, 1.0, PROMPT)
    with pytest.raises(ConfigError, match="out of range"):
        steered_generate(h, "resid_pre.1", sae, 999, 1.0, PROMPT)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        steered_generate(h, "resid_pre.1", sae, 0, 1.0, PROMPT, max_new_tokens=0)
    other = probsae.build_sae("transcoder", d_in=h.d_model, d_sae=16, k=2)   # reads one hook point, writes another
    with pytest.raises(ConfigError, match="another hook point"):
        steered_generate(h, "resid_pre.1", other, 0, 1.0, PROMPT)
