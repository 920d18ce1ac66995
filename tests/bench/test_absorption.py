"""The absorption metric: SAEBench's per-word formula by hand, and known answers on a planted
feature hierarchy with hand-built SAEs."""

import math

import numpy as np
import pytest
import torch

from probsae.bench.absorption import (AbsorptionConfig, LetterProbe, absorption_scores, f1_scores, main_latents,
                                      run_absorption, train_letter_probe, word_absorption)
from probsae.bench.first_letter import FirstLetterConfig
from probsae.errors import ConfigError
from probsae.saes import build_sae

A, B = 0, 1            # letters 'a' and 'b'
SHARED = range(2, 11)  # 9 context tokens, each with both letters equally often
ABSORBED = range(11, 16)  # 5 'a' words, each with its own token direction
D = 16


def planted(absorbed: bool = True, reps: int = 1):
    """Activations x = e_letter + e_token: per shared token 10 'a' and 10 'b' words; with
    ``absorbed`` also 2 of each of the 5 special 'a' words: 10 % of the 100 'a' words."""
    rows, ys = [], []
    for _ in range(reps):
        for t in SHARED:
            for letter in (A, B):
                rows += [(letter, t)] * 10
                ys += [letter] * 10
        if absorbed:
            for t in ABSORBED:
                rows += [(A, t)] * 2
                ys += [A] * 2
    x = torch.zeros(len(rows), D)
    for i, (letter, t) in enumerate(rows):
        x[i, letter] = 1
        x[i, t] = 1
    return x, np.array(ys)


def hand_sae(absorbing: bool):
    """A ReLU SAE (no normalisation) that reconstructs the planted data exactly. Latents: 0 = 'a',
    1 = 'b', one per shared token, one per special word. ``absorbing``: the special words' latents
    absorb 'a' (decoder (e_a + e_w)/√2) and the 'a' latent is silent on them; otherwise the 'a'
    latent fires on every 'a' word and the special words' latents are plain token latents."""
    n = 2 + len(SHARED) + len(ABSORBED)
    sae = build_sae("relu", d_in=D, d_sae=n, normalize="none")
    enc, dec = torch.zeros(n, D), torch.zeros(n, D)
    enc[0, A] = dec[0, A] = 1
    enc[1, B] = dec[1, B] = 1
    for j, t in enumerate(SHARED, 2):
        enc[j, t] = dec[j, t] = 1
    for j, t in enumerate(ABSORBED, 2 + len(SHARED)):
        if absorbing:
            enc[0, t] = -2  # the 'a' latent is silent on the special words
            enc[j, t] = math.sqrt(2)
            dec[j, A] = dec[j, t] = 1 / math.sqrt(2)
        else:
            enc[j, t] = dec[j, t] = 1
    with torch.no_grad():
        sae.W_enc.copy_(enc.T)
        sae.W_dec.copy_(dec)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


#: SAEBench's optimiser with fewer, larger steps: the planted data is small and easy.
CFG = AbsorptionConfig(min_letters=2, probe_epochs=10, probe_batch_size=256, probe_lr=0.1, sparse_epochs=10,
                       sparse_batch_size=256)
EXACT = LetterProbe([A, B], torch.eye(D)[[A, B]] * 10, torch.tensor([-5.0, -5.0]))


def test_planted_sae_reconstructs_the_data():
    x, _ = planted()
    for absorbing in (True, False):
        sae = hand_sae(absorbing)
        assert torch.allclose(sae.decode(sae.encode(x)), x, atol=1e-6)


@pytest.mark.parametrize("probe", [EXACT, None], ids=["exact-probe", "trained-probe"])
def test_planted_absorption_is_found(probe):
    x, y = planted()
    out = absorption_scores(hand_sae(True), *planted(reps=20), x, y, CFG, probe=probe)
    a, b = out["letters"]
    assert a["letter"] == "a" and a["main_latents"] == [0] and b["main_latents"] == [1]
    assert a["num_probe_true_positives"] == 100 and b["num_probe_true_positives"] == 90
    assert a["mean_absorption_fraction"] == pytest.approx(0.1) and a["full_absorption_rate"] == pytest.approx(0.1)
    assert a["num_full_absorption"] == 10
    assert b["mean_absorption_fraction"] == 0 and b["full_absorption_rate"] == 0
    assert out["mean_absorption_fraction_score"] == pytest.approx(0.05)
    assert out["mean_full_absorption_score"] == pytest.approx(0.05)
    assert out["mean_num_split_features"] == 1


def test_no_absorption_gives_zero():
    x, y = planted()
    out = absorption_scores(hand_sae(False), *planted(reps=20), x, y, CFG, probe=EXACT)
    assert out["mean_absorption_fraction_score"] == 0 and out["mean_full_absorption_score"] == 0
    # the plain data (no special words), probe trained
    x, y = planted(absorbed=False)
    out = absorption_scores(hand_sae(False), *planted(absorbed=False, reps=20), x, y, CFG)
    assert out["mean_absorption_fraction_score"] == 0 and out["mean_full_absorption_score"] == 0


def test_split_latents_are_main_not_absorbing():
    """'a' split over two latents (each half of the shared tokens): both are main, nothing absorbs."""
    x, y = planted(absorbed=False)
    sae = hand_sae(False)
    with torch.no_grad():  # latent 0 fires on 'a' with the first 4 shared tokens, the last one on the others
        first = list(SHARED)[:4]
        rest = list(SHARED)[4:]
        sae.W_enc[:, 0] = 0
        sae.W_enc[A, 0] = 1
        sae.W_enc[rest, 0] = -2
        last = sae.d_sae - 1
        sae.W_enc[:, last] = 0
        sae.W_enc[A, last] = 1
        sae.W_enc[first, last] = -2
        sae.W_dec[last] = sae.W_dec[0]
    out = absorption_scores(sae, *planted(absorbed=False, reps=20), x, y, CFG, probe=EXACT)
    assert sorted(out["letters"][0]["main_latents"]) == [0, last]
    assert out["mean_absorption_fraction_score"] == 0


