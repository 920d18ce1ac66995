"""Fixtures for the interp tests: a small trained prob_topk run on the real (bundled) MiniLM."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

TOPICS = {
    "animals": ("cat dog horse rabbit owl fox whale tiger", "sleeps runs hunts swims eats jumps"),
    "code": ("function variable loop compiler string integer module class", "returns compiles imports raises parses"),
    "weather": ("rain snow wind storm cloud sunshine fog thunder", "falls blows clears arrives"),
    "food": ("bread cheese soup pasta apple butter rice salad", "tastes bakes boils cooks"),
    "music": ("guitar piano violin drum melody chord song choir", "plays sings echoes resonates"),
}


def make_corpus(path: Path, n_docs: int = 160, seed: int = 0) -> Path:
    rng = random.Random(seed)
    docs = []
    for i in range(n_docs):
        topic = list(TOPICS)[i % len(TOPICS)]
        nouns, verbs = (s.split() for s in TOPICS[topic])
        sents = []
        for _ in range(rng.randint(4, 7)):
            sents.append(f"The {rng.choice(nouns)} {rng.choice(verbs)} near the {rng.choice(nouns)} "
                         f"while {rng.randint(2, 99)} {rng.choice(nouns)}s wait.")
        docs.append(" ".join(sents))
    path.write_text("\n\n".join(docs) + "\n")
    return path


@pytest.fixture(scope="session")
def minilm():
    from probsae.data import load_model
    return load_model("minilm")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, minilm) -> Path:
    """A run directory as 'probsae train' writes it: sae.safetensors, config.json, log.jsonl,
    plus a run config naming model, hook point and corpus."""
    import probsae
    from probsae.data import ActivationStream, load_corpus

    root = tmp_path_factory.mktemp("interp_run")
    corpus = make_corpus(root / "corpus.txt")
    hook = "resid_post.3"
    stream = ActivationStream.from_corpus(minilm, hook, load_corpus(str(corpus)), context_length=32,
                                          batch_size=32, max_tokens=6000)
    acts = torch.cat(list(stream))
    torch.manual_seed(0)
    sae = probsae.build_sae("prob_topk", d_in=minilm.d_model, d_sae=256, k=8)
    run = root / "run_prob_topk"
    probsae.train(sae, acts, probsae.TrainConfig(steps=60, batch_size=256, lr=2e-3, progress=False,
                                                 log_every=20, extra={"model": "minilm", "hook": hook,
                                                                      "corpus": str(corpus)}),
                  run_dirs=[run])
    (run / "run_config.json").write_text(json.dumps({"model": "minilm", "hook": hook, "corpus": str(corpus)}))
    return run


def _helper(name: str):
    """A helper module of this folder (tests/interp is no package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"interp_{name}", Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def scripted():
    """scripted_client.py: a chat client answering from a script, and tiny buckets of examples."""
    return _helper("scripted_client")


@pytest.fixture()
def autointerp_configs(monkeypatch) -> list:
    """The AutoInterpConfig of each ``probsae autointerp`` call, which then stops (exit 2) before any work."""
    import probsae.interp.pipeline as pipeline
    from probsae.errors import InputError

    seen = []

    def stop(infos, cfg, out, force=False):
        seen.append(cfg)
        raise InputError("stop")
    monkeypatch.setattr(pipeline, "autointerp_runs", stop)
    return seen


@pytest.fixture()
def fake_llm():
    srv = _helper("fake_llm").FakeLLM().start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _one_thread():
    """The test machine is small and shared: one intra-op thread avoids oversubscription, which
    makes small CPU forward passes 10x slower. Restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_setup():
    """A tiny random GPT-2, word-level documents and an (untrained) prob_topk SAE on it."""
    import numpy as np
    import probsae
    from probsae.data.tiny import TINY_WORDS, tiny_model

    handle = tiny_model("gpt2")
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(TINY_WORDS, 50)) for _ in range(80)]
    torch.manual_seed(0)
    sae = probsae.build_sae("prob_topk", d_in=handle.d_model, d_sae=48, k=4)
    sae.init_from_data(torch.randn(64, handle.d_model))
    return handle, docs, sae


def _planted_cache(path, n_windows: int = 20, W: int = 64, tokenizer=None, start_tops: bool = False):
    """A hand-written cache (d_sae 4, windows of W tokens, all encoded): latent 0 fires only at
    positions 40–45, latent 1 on every token, latent 2 once per window at spread positions (a
    normal latent), latent 3 at each window's first token. ``start_tops`` adds latent 4 (d_sae 5),
    whose three strongest firings are at a window's first token but which mostly fires at
    position 10 (so it is not a window-start latent)."""
    from probsae.interp import LatentCache
    from probsae.interp.encode import EncodedBatch
    from probsae.interp.latent_cache_writer import _ChunkWriter, _Totals

    trip = []
    for w in range(n_windows):
        trip += [(w, p, 0, 1.0 + 0.1 * (p - 40)) for p in range(40, 46)]
        trip += [(w, p, 1, 0.5) for p in range(W)]
        trip += [(w, 1 + (w * 3) % (W - 1), 2, 2.0 + w)]
        trip += [(w, 0, 3, 3.0)]
        if start_tops:
            trip += [(w, 0, 4, 9.0)] if w < 3 else []
            trip += [(w, 10, 4, 1.0)]
    d_sae = 5 if start_tops else 4
    trip.sort()
    win, pos, lat, act = (torch.tensor(c) for c in zip(*trip))
    ids = torch.arange(n_windows * W).reshape(n_windows, W) % 50
    eb = EncodedBatch(ids, torch.ones(n_windows, W, dtype=torch.long), torch.ones(n_windows, W, dtype=torch.bool),
                      0, win, pos.to(torch.int16), lat, act.float())
    path.mkdir()
    totals, writer = _Totals(d_sae), _ChunkWriter(path, d_sae, W, group_size=2, chunk_windows=8, outputs=())
    totals.add(eb)
    writer.add(eb)
    writer.flush()
    totals.save(path / "stats.safetensors")
    (path / "manifest.json").write_text(json.dumps({
        "format": "probsae-latent-cache", "version": 2, "d_sae": d_sae, "window_len": W, "group_size": 2,
        "n_tokens": totals.n_tokens, "chunks": writer.chunks, "token_outputs": [], "complete": True}))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path / "tokenizer"))
    return LatentCache(path)


@pytest.fixture
def planted_cache():
    """``planted_cache(path, n_windows=20, W=64, tokenizer=None)``: a hand-written latent cache with
    a positional (0), a dense (1), a normal (2) and a window-start (3) latent."""
    return _planted_cache
