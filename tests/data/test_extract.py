"""Tests for probsae.data.extract."""

from __future__ import annotations

import pytest
import torch

from probsae.data.corpus import token_windows, window_ids
from probsae.data.extract import ActivationStream, activations_of, iter_activations
from probsae.data.hooks import capture
from probsae.data.errors import HookPointError
from probsae.data.models import ModelHandle, load_model

from probsae.data.tiny import TINY_DOCS as DOCS


def test_activations_are_masked_tokens(tiny_gpt2: ModelHandle) -> None:
    h = tiny_gpt2
    wb = next(token_windows(DOCS, h.tokenizer, 10, batch_size=2))
    acts = activations_of(h, "resid_pre.1", wb)
    with torch.no_grad():
        full = capture(h, "resid_pre.1", wb.input_ids, wb.attention_mask)
    assert acts.shape == (int(wb.token_mask.sum()), h.d_model) and acts.dtype == torch.float32
    torch.testing.assert_close(acts, full[wb.token_mask])
    all_tok = activations_of(h, "resid_pre.1", wb, exclude_special=False)
    assert all_tok.shape[0] == int(wb.attention_mask.sum()) > acts.shape[0]


def test_iter_activations_budget_and_rebatch(tiny_qwen3: ModelHandle) -> None:
    h = tiny_qwen3
    wins = list(token_windows(DOCS, h.tokenizer, 8, batch_size=4))
    total = sum(int(w.token_mask.sum()) for w in wins)
    chunks = list(iter_activations(h, "resid_post.0", wins, batch_size=2))
    assert sum(c.shape[0] for c in chunks) == total
    assert len(chunks) == sum((len(w) + 1) // 2 for w in wins)
    capped = list(iter_activations(h, "resid_post.0", wins, max_tokens=7))
    assert sum(c.shape[0] for c in capped) == 7
    torch.testing.assert_close(torch.cat(capped), torch.cat(chunks)[:7])


def test_stream_resumes_deterministically(tiny_gpt2: ModelHandle) -> None:
    s = ActivationStream.from_corpus(tiny_gpt2, "resid_pre.2", DOCS, context_length=8, batch_size=2)
    full = list(s.batches())
    assert full[-1].windows_end == len(list(window_ids(DOCS, tiny_gpt2.tokenizer, 8)))
    rest = list(s.batches(skip_windows=full[0].windows_end, tokens_done=full[0].tokens_end))
    assert len(rest) == len(full) - 1
    for a, b in zip(full[1:], rest):
        torch.testing.assert_close(a.acts, b.acts)
        assert (a.windows_end, a.tokens_end) == (b.windows_end, b.tokens_end)


def test_stream_validates_hook(tiny_bert: ModelHandle) -> None:
    with pytest.raises(HookPointError, match="valid layers are 0..2"):
        ActivationStream.from_corpus(tiny_bert, "resid_pre.9", DOCS, context_length=8)


def test_plain_iterable_not_resumable(tiny_gpt2: ModelHandle) -> None:
    s = ActivationStream(tiny_gpt2, "resid_pre.0", token_windows(DOCS, tiny_gpt2.tokenizer, 8))
    assert not s.resumable
    with pytest.raises(ValueError, match="cannot skip windows"):
        next(s.batches(skip_windows=1))


def test_minilm_real_extraction() -> None:
    """The real bundled MiniLM: a few activations, early stop gives the same as hidden_states."""
    h = load_model("minilm")
    wb = next(token_windows(DOCS[:2], h.tokenizer, 32, batch_size=2, max_length=h.max_length))
    acts = activations_of(h, "resid_pre.3", wb)
    assert acts.shape == (int(wb.token_mask.sum()), 384)
    with torch.no_grad():
        hs = h.model(input_ids=wb.input_ids, attention_mask=wb.attention_mask,
                     output_hidden_states=True).hidden_states
    torch.testing.assert_close(acts, hs[3][wb.token_mask])
    assert torch.isfinite(acts).all() and acts.norm(dim=1).min() > 0
