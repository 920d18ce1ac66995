"""The public interface, for every registered architecture."""

import json

import pytest
import torch

import probsae
from probsae.errors import ConfigError, InputError, SAEFileError

def make(arch, d_in=16, d_sae=64, **kw):
    if "k" in probsae.hyperparameters(arch):  # the TopK family
        kw.setdefault("k", 4)
    return probsae.build_sae(arch, d_in=d_in, d_sae=d_sae, **kw)


def test_registry_lists_every_architecture():
    paper = {"topk", "prob_topk", "abstopk", "batchtopk", "vsae_topk", "relu", "gated", "jumprelu"}
    assert paper <= set(probsae.ARCHITECTURES)


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_forward_shapes_loss_and_gradients(arch):
    sae = make(arch)
    x = torch.randn(32, 16)
    out = sae(x)
    assert out.recon.shape == (32, 16) and out.codes.shape == (32, 64)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert "mse" in out.losses
    torch.testing.assert_close(out.loss, sum(out.losses.values()))
    out.loss.backward()
    assert sae.W_enc.grad is not None and sae.W_enc.grad.abs().sum() > 0
    assert sae.W_dec.grad is not None and sae.W_dec.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_encode_decode_matches_forward_in_input_scale(arch):
    sae = make(arch).eval()
    x = torch.randn(8, 16) * 7 + 3
    out = sae(x)
    codes = sae.encode(x)
    torch.testing.assert_close(codes, out.codes)
    torch.testing.assert_close(sae.decode(codes), out.recon)
    # reconstruction comes back in the input's scale: unit normalisation is scale invariant
    torch.testing.assert_close(sae(x * 10).recon, out.recon * 10, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sae(x * 10).codes, out.codes, rtol=1e-4, atol=1e-5)


def test_leading_dimensions_are_kept():
    sae = make("topk").eval()
    x = torch.randn(2, 5, 16)
    out = sae(x)
    assert out.recon.shape == (2, 5, 16) and out.codes.shape == (2, 5, 64)
    assert sae.encode(x).shape == (2, 5, 64)


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_save_load_round_trip_is_exact(arch, tmp_path, device):
    sae = make(arch, seed=3)
    x = torch.randn(64, 16)
    probsae.train(sae, x, probsae.TrainConfig(steps=3, batch_size=16, progress=False, device=str(device)))
    sae.save(tmp_path / "s")
    loaded = probsae.load_sae(tmp_path / "s", device=str(device))
    assert type(loaded) is type(sae) and loaded.cfg == sae.cfg
    for (k, v), (k2, v2) in zip(sae.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and v2.device == v.device and torch.equal(v, v2), k
    sae.eval(), loaded.eval()
    assert torch.equal(sae(x).recon, loaded(x).recon)  # a CPU input is moved to the SAE's device
    on_cpu = probsae.load_sae(tmp_path / "s")  # load_sae's default: the CPU
    assert on_cpu.W_dec.device.type == "cpu" and torch.equal(on_cpu.W_dec, sae.W_dec.cpu())


@pytest.mark.parametrize("arch", ["topk", "abstopk", "prob_topk", "vsae_topk"])
def test_l0_equals_k(arch):
    sae = make(arch, k=5)
    x = torch.randn(50, 16)
    for mode in (sae.train, sae.eval):
        mode()
        l0 = (sae(x).codes != 0).sum(-1)
        assert torch.all(l0 == 5), arch


def test_batchtopk_l0_averages_k():
    sae = make("batchtopk", k=5).train()
    x = torch.randn(40, 16)
    l0 = (sae(x).codes != 0).sum(-1).float()
    assert l0.mean().item() == pytest.approx(5.0)
    assert l0.max() > l0.min(), "BatchTopK spreads the budget unevenly across tokens"


def test_scalar_normalisation_is_fitted_and_saved(tmp_path):
    sae = make("topk", normalize="scalar")
    x = torch.randn(512, 16) * 5
    sae.init_from_data(x, "zeros")
    x_n, _ = sae.normalizer(x)
    assert x_n.pow(2).sum(-1).mean().item() == pytest.approx(16, rel=1e-4)
    sae.save(tmp_path / "s")
    assert float(probsae.load_sae(tmp_path / "s").normalizer.scale) == pytest.approx(float(sae.normalizer.scale))


# ---- bad input gives a clear error ------------------------------------------------------------
def test_wrong_input_dimension():
    with pytest.raises(InputError, match="d_in=16.*shape \\(4, 15\\)"):
        make("topk")(torch.randn(4, 15))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_activations(bad):
    x = torch.randn(4, 16)
    x[1, 3] = bad
    with pytest.raises(InputError, match="NaN/inf"):
        make("prob_topk")(x)
    with pytest.raises(InputError, match="NaN/inf"):
        make("relu").encode(x)


def test_integer_activations_rejected():
    with pytest.raises(InputError, match="floating-point"):
        make("topk")(torch.ones(2, 16, dtype=torch.int64))


def test_k_larger_than_d_sae():
    with pytest.raises(ConfigError, match="k=65 is larger than d_sae=64"):
        make("topk", k=65)


def test_unknown_architecture():
    with pytest.raises(ConfigError, match="unknown architecture 'topq'.*prob_topk"):
        probsae.build_sae("topq", d_in=4, d_sae=8)


def test_unknown_hyperparameter():
    with pytest.raises(ConfigError, match=r"unknown hyperparameter\(s\) \['lamda_mag'\]"):
        probsae.build_sae("prob_topk", d_in=4, d_sae=8, k=2, lamda_mag=0.1)
    with pytest.raises(ConfigError, match=r"\['k'\].*'relu'"):
        probsae.build_sae("relu", d_in=4, d_sae=8, k=2)


@pytest.mark.parametrize("kw", [{"d_sae": 0}, {"k": 0}, {"gate": "gumbel"}, {"beta_start": -1.0}, {"normalize": "std"}])
def test_invalid_hyperparameter_values(kw):
    base = {"d_in": 4, "d_sae": 8, "k": 2}
    base.update(kw)
    with pytest.raises(ConfigError):
        probsae.build_sae("prob_topk", **base)


def test_corrupt_weight_file(tmp_path):
    make("topk").save(tmp_path / "s")
    (tmp_path / "s" / "sae.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(SAEFileError, match="sae.safetensors is not a valid safetensors file"):
        probsae.load_sae(tmp_path / "s")


def test_truncated_weight_file(tmp_path):
    make("topk").save(tmp_path / "s")
    w = tmp_path / "s" / "sae.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(SAEFileError, match="truncated"):
        probsae.load_sae(tmp_path / "s")


def test_missing_files_and_mismatched_config(tmp_path):
    with pytest.raises(SAEFileError, match="does not exist"):
        probsae.load_sae(tmp_path / "nothing")
    make("topk").save(tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    cfg["config"]["d_sae"] = 32
    (tmp_path / "s" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SAEFileError, match="shape"):
        probsae.load_sae(tmp_path / "s")
    (tmp_path / "s" / "config.json").unlink()
    with pytest.raises(SAEFileError, match="missing config.json"):
        probsae.load_sae(tmp_path / "s")


def test_decode_without_statistics_is_an_error():
    sae = make("topk").eval()
    sae.encode(torch.randn(4, 16))
    with pytest.raises(InputError, match="statistics"):
        sae.decode(torch.zeros(3, 64))
    assert sae.decode_normalized(torch.zeros(3, 64)).shape == (3, 16)
