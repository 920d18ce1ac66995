"""What the base class owns for every architecture: the SAEOutput built from the architecture's
``Forward`` (MSE added, losses summed), the optional reconstruction target, sparse/dense codes and
the extra per-token outputs."""

import pytest
import torch

import probsae
from probsae.saes.output import Forward, densify


def make(arch, **kw):
    if "k" in probsae.hyperparameters(arch):
        kw.setdefault("k", 4)
    return probsae.build_sae(arch, d_in=16, d_sae=64, **kw)


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_architecture_returns_a_forward_and_the_base_adds_the_mse(arch):
    sae = make(arch).train()
    x = torch.randn(32, 16)
    x_n, _ = sae.normalizer(x)
    fwd = sae.forward_normalized(x_n, x_n)
    assert isinstance(fwd, Forward), arch
    assert "mse" not in fwd.losses, f"{arch}: the base class owns the MSE"
    out = sae(x)
    assert list(out.losses)[0] == "mse" and set(out.losses) == {"mse", *fwd.losses}
    torch.testing.assert_close(out.losses["mse"], (out.recon_normalized - x_n).pow(2).sum(-1).mean())
    torch.testing.assert_close(out.loss, sum(out.losses.values()))


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_target_is_what_the_reconstruction_is_compared_with(arch):
    sae = make(arch).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 16, generator=g) * 3, torch.randn(24, 16, generator=g) * 5 + 1
    plain, same = sae(x), sae(x, target=x)
    assert torch.equal(plain.loss, same.loss) and torch.equal(plain.recon, same.recon)
    out = sae(x, target=y)
    # the target's working scale is the architecture's declaration: an autoencoder normalises it
    # alone; a transcoder (predicts_target) with the input's statistics, known at inference
    y_n, y_stats = sae.normalize_target(y, sae.normalizer(x)[1])
    if not type(sae).predicts_target:
        own_n, own_stats = sae.normalizer(y)
        torch.testing.assert_close(y_n, own_n)
        torch.testing.assert_close(y_stats.norm, own_stats.norm)
    torch.testing.assert_close(out.codes, plain.codes)  # the codes come from the input
    torch.testing.assert_close(out.x_normalized, y_n)
    torch.testing.assert_close(out.losses["mse"], (plain.recon_normalized - y_n).pow(2).sum(-1).mean())
    torch.testing.assert_close(out.recon, sae.denormalize(plain.recon_normalized, y_stats))


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_encode_sparse_densifies_to_encode(arch):
    sae = make(arch).eval()
    x = torch.randn(3, 5, 16)
    dense = sae.encode(x)
    values, indices = sae.encode_sparse(x)
    assert values.shape == indices.shape and values.shape[:2] == (3, 5)
    assert values.shape[-1] >= int((dense != 0).sum(-1).max())
    torch.testing.assert_close(densify(values, indices, 64), dense)


def test_encode_sparse_of_a_dense_architecture_pads_with_zero_codes_at_distinct_latents():
    sae = make("relu", l1_coeff=0.0).eval()
    with torch.no_grad():
        sae.b_enc.fill_(-0.2)  # some tokens get fewer active latents than others
    x = torch.randn(40, 16)
    values, indices = sae.encode_sparse(x)
    counts = (sae.encode(x) != 0).sum(-1)
    assert counts.min() < counts.max() == values.shape[-1]
    assert all(len(set(row.tolist())) == row.numel() for row in indices)


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_extra_outputs_are_declared_by_name(arch):
    sae = make(arch).eval()
    x = torch.randn(2, 3, 16)
    extras = sae.extras(x)
    assert set(extras) == set(type(sae).extra_outputs), arch
    for name, t in extras.items():
        assert t.shape[:2] == (2, 3) and not t.requires_grad, (arch, name)


def test_prob_topk_gate_probs_is_an_extra_output():
    sae = make("prob_topk").eval()
    x = torch.randn(7, 16)
    assert "gate_probs" in type(sae).extra_outputs
    torch.testing.assert_close(sae.extras(x)["gate_probs"], sae.gate_probs(x))
    a = (sae.normalizer(x)[0] - sae.b_dec) @ sae.W_enc
    torch.testing.assert_close(sae.gate_probs(x), sae.gate(a, noisy=False))


def test_w_enc_is_stored_latent_major_and_saved_in_the_saelens_layout(tmp_path):
    """W_enc (d_in, d_sae) is the transpose view of a contiguous (d_sae, d_in) matrix (the GPU path
    reads encoder columns as rows without a copy); training keeps that layout, and files keep the
    SAELens (d_in, d_sae) layout."""
    from safetensors.torch import load_file

    sae = probsae.build_sae("topk", d_in=8, d_sae=32, k=4)
    assert sae.W_enc.shape == (8, 32) and sae.W_enc.t().is_contiguous()
    probsae.train(sae, torch.randn(256, 8), probsae.TrainConfig(steps=3, batch_size=64, progress=False, device="cpu"))
    assert sae.W_enc.t().is_contiguous()  # Adam updated it in place, layout kept
    sae.save(tmp_path / "s")
    stored = load_file(str(tmp_path / "s" / "sae.safetensors"))["W_enc"]
    assert stored.shape == (8, 32) and stored.is_contiguous() and torch.equal(stored, sae.W_enc.detach())
    loaded = probsae.load_sae(tmp_path / "s")
    assert loaded.W_enc.t().is_contiguous() and torch.equal(loaded.W_enc, sae.W_enc)
