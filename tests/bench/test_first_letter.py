"""The first-letter task: word filter, prompts, activations through the cached example prefixes
(equal to a plain forward of the whole prompt), the model check, and the whole absorption pipeline
on a tiny random-weight model."""

import json

import numpy as np
import pytest
import torch

from probsae.bench import first_letter as fl
from probsae.bench.absorption import AbsorptionConfig, run_absorption
from probsae.errors import FileIOError, InputError

WORDS = ("apple arrow bread brick cloud crane dance drum eagle earth flame frost grape ghost house honey "
         "ice iron jelly joke kite knife lemon lion melon moon nest night ocean olive paper piano queen quiet "
         "river robot stone sugar tiger train uncle unit voice vase water whale yard yarn zebra zone").split()
TEMPLATE_WORDS = ["has", "the", "first", "letter", ":"]


@pytest.fixture(scope="module")
def handle():
    """A random GPT-2 whose word-level tokenizer knows the words, the capital letters and the template."""
    import transformers as T
    from tokenizers import Tokenizer, models, pre_tokenizers

    from probsae.data.models import ModelHandle

    vocab = {"<unk>": 0, "<|endoftext|>": 1}
    for w in WORDS + TEMPLATE_WORDS + [c.upper() for c in fl.LETTERS]:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = T.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<|endoftext|>",
                                    eos_token="<|endoftext|>")
    torch.manual_seed(0)
    cfg = T.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=len(vocab), n_positions=64,
                       bos_token_id=1, eos_token_id=1)
    return ModelHandle.from_model(T.GPT2LMHeadModel(cfg).eval(), tok, name="tiny-letters")


TASK = fl.FirstLetterConfig(icl_examples=3, prefixes=2, batch_size=8, max_words=0)


def test_filter_keeps_lowercase_single_token_words(handle):
    got = fl.filter_words(["tiger", "Tiger", "tiger", "don't", "unknownword", "zebra", "x1", ""], handle.tokenizer)
    assert got == ["tiger", "zebra"]


def test_missing_word_list_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(fl, "DEFAULT_WORDS", tmp_path / "words")
    with pytest.raises(FileIOError, match="apt-get install wamerican.*--words FILE"):
        fl.read_words()
    with pytest.raises(FileIOError, match="nope"):
        fl.read_words(tmp_path / "nope")
    (tmp_path / "mine").write_text("cat\n\n dog \n")
    assert fl.read_words(tmp_path / "mine") == ["cat", "dog"]


def test_letters_must_be_single_tokens():
    from probsae.data.tiny import tiny_tokenizer

    with pytest.raises(InputError, match="' A' … ' Z'"):
        fl.letter_token_ids(tiny_tokenizer())


def test_too_few_words_is_an_error(handle):
    with pytest.raises(InputError, match="only 3 of 4 words"):
        fl.first_letter_data(handle, ["resid_pre.1"], ["apple", "bread", "cloud", "Bad"], TASK)


def test_activations_equal_a_plain_forward_of_the_prompt(handle):
    from probsae.data.hooks import capture

    data = fl.first_letter_data(handle, ["resid_pre.1", "resid_post.1"], WORDS, TASK)
    examples = {w for ex in data.examples for w in ex}
    assert len(data.words) == len(WORDS) - 6 and not examples & set(data.words)
    assert data.train.sum() == int(0.8 * len(data.words))
    assert [fl.LETTERS[i] for i in data.letters] == [w[0] for w in data.words]
    tok = handle.tokenizer
    for i in (0, 5, len(data.words) - 1):
        prefix = fl._prefix_text(data.examples[i % 2])
        ids = [1] + tok(prefix + f" {data.words[i]} has the first letter:", add_special_tokens=False)["input_ids"]
        pos = len(ids) - 6  # SAEBench's position -6: the word
        assert tok.convert_ids_to_tokens(ids[pos]) == data.words[i]
        for hook in ("resid_pre.1", "resid_post.1"):
            want = capture(handle, hook, torch.tensor([ids]))[0, pos]
            assert torch.allclose(data.acts[hook][i], want, atol=1e-5)
    # the model check: greedy next token after the whole prompt
    assert data.checked == (~data.train).sum() and 0 <= data.accuracy <= 1
    right = 0
    letters = fl.letter_token_ids(tok)
    for i in np.flatnonzero(~data.train):
        ids = [1] + tok(fl._prefix_text(data.examples[i % 2]) + f" {data.words[i]} has the first letter:",
                        add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            right += int(handle.model(torch.tensor([ids])).logits[0, -1].argmax() == letters[data.letters[i]])
    assert data.accuracy == pytest.approx(right / data.checked)
    assert json.dumps(data.summary())


def test_accuracy_on_given_words(handle):
    tok = handle.tokenizer
    words, examples = ["tiger", "zebra", "moon"], [["apple", "bread", "cloud"], ["drum", "eagle", "flame"]]
    got = fl.first_letter_accuracy(handle, words, examples)
    answers = []
    for i, w in enumerate(words):
        ids = [1] + tok(fl._prefix_text(examples[i % 2]) + f" {w} has the first letter:",
                        add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            answers.append(tok.convert_ids_to_tokens(int(handle.model(torch.tensor([ids])).logits[0, -1].argmax())))
    wrong = [w for w, a in zip(words, answers) if a != w[0].upper()]
    assert got == {"accuracy": pytest.approx(1 - len(wrong) / 3), "n": 3, "wrong": wrong}
    with pytest.raises(InputError, match="not one token.*Tiger"):
        fl.first_letter_accuracy(handle, ["Tiger"], examples)


def test_pipeline_runs_on_a_tiny_model(handle):
    from probsae.saes import build_sae

    saes = {}
    for arch in ("topk", "prob_topk"):
        sae = build_sae(arch, d_in=16, d_sae=32, k=4)
        sae.metadata.hook_name = "resid_pre.1"
        saes[arch] = sae
    cfg = AbsorptionConfig(min_letters=1, min_probe_f1=-1, probe_epochs=2, sparse_epochs=2, max_k=3)
    out = run_absorption(handle, saes, WORDS, fl.FirstLetterConfig(**{**vars(TASK), "min_accuracy": 0.0}), cfg)
    json.dumps(out)
    assert out["task"]["n_words"] == len(WORDS) - 6 and "skipped" not in out["task"]
    for res in out["saes"].values():
        assert 0 <= res["mean_absorption_fraction_score"] <= 1 and 0 <= res["mean_full_absorption_score"] <= 1
        assert res["hook"] == "resid_pre.1" and all(1 <= r["num_split_features"] <= 3 for r in res["letters"])
        assert res["seconds"] > 0
    assert out["task"]["seconds"] > 0 and list(out["task"]["probe_seconds"]) == ["resid_pre.1"]
    skipped = run_absorption(handle, saes, WORDS, fl.FirstLetterConfig(**{**vars(TASK), "min_accuracy": 1.01}), cfg)
    assert "does not solve the task" in skipped["task"]["skipped"]
    assert skipped["saes"]["topk"]["skipped"] == skipped["task"]["skipped"]
