"""Shared set-up of the end-to-end sweep tests: a random-word text corpus and a tiny random GPT-2
that ``load_model`` returns whatever name it is asked for (its calls are recorded)."""

from __future__ import annotations

import random

import pytest

import probsae.data.models as models_mod
from probsae.data.tiny import TINY_WORDS, tiny_model


@pytest.fixture()
def tiny_corpus_model(tmp_path, monkeypatch):
    """(corpus .txt path, list of model names load_model was called with)."""
    rng = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choice(TINY_WORDS) for _ in range(60)) for _ in range(120)))
    handle = tiny_model("gpt2", n_layers=2, d_model=16)
    calls: list[str] = []

    def fake_load_model(name, device="cpu", dtype=None):
        calls.append(name)
        return handle

    monkeypatch.setattr(models_mod, "load_model", fake_load_model)
    return corpus, calls


@pytest.fixture()
def tiny_data_toml(tmp_path, tiny_corpus_model):
    """``f(hook="resid_pre.1", extra="")``: the ``[data]`` section of a sweep TOML over the tiny
    corpus and model (cache under ``tmp_path/cache``), ``extra`` lines appended."""
    corpus, _ = tiny_corpus_model

    def section(hook: str = "resid_pre.1", extra: str = "") -> str:
        return (f'[data]\nmodel = "tiny-gpt2"\nhook = "{hook}"\ncorpus = "{corpus}"\ncontext_length = 32\n'
                f'holdout_every = 6\nshard_tokens = 1024\ncache_dir = "{tmp_path / "cache"}"\n{extra}')

    return section


@pytest.fixture()
def figures(monkeypatch):
    """Every figure saved during the test, captured before it is closed."""
    import matplotlib.figure

    saved = []
    orig = matplotlib.figure.Figure.savefig

    def keep(fig, *a, **kw):
        saved.append(fig)
        return orig(fig, *a, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return saved
