"""probsae.load_run: text → tokens and sparse codes of a trained run, exactly as training saw them."""

import json

import pytest
import torch

import probsae
from probsae.cli.main import main
from probsae.data import capture, load_model
from probsae.data.tiny import TINY_DOCS, save_tiny_model, tiny_documents


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("load_run")
    save_tiny_model(root / "model", "gpt2", n_layers=3, d_model=32, max_positions=64)
    (root / "corpus.txt").write_text("\n\n".join(tiny_documents(200)))
    run = root / "run"
    assert main(["train", "--arch", "topk", "--k", "4", "--expansion", "2", "--model", str(root / "model"),
                 "--hook", "resid_pre.2", "--corpus", str(root / "corpus.txt"), "--context-length", "16",
                 "--eval-tokens", "300", "--batch-size", "64", "--steps", "20", "--lr", "3e-3",
                 "--no-progress", "--cache-dir", str(root / "cache"), "--out", str(run)]) == 0
    return run


def test_text_to_top_latents_in_three_lines(run_dir):
    run = probsae.load_run(run_dir)
    enc = run.encode_text("the model is a test of the data")
    top = enc.top_latents(5)

    # what those lines did, by hand: the run's model and hook, BOS never encoded, sae.encode
    handle = load_model(str(run_dir.parent / "model"))
    ids = torch.tensor([[handle.tokenizer.bos_token_id] + handle.tokenizer("the model is a test of the data")["input_ids"]])
    x = capture(handle, "resid_pre.2", ids, torch.ones_like(ids))[0, 1:]          # position 0 = BOS, dropped
    codes = run.sae.encode(x)
    assert enc.tokens == ["the", " model", " is", " a", " test", " of", " the", " data"]
    assert torch.equal(enc.token_ids, ids[0, 1:])
    assert torch.allclose(enc.dense(), codes, atol=1e-6)
    best = codes.abs().max(0).values
    assert [l for l, _, _ in top] == best.topk(5).indices.tolist()
    l, a, tok = top[0]
    assert a == pytest.approx(float(codes[:, l][codes[:, l].abs().argmax()]), abs=1e-6)
    assert tok == enc.tokens[int(codes[:, l].abs().argmax())]
    assert (enc.latents >= 0).sum(1).tolist() == [4] * len(enc)              # K = 4 per token


def test_run_reads_its_metadata_and_loads_the_model_lazily(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["metadata"]["hook_name"] == "resid_pre.2" and cfg["metadata"]["context_length"] == 16
    assert "hook_name" not in cfg["config"]                                 # metadata is not a hyperparameter
    run = probsae.load_run(run_dir)
    assert run._model is None and run.hook == "resid_pre.2"                # nothing loaded yet
    assert run.model.d_model == 32 and run.context_length == 16


def test_long_text_spans_windows_as_in_training(run_dir):
    run = probsae.load_run(run_dir)
    text = " ".join(TINY_DOCS)                                             # 39 tokens > 16-token windows
    enc, short = run.encode_text([text, "data"])
    n = len(run.model.tokenizer(text)["input_ids"])
    assert len(enc) == n and len(short) == 1                                # every token once, BOS of each window dropped
    assert "".join(enc.tokens).strip() == text


def test_top_examples_over_held_out_text_and_given_texts(run_dir):
    run = probsae.load_run(run_dir)
    latent = run.encode_text("the model is a test of the data").top_latents(1)[0][0]
    ex = run.top_examples(latent, n=3)
    assert 1 <= len(ex) <= 3
    assert [e.max_act for e in ex] == sorted((e.max_act for e in ex), key=abs, reverse=True)
    assert "[[" in ex[0].context() and str(ex[0]).startswith(f"{ex[0].max_act:+.3f}")
    # the strongest activation found equals the SAE's code on that token of the held-out text
    held = " ".join(run.held_out_texts())
    assert "".join(t for t in ex[0].tokens if t).strip() in held
    own = run.top_examples(latent, n=2, texts=["the model is a test of the data"])
    assert len(own) == 1 and own[0].max_act == pytest.approx(
        run.encode_text("the model is a test of the data").dense()[:, latent].abs().max().item(), abs=1e-6)
    with pytest.raises(probsae.ConfigError):
        run.top_examples(10_000)


def test_top_examples_window_each_text_on_its_own_and_name_it(run_dir):
    run = probsae.load_run(run_dir)
    texts = ["the model is a test of the data", "import module then class object type error"]
    # packed together both texts (8 + 7 tokens, with BOS) would share one 16-token window
    latents = [l for l, _, _ in run.encode_text(texts[1]).top_latents(4)]
    seen = set()
    for latent in latents:
        for ex in run.top_examples(latent, n=10, texts=texts):
            assert ex.text in (0, 1) and ex.window == 0
            assert "".join(t for t in ex.tokens if t).strip() == texts[ex.text]     # no neighbour's context
            want = run.encode_text(texts[ex.text]).dense()[:, latent].abs().max().item()
            assert abs(ex.max_act) == pytest.approx(want, abs=1e-6)
            seen.add(ex.text)
    assert 1 in seen
    one = run.top_examples(latents[0], n=1, texts=texts[1])                          # a single text
    assert one[0].text == 0 and "".join(t for t in one[0].tokens if t).strip() == texts[1]
    assert all(ex.text is None for ex in run.top_examples(latents[0], n=2))          # held-out: packed


def test_a_saved_sae_without_metadata_is_refused_with_a_clear_message(tmp_path):
    probsae.build_sae("topk", d_in=8, d_sae=16, k=2).save(tmp_path / "bare")
    with pytest.raises(probsae.ConfigError, match="records no model/hook point"):
        probsae.load_run(tmp_path / "bare")


def test_every_file_of_a_run_is_readable_by_colleagues(run_dir):
    import os

    umask = os.umask(0)
    os.umask(umask)
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {"sae.safetensors", "config.json", "checkpoint.safetensors", "log.jsonl", "metrics.json"} <= {p.name for p in files}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: oct(0o666 & ~umask) for p in files}


