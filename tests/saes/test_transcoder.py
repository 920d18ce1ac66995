"""The transcoder against a hand computation: [input | target] rows, the target's working scale
(the input's statistics and target_scale), the skip term, and what it is for (predicting another
activation, a linear part of it through W_skip)."""

import pytest
import torch

import probsae
from probsae.errors import ConfigError, InputError
from probsae.runs.spec import RunSpec
from probsae.data.prepare import DataSpec


def make(**kw):
    kw.setdefault("k", 3)
    return probsae.build_sae("transcoder", d_in=6, d_sae=12, **kw)


def hand_forward(sae, x, y):
    """ŷ_n = W_dec TopK(ReLU(W_enc(x_n − b_dec) + b_enc)) + b_dec [+ x_n W_skip], y_n with x's statistics."""
    mean = x.mean(-1, keepdim=True)
    norm = (x - mean).norm(dim=-1, keepdim=True)
    x_n, y_n = (x - mean) / norm, (y - mean) / norm * sae.target_scale
    pre = ((x_n - sae.b_dec) @ sae.W_enc + sae.b_enc).relu()
    top = pre.topk(sae.cfg.k, dim=-1)
    codes = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
    recon_n = codes @ sae.W_dec + sae.b_dec
    if sae.cfg.skip:
        recon_n = recon_n + x_n @ sae.W_skip
    return recon_n, y_n, recon_n / sae.target_scale * norm + mean


@pytest.mark.parametrize("skip", [False, True])
def test_forward_and_loss_against_the_target_by_hand(skip):
    torch.manual_seed(0)
    sae = make(skip=skip).eval()
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1), sae.b_dec.normal_(0, 0.1)
        sae.target_scale.fill_(2.5)
        if skip:
            sae.W_skip.normal_(0, 0.3)
    x, y = torch.randn(10, 6) * 2 + 1, torch.randn(10, 6) * 0.5 - 3
    recon_n, y_n, recon = hand_forward(sae, x, y)
    out = sae(torch.cat([x, y], -1))  # one [input | target] row per token
    torch.testing.assert_close(out.recon_normalized, recon_n)
    torch.testing.assert_close(out.x_normalized, y_n)  # metrics (FVU) are against the target
    torch.testing.assert_close(out.losses["mse"], (recon_n - y_n).pow(2).sum(-1).mean())
    torch.testing.assert_close(out.recon, recon)  # in the target's raw scale
    explicit = sae(x, target=y)
    torch.testing.assert_close(explicit.loss, out.loss)
    # the prediction needs only the input: the same output without the target
    torch.testing.assert_close(sae(x).recon, recon)


def test_fed_its_input_alone_it_is_the_sae():
    sae = make().eval()
    x = torch.randn(8, 6)
    x_n, _ = sae.normalizer(x)
    out = sae(x)
    torch.testing.assert_close(out.x_normalized, x_n)
    torch.testing.assert_close(out.recon, sae.decode(sae.encode(x)))


@pytest.mark.parametrize("normalize", ["unit", "scalar", "none"])
def test_init_fits_target_scale_and_b_dec_from_the_target(normalize):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 6, generator=g) * 4, torch.randn(64, 6, generator=g) * 0.01 + 0.05
    sae = make(normalize=normalize)
    sae.init_from_data(torch.cat([x, y], -1), "mean")
    x_n, stats = sae.normalizer(x)
    y_n, _ = sae.normalize_target(y, stats)
    if normalize == "none":
        assert float(sae.target_scale) == 1.0
    else:  # the normalised target has the normalised input's mean squared norm
        assert float(y_n.pow(2).sum(-1).mean()) == pytest.approx(float(x_n.pow(2).sum(-1).mean()), rel=1e-4)
    torch.testing.assert_close(sae.b_dec.detach(), y_n.mean(0))  # b_dec is the output's bias
    torch.testing.assert_close(sae.denormalize(y_n, stats), y)  # the inverse needs only the input's statistics


def test_skip_connection_is_zero_at_init_saved_and_loaded(tmp_path):
    sae = make(skip=True)
    assert torch.equal(sae.W_skip, torch.zeros(6, 6))
    assert "W_skip" not in make().state_dict()
    with torch.no_grad():
        sae.W_skip.normal_(), sae.target_scale.fill_(3.0)
    sae.save(tmp_path / "t")
    back = probsae.load_sae(tmp_path / "t")
    assert back.cfg.skip and torch.equal(back.W_skip, sae.W_skip) and float(back.target_scale) == 3.0


def test_the_skip_term_learns_a_linear_target():
    """y = x·A (a linear 'MLP'): the skip transcoder's W_skip carries it (FVU < 0.05, measured
    0.015); without the skip, K = 2 of 16 latents cannot (FVU > 0.15, measured 0.24)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 8, generator=g)
    y = x @ torch.randn(8, 8, generator=g)
    fvu = {}
    for skip in (True, False):
        sae = probsae.build_sae("transcoder", d_in=8, d_sae=16, k=2, normalize="none", skip=skip)
        probsae.train(sae, torch.cat([x, y], -1), probsae.TrainConfig(steps=300, batch_size=128, lr=1e-2,
                                                                      progress=False, device="cpu"))
        fvu[skip] = probsae.evaluate(sae, torch.cat([x, y], -1))["fvu"]
    assert fvu[True] < 0.05 and fvu[False] > 0.15, fvu


def test_rows_of_another_width_are_refused_by_name():
    with pytest.raises(InputError, match=r"takes input rows \(\.\.\., 6\) or \[input \| target\] rows \(\.\.\., 12\)"):
        make()(torch.randn(4, 9))


def test_a_run_pairs_a_target_hook_with_a_transcoder_only():
    with pytest.raises(ConfigError, match="needs an architecture that predicts another activation.*transcoder"):
        RunSpec(architecture="topk", data=DataSpec(target_hook="resid_post.4")).validate()
    with pytest.raises(ConfigError, match="'transcoder' predicts another activation.*--target-hook"):
        RunSpec(architecture="transcoder").validate()
    RunSpec(architecture="transcoder", hparams={"k": 4}, data=DataSpec(target_hook="resid_post.4")).validate()
    assert RunSpec(architecture="transcoder", data=DataSpec(target_hook="resid_post.4")).build_sae(64).d_in == 32
