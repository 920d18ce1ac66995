"""Streaming extraction: several hook points from one forward, the on-device shuffle buffer,
restart positions, and (on CUDA) no host sync in the data path."""

from __future__ import annotations

import pytest
import torch

from probsae.data.corpus import token_windows
from probsae.data.extract import ActivationStream
from probsae.data.hooks import capture, capture_many
from probsae.data.stream import ModelStream
from probsae.data.tiny import TINY_DOCS, tiny_model

DOCS = [" ".join(TINY_DOCS[(i + j) % 5] for j in range(4)) for i in range(40)]


def _model(family: str, device: torch.device):
    h = tiny_model(family, n_layers=3, d_model=32)
    h.model.to(device)
    return h


@pytest.mark.parametrize("family", ["gpt2", "qwen3", "bert"])
def test_multi_hook_capture_equals_single_hook_capture(family, device):
    h = _model(family, device)
    wb = next(token_windows(DOCS, h.tokenizer, 16, batch_size=3))
    ids, att = wb.input_ids.to(device), wb.attention_mask.to(device)
    hooks = ["resid_pre.1", "resid_post.1", "resid_pre.2", "module:" + _mlp_name(h)]
    with torch.inference_mode():
        many = capture_many(h, hooks, ids, att)
        for hook in hooks:
            assert torch.equal(many[hook], capture(h, hook, ids, att)), hook
    assert torch.equal(many["resid_post.1"], many["resid_pre.2"])  # the same stream, twice


def _mlp_name(h) -> str:
    return {"gpt2": "transformer.h.0.mlp", "llama": "model.layers.0.mlp", "bert": "encoder.layer.0.output"}[h.family]


def test_capture_many_stops_after_the_deepest_hook(device):
    h = _model("gpt2", device)
    ran = []
    handles = [b.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, b in enumerate(h.blocks)]
    try:
        with torch.inference_mode():
            capture_many(h, ["resid_pre.2", "resid_pre.0"], torch.ones(1, 4, dtype=torch.long, device=device))
    finally:
        for x in handles:
            x.remove()
    assert ran == [0, 1], "blocks 0 and 1 run to the end; block 2 (whose input is the deepest hook) does not"


def _stream(h, hooks, batch=24, buffer=None, seed=0):
    act = ActivationStream.from_corpus(h, hooks, DOCS, context_length=16, batch_size=3)
    return ModelStream(act, batch, buffer_tokens=buffer, seed=seed)


def test_stream_batches_are_fixed_size_shuffled_and_lose_no_token(device):
    h = _model("gpt2", device)
    batches = list(_stream(h, ["resid_pre.1"]))
    assert batches and all(set(b) == {"resid_pre.1"} and b["resid_pre.1"].shape == (24, 32) for b in batches)
    assert batches[0]["resid_pre.1"].device.type == device.type
    every = torch.cat(list(ActivationStream.from_corpus(h, "resid_pre.1", DOCS, context_length=16, batch_size=3)))
    got = torch.cat([b["resid_pre.1"] for b in batches])
    assert every.shape[0] - 24 < got.shape[0] <= every.shape[0]  # only the last partial batch is dropped
    assert not torch.equal(got, every[: got.shape[0]]), "tokens come shuffled, not in document order"
    assert _missing(every, got) == every.shape[0] - got.shape[0], "each extracted token is emitted at most once"


def test_several_hooks_share_one_forward_and_one_permutation(device):
    h = _model("qwen3", device)
    both = list(_stream(h, ["resid_pre.1", "resid_pre.2"]))
    alone = [list(_stream(h, [hook])) for hook in ("resid_pre.1", "resid_pre.2")]
    assert len(both) == len(alone[0]) == len(alone[1]) > 3
    for b, a1, a2 in zip(both, *alone):
        assert torch.equal(b["resid_pre.1"], a1["resid_pre.1"]) and torch.equal(b["resid_pre.2"], a2["resid_pre.2"])