def _profile(max_act, dense=()):
    """A LatentProfile of len(max_act) latents, those in ``dense`` firing on 50 % of tokens."""
    import numpy as np

    from probsae.interp.latent_cache import LatentProfile

    d = len(max_act)
    density = np.array([0.5 if l in dense else 0.001 for l in range(d)])
    pos_mass = np.ones((d, 16), np.float32)   # spread over every position: not positional
    return LatentProfile(density, np.asarray(max_act, np.float32), pos_mass, np.zeros(d), np.full(d, 100),
                         np.full((d, 5), -1), 16)


def test_top_latents_rank_by_code_relative_to_each_latents_max_and_leave_flagged_out():
    # latent 1: code 10 of max 100 (0.1); latent 2: 2 of 2.5 (0.8); latent 3 (dense): 3 of 3 (1.0);
    # latent 0: -4 of 5 (0.8, larger |code| than latent 2, so before it)
    enc = probsae.runs.load.EncodedText("a b", torch.tensor([7, 8]), ["a", " b"],
                                        torch.tensor([[1, 3], [2, 0]]), torch.tensor([[10.0, 3.0], [2.0, -4.0]]), 4)
    assert [l for l, _, _ in enc.top_latents(4)] == [1, 0, 3, 2]          # no profile: raw |code|
    enc.profile = _profile([5, 100, 2.5, 3], dense={3})
    assert enc.top_latents(4, exclude_flagged=False) == [(3, 3.0, "a"), (0, -4.0, " b"), (2, 2.0, " b"), (1, 10.0, "a")]
    assert [l for l, _, _ in enc.top_latents(4)] == [0, 2, 1]             # the dense latent left out
    assert [l for l, _, _ in enc.top_latents(1)] == [0]


def test_encode_text_attaches_the_profile_of_the_runs_latent_cache(run_dir):
    from probsae.interp.pipeline import ensure_cache, resolve_run

    run = probsae.load_run(run_dir)
    assert run.encode_text("the model").profile is None          # no latent cache yet: raw ranking
    ensure_cache(resolve_run(run_dir), n_windows=16, window_len=16, batch_size=8)
    p = probsae.load_run(run_dir).encode_text("the model is a test").profile
    assert p is not None and p.pos_mass.shape == (run.sae.d_sae, 16)


def test_top_examples_say_what_data_they_rest_on_and_cap_to_the_time_budget(run_dir, monkeypatch, capsys):
    import probsae.interp.cost as cost

    run = probsae.load_run(run_dir)
    latent = run.encode_text("the model is a test of the data").top_latents(1)[0][0]
    full = run.top_examples(latent, n=3)
    err = capsys.readouterr().err
    assert "held-out examples:" in err and "tokens/s on the first batch" in err      # the estimate, before the rest
    total = full.n_windows
    assert total >= 2 and full.capped_from is None and full.source == "held-out text"
    assert full.n_tokens == sum(1 for w in run._windows(run.held_out_texts()) for row in w.token_mask for k in row if k)
    assert f"{total:,} windows" in full.describe()
    one = run.top_examples(latent, n=3, max_windows=1)                                 # the user's count: kept
    assert one.n_windows == 1 and one.capped_from is None
    assert all(ex.window == 0 for ex in one)
    monkeypatch.setattr(cost, "TIME_BUDGET_S", 1e-9)                                   # a budget nothing fits
    run2 = probsae.load_run(run_dir)
    capped = run2.top_examples(latent, n=3)
    assert capped.n_windows < total and capped.capped_from == total and "capped from" in capped.describe()
    given = run.top_examples(latent, n=2, texts=["the model is a test of the data", "data"])
    assert given.source == "given texts" and given.n_windows == 2
    with pytest.raises(probsae.ConfigError, match="max_windows"):
        run.top_examples(latent, max_windows=0)