def test_word_absorption_by_hand():
    """SAEBench's branches: full, partial, too small a share, main carries it all, wrong sign."""
    cos = torch.tensor([1.0, 0.5, 0.05, 0.5])
    codes = torch.tensor([[0.0, 2.0, 0.0, 0.0],    # main silent, latent 1 carries 1.0 of 1.0: full
                          [0.6, 0.8, 0.0, 0.0],    # main 0.6, latent 1 0.4 of 1.0: fraction 0.4
                          [0.8, 0.0, 4.0, 0.0],    # latent 2's cos 0.05 < 0.1: not an absorber
                          [1.2, 0.4, 0.0, 0.0],    # main ≥ activation projection: 0
                          [0.0, 2.0, 0.0, 0.0]])   # negative activation projection: 0
    proj = codes * cos
    act = torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0])
    frac, full = word_absorption(act, codes, proj, cos, [0], AbsorptionConfig())
    assert frac.tolist() == pytest.approx([1.0, 0.4, 0.0, 0.0, 0.0])
    assert full.tolist() == [True, False, False, False, False]
    # the share of absorbing latents must reach `proportion`
    frac, _ = word_absorption(act[1:2], codes[1:2], proj[1:2], cos, [0], AbsorptionConfig(proportion=0.5))
    assert frac.tolist() == [0.0]
    # at most max_absorbers latents absorb: two of 0.25 each, one allowed
    codes = torch.tensor([[0.0, 0.5, 0.0, 0.5]])
    frac, _ = word_absorption(torch.tensor([1.0]), codes, codes * cos, cos, [0], AbsorptionConfig(proportion=0.2,
                                                                                              max_absorbers=1))
    assert frac.tolist() == [1.0]


def test_f1_and_main_latents_pick_the_predictive_latent():
    pred = torch.tensor([[True, False], [True, False], [False, False]])
    truth = torch.tensor([[True, False], [False, False], [True, False]])
    assert f1_scores(pred, truth).tolist() == pytest.approx([0.5, 0.0])
    g = torch.Generator().manual_seed(0)
    y = np.arange(4000) % 2
    codes = torch.rand(4000, 6, generator=g) * 0.1
    codes[:, 3] += torch.from_numpy(y == 1).float()  # latent 3 marks letter 1
    codes[:, 5] += torch.from_numpy(y == 0).float()  # latent 5 marks letter 0
    got = main_latents(codes[:3000], y[:3000], codes[3000:], y[3000:], [0, 1], CFG)
    assert got == {0: [5], 1: [3]}


def test_letter_probe_separates_letters():
    x, y = planted(reps=20)
    probe = train_letter_probe(x, y, CFG)
    pred = probe.logits(x).argmax(1).numpy()
    assert (np.array(probe.letters)[pred] == y).all()


def test_too_few_letters_skips():
    x, y = planted()
    out = absorption_scores(hand_sae(True), x, y, x, y, AbsorptionConfig(), probe=EXACT)
    assert "skipped" in out and "only 2 letters" in out["skipped"] and "mean_absorption_fraction_score" not in out


def test_config_is_checked():
    with pytest.raises(ConfigError, match="max_k"):
        AbsorptionConfig(max_k=0)
    from probsae.bench.first_letter import first_letter_data

    with pytest.raises(ConfigError, match="prefixes"):
        first_letter_data(None, [], [], FirstLetterConfig(prefixes=0))


def test_encoder_model_is_skipped():
    from dataclasses import replace

    from probsae.data.tiny import tiny_model

    handle = replace(tiny_model("gpt2", n_layers=1, d_model=16), is_causal=False)
    sae = build_sae("topk", d_in=16, d_sae=32, k=2)
    sae.metadata.hook_name = "resid_pre.0"
    out = run_absorption(handle, {"s": sae}, words=["cat"])
    assert "not a causal LM" in out["saes"]["s"]["skipped"]


def test_balanced_logistic_regression_matches_scikit_learn():
    from probsae.bench.absorption import _fit_balanced_lr

    sklearn = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 300, 3, generator=g)
    y = (x[:, :, 0] + 0.5 * torch.randn(2, 300, generator=g) > 0.8).float()
    w, b = _fit_balanced_lr(x, y)
    for p in range(2):
        ref = sklearn.LogisticRegression(C=1.0, class_weight="balanced", max_iter=500).fit(x[p].numpy(), y[p].numpy())
        assert w[p].numpy() == pytest.approx(ref.coef_[0], rel=1e-3, abs=1e-3)
        assert float(b[p]) == pytest.approx(ref.intercept_[0], rel=1e-3, abs=1e-3)


def test_sparse_rows_train_like_dense_rows():
    from probsae.bench.absorption import _one_hot, _sparse, _train_ovr

    g = torch.Generator().manual_seed(4)
    codes = torch.rand(200, 12, generator=g) * (torch.rand(200, 12, generator=g) > 0.7)
    y = _one_hot(np.arange(200) % 3, [0, 1, 2])
    dense = _train_ovr(codes, 12, y, 3, 0.01, 32, 1e-6, 0, l1=0.01)
    sparse = _train_ovr(_sparse(codes), 12, y, 3, 0.01, 32, 1e-6, 0, l1=0.01)
    assert torch.allclose(dense[0], sparse[0], atol=1e-6) and torch.allclose(dense[1], sparse[1], atol=1e-6)
