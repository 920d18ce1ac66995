"""Tests for probsae.evaluation.downstream on tiny random causal LMs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from probsae.data.corpus import WindowBatch, token_windows
from probsae.data.errors import DataError
from probsae.data.tiny import tiny_model
from probsae.evaluation.downstream import downstream_metrics

DOCS = [
    "the model is a test of the data and the list",
    "def return value of the list and the dict for a number",
    "import module then class object type error with python code",
    "a file line with data and a number is not none",
]


@pytest.fixture(scope="module", params=["gpt2", "qwen3"])
def handle(request: pytest.FixtureRequest):
    return tiny_model(request.param, n_layers=2)


def _windows(h, ctx: int = 10, bs: int = 2) -> list[WindowBatch]:
    return list(token_windows(DOCS, h.tokenizer, ctx, batch_size=bs))


def test_identity_recovers_everything(handle) -> None:
    wins = _windows(handle)
    m = downstream_metrics(handle, "resid_pre.1", lambda x: x, wins)
    assert m["ce_sae"] == m["ce_clean"]
    assert abs(m["kl"]) < 1e-6
    assert m["ce_recovered"] == 1.0
    assert m["ce_zero"] != m["ce_clean"] and m["kl_zero"] > 0
    assert m["n_tokens"] == sum(int((w.attention_mask[:, 1:] * w.attention_mask[:, :-1]).sum()) for w in wins)
    assert m["n_spliced"] == sum(int(w.token_mask.sum()) for w in wins)


def test_zero_recon_equals_ablation(handle) -> None:
    m = downstream_metrics(handle, "resid_post.0", torch.zeros_like, _windows(handle))
    assert m["ce_sae"] == m["ce_zero"]
    assert m["kl"] == m["kl_zero"]
    assert m["ce_recovered"] == 0.0


def test_noisy_recon_in_between(handle) -> None:
    g = torch.Generator().manual_seed(0)
    m = downstream_metrics(handle, "resid_pre.1",
                           lambda x: x + 0.5 * x.std() * torch.randn(x.shape, generator=g),
                           _windows(handle))
    assert m["kl"] > 0 and m["ce_sae"] != m["ce_clean"]
    assert math.isfinite(m["ce_recovered"])


def test_ce_hand_check(handle) -> None:
    """ce_clean equals F.cross_entropy over the shifted non-pad tokens, computed by hand."""
    wins = _windows(handle, ctx=9, bs=4)
    wb = wins[-1]
    assert (wb.attention_mask == 0).any()  # has padding, so the mask matters
    with torch.no_grad():
        logits = handle.model(input_ids=wb.input_ids, attention_mask=wb.attention_mask).logits
    losses = []
    for i in range(len(wb)):
        n = int(wb.attention_mask[i].sum())
        if n > 1:
            losses.append(F.cross_entropy(logits[i, : n - 1], wb.input_ids[i, 1:n], reduction="sum"))
    n_tok = sum(max(int(wb.attention_mask[i].sum()) - 1, 0) for i in range(len(wb)))
    expect = float(sum(losses)) / n_tok
    m = downstream_metrics(handle, "resid_pre.1", lambda x: x, [wb])
    assert m["ce_clean"] == pytest.approx(expect, rel=1e-5)
    assert m["n_tokens"] == n_tok


def test_splice_special_and_max_batches(handle) -> None:
    wins = _windows(handle)
    a = downstream_metrics(handle, "resid_pre.1", torch.zeros_like, wins, max_batches=1)
    assert a["n_spliced"] == int(wins[0].token_mask.sum())
    b = downstream_metrics(handle, "resid_pre.1", torch.zeros_like, wins, max_batches=1,
                           splice_special=True)
    assert b["n_spliced"] == int(wins[0].attention_mask.sum()) > a["n_spliced"]
    assert b["ce_zero"] != a["ce_zero"]


def test_bad_recon_shape(handle) -> None:
    with pytest.raises(DataError, match=r"must map \(N, d\) to \(N, d\)"):
        downstream_metrics(handle, "resid_pre.1", lambda x: x[:, :3], _windows(handle))


def test_encoder_rejected() -> None:
    h = tiny_model("bert", n_layers=1)
    with pytest.raises(DataError, match="only defined for causal LMs"):
        downstream_metrics(h, "resid_pre.0", lambda x: x, [])


def test_several_saes_share_the_clean_and_ablation_passes_and_match_single_calls():
    handle = tiny_model("gpt2", n_layers=2, d_model=16, max_positions=32)
    wins = list(_windows(handle))
    half = lambda x: 0.5 * x
    both = downstream_metrics(handle, "resid_pre.1", {"id": lambda x: x, "half": half}, wins)
    one = downstream_metrics(handle, "resid_pre.1", half, wins)
    for key in ("ce_clean", "ce_sae", "ce_zero", "ce_recovered", "kl", "n_tokens"):
        assert both["half"][key] == pytest.approx(one[key], rel=1e-6, abs=1e-7)
    assert both["id"]["ce_recovered"] == pytest.approx(1.0, abs=1e-5) and both["id"]["kl"] < 1e-6
    assert both["half"]["ce_clean"] == both["id"]["ce_clean"]


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_more_windows():
    handle = tiny_model("gpt2", n_layers=2, d_model=16, max_positions=32)
    wins = list(_windows(handle))
    few = downstream_metrics(handle, "resid_pre.1", lambda x: 0.5 * x, wins[:2])
    many = downstream_metrics(handle, "resid_pre.1", lambda x: 0.5 * x, wins)
    for m in (few, many):
        for key in ("ce_recovered", "ce_delta", "kl", "ce_sae"):
            lo, hi = m["ci"][key]
            assert lo <= m[key] <= hi
    width = lambda m: m["ci"]["kl"][1] - m["ci"]["kl"][0]
    assert many["n_windows"] > few["n_windows"] >= 2 and width(many) < width(few)
    one_window = downstream_metrics(handle, "resid_pre.1", lambda x: 0.5 * x, [wins[0]][:1], max_batches=1)
    assert one_window["n_windows"] == wins[0].input_ids.shape[0]


def test_max_tokens_stops_after_enough_positions():
    handle = tiny_model("gpt2", n_layers=2, d_model=16, max_positions=32)
    wins = list(_windows(handle))
    m = downstream_metrics(handle, "resid_pre.1", lambda x: x, wins, max_tokens=1)
    assert m["n_windows"] == wins[0].input_ids.shape[0]   # one whole batch, then stop