def test_restart_position_loses_no_token(device):
    h = _model("gpt2", device)
    s = _stream(h, ["resid_pre.1"], buffer=96)
    it = iter(s)
    head = [next(it)["resid_pre.1"] for _ in range(20)]
    state = s.stream_state()
    it.close()
    assert state["windows"] > 0
    every = torch.cat(list(ActivationStream.from_corpus(h, "resid_pre.1", DOCS, context_length=16, batch_size=3)))
    seen = torch.cat(head)
    replay = torch.cat([b["resid_pre.1"] for b in s.iter_from(state)])
    # the restart replays from the first window with a token still buffered: no token is skipped
    assert _missing(every, torch.cat([seen, replay]), replayed=True) < 24, "only the last partial batch of the pass may be missing"
    assert replay.shape[0] + seen.shape[0] > every.shape[0] - 24
    again = [b["resid_pre.1"] for b in s.iter_from(state)]
    assert all(torch.equal(a, b) for a, b in zip(again, torch.cat(again).split(24)))  # deterministic restart


def _missing(every: torch.Tensor, got: torch.Tensor, replayed: bool = False) -> int:
    """How many rows of the multiset ``every`` are not matched by a row of ``got`` (which, unless
    ``replayed``, must hold no row more often than ``every`` does)."""
    from collections import Counter

    have = Counter(map(tuple, got.cpu().tolist()))
    need = Counter(map(tuple, every.cpu().tolist()))
    extra = have - need
    assert not (set(extra) - set(need)), "a batch holds a row that was never extracted"
    assert replayed or not extra, "a token was emitted twice"
    return sum((need - have).values())


def test_stream_state_is_json(device):
    import json

    s = _stream(_model("bert", device), ["resid_pre.2"])
    next(iter(s))
    assert json.loads(json.dumps(s.stream_state())) == s.stream_state()


def test_streaming_data_path_never_syncs_with_the_host(cuda_device):
    """probsae's side of the streaming data path (host batches, pinned copies, the gather of the
    kept tokens, the shuffle buffer) makes no host sync. The model's own forward is exempt: it is
    transformers' code, and transformers 5 syncs while preparing the attention mask (GPT-2 without
    an attention mask checks its position ids for packed sequences with ``(…).all()``; with one,
    ``_ignore_causal_mask_sdpa`` calls ``padding_mask.all()``), which probsae cannot avoid without
    giving up SDPA's mask-free causal kernel. With overlap (the default here) that sync waits only
    for the forward's own side stream, not for the SAE steps queued on the main one."""
    h = _model("gpt2", cuda_device)
    forward, forwards = h.model.forward, []

    def unchecked(*args, **kwargs):
        forwards.append(torch.cuda.get_sync_debug_mode())
        torch.cuda.set_sync_debug_mode("default")
        try:
            return forward(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode(forwards[-1])

    h.model.forward = unchecked  # nn.Module.__call__ runs the instance's forward
    s = _stream(h, ["resid_pre.1", "resid_pre.2"], batch=48)
    it = iter(s)
    next(it)  # warm-up: CUDA context, allocator, first kernels
    torch.cuda.synchronize()
    checked = len(forwards)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            next(it)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        it.close()
    assert len(forwards) > checked and set(forwards[checked:]) == {2}, "the checked batches ran forwards"


def test_prefetch_thread_keeps_order_raises_and_stops():
    from probsae.data.background import Prefetch

    assert list(Prefetch(iter(range(50)), depth=3)) == list(range(50))
    assert list(Prefetch(iter(range(5)), depth=0)) == list(range(5))  # inline

    def broken():
        yield 1
        raise ValueError("bad document")

    with pytest.raises(ValueError, match="bad document"):
        list(Prefetch(broken(), depth=2))
    p = Prefetch(iter(range(10**9)), depth=2)
    next(iter(p))
    p.close()
    assert not p._thread.is_alive(), "close() waits for the thread"


def test_threaded_host_side_gives_the_same_activations(device):
    h = _model("gpt2", device)
    runs = []
    for prefetch in (0, 3):
        s = ActivationStream.from_corpus(h, "resid_pre.2", DOCS, context_length=16, batch_size=3)
        s.prefetch = prefetch
        runs.append(list(s.batches()))
    assert len(runs[0]) == len(runs[1]) > 5
    for a, b in zip(*runs):
        assert torch.equal(a.acts, b.acts) and a.windows_end == b.windows_end
