"""The folded unembedding against the model's own logits, on tiny random-weight GPT-2 (LayerNorm),
Llama and Qwen3 (RMSNorm) models whose final-norm gain is spread over [−2, 3] as SmolLM2's is.

The reference is the model itself: a point ``x`` is fed to the final norm (a pre-hook replaces the
norm's input), and the change of the final logits when ``ε·d`` is added to it, as a central difference
(logits(x + εd) − logits(x − εd)) / 2ε with ε = 1e-2: the linear limit, its error O(ε²) (Llama's
and Qwen3's RMSNorm compute in float32 even in a float64 model, so a tiny one-sided ε would drown
in rounding). ``x`` is a
random point with the direction removed (and, for a LayerNorm, centred): the norm's scale change is
a projection on ``x``, which is what the fold leaves out (as TransformerLens's does), so at such a
point the model's logit change is exactly a positive multiple of the folded effect and the top
tokens must match it one for one."""

import pytest
import torch
from torch import nn

from probsae.data.errors import UnembeddingError
from probsae.data.tiny import tiny_model
from probsae.data.unembed import find_final_norm, folded_unembedding, probe_norm


def tiny_llama():
    import transformers as T

    from probsae.data.models import ModelHandle
    from probsae.data.tiny import tiny_tokenizer

    torch.manual_seed(0)
    tok = tiny_tokenizer()
    cfg = T.LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                        num_key_value_heads=1, vocab_size=len(tok), max_position_embeddings=64,
                        bos_token_id=1, eos_token_id=1, pad_token_id=None, tie_word_embeddings=False)
    return ModelHandle.from_model(T.LlamaForCausalLM(cfg).eval(), tok, name="tiny-llama")


def handle_of(family: str):
    h = tiny_llama() if family == "llama" else tiny_model(family)
    h.model.double()
    _, norm = find_final_norm(h.model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(norm.weight.shape, generator=g, dtype=torch.float64) * 5 - 2)
        if getattr(norm, "bias", None) is not None:
            norm.bias.copy_(torch.randn(norm.bias.shape, generator=g, dtype=torch.float64))
    return h


def model_logit_change(handle, d: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """(vocab,) the model's own d(logits)/dε when ε·d is added to the final norm's input at a
    point orthogonal to d (see the module docstring)."""
    _, norm = find_final_norm(handle.model)
    centred = isinstance(norm, nn.LayerNorm)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(d.shape, generator=g, dtype=torch.float64) * 3
    dd = d - d.mean() if centred else d
    x = (x - x.mean()) if centred else x
    x = x - dd * (x @ dd) / (dd @ dd)

    def logits_at(point: torch.Tensor) -> torch.Tensor:
        hook = norm.register_forward_pre_hook(lambda mod, args: (point.view(1, 1, -1),))
        try:
            with torch.no_grad():
                return handle.model(torch.tensor([[2]])).logits[0, -1]
        finally:
            hook.remove()

    return (logits_at(x + eps * d) - logits_at(x - eps * d)) / (2 * eps)


@pytest.mark.parametrize("family,kind", [("gpt2", "LayerNorm"), ("llama", "RMSNorm"), ("qwen3", "RMSNorm")])
def test_folded_effect_ranks_tokens_as_the_models_own_logits(family, kind):
    h = handle_of(family)
    W, norm = folded_unembedding(h.model)
    assert norm.kind == kind
    W_U = h.model.get_output_embeddings().weight.detach().double()
    for seed in range(3):
        d = torch.randn(h.d_model, generator=torch.Generator().manual_seed(10 + seed), dtype=torch.float64)
        ref = model_logit_change(h, d)
        ours = W.double() @ d
        assert torch.nn.functional.cosine_similarity(ours, ref, dim=0) > 1 - 1e-6
        assert ref.topk(10).indices.tolist() == ours.topk(10).indices.tolist()
        assert ref.topk(10, largest=False).indices.tolist() == ours.topk(10, largest=False).indices.tolist()
        # without the fold (the old W_dec · W_U) the ranking is not the model's
        assert (W_U @ d).topk(10).indices.tolist() != ref.topk(10).indices.tolist()


def test_gain_and_centring_are_read_from_the_module():
    for d in (6, 7):
        ln = nn.LayerNorm(d).double()
        rms = nn.RMSNorm(d, eps=1e-6).double()
        with torch.no_grad():
            ln.weight.copy_(torch.arange(d) - 2.0)
            ln.bias.fill_(5.0)
            rms.weight.copy_(torch.arange(d) * 0.5 - 1)
        a, b = probe_norm("ln", ln, d), probe_norm("rms", rms, d)
        assert a.centred and not b.centred
        torch.testing.assert_close(a.gain, ln.weight.float(), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(b.gain, rms.weight.float(), atol=1e-4, rtol=1e-4)


def test_a_gemma_style_gain_is_probed_not_read_from_the_weight():
    class OnePlus(nn.Module):                       # Gemma's RMSNorm: x / rms(x) · (1 + w)
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.full((d,), 0.5))

        def forward(self, x):
            return x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() * (1 + self.weight)

    assert torch.allclose(probe_norm("norm", OnePlus(4), 4).gain, torch.full((4,), 1.5), atol=1e-4)


def test_final_norm_found_on_the_base_model_when_not_at_a_known_path():
    class Base(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(4, 4)])
            self.last_norm = nn.LayerNorm(4)
            self.rotary = nn.Identity()

    class LM(nn.Module):
        base_model_prefix = "core"

        def __init__(self):
            super().__init__()
            self.core = Base()

        @property
        def base_model(self):
            return self.core

    path, mod = find_final_norm(LM())
    assert path == "core.last_norm" and isinstance(mod, nn.LayerNorm)
    with pytest.raises(UnembeddingError, match="cannot find the final norm"):
        find_final_norm(nn.Sequential(nn.Linear(4, 4)))


def test_a_norm_that_is_not_scale_invariant_is_refused():
    with pytest.raises(UnembeddingError, match="not scale-invariant"):
        probe_norm("transformer.ln_f", nn.Linear(4, 4), 4)


def test_a_model_without_lm_head_is_refused():
    with pytest.raises(UnembeddingError, match="no output embedding"):
        folded_unembedding(tiny_model("bert").model)
