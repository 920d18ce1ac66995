"""Matryoshka BatchTopK: the nested-prefix loss against a hand computation, BatchTopK selection and
inference, the configuration, what the nested losses buy (early prefixes reconstruct alone), its
exports, and one more line in a sweep's report."""

from __future__ import annotations

import json

import pytest
import torch

import probsae
from probsae.errors import ConfigError
from probsae.evaluation.recovery import toy_data
from probsae.saes.style import style
from test_math import B_DEC, W_DEC, X, decode, pre, setup  # noqa: E402  (the shared tiny example)

ARCH = "matryoshka_batchtopk"


def mse(recon):
    return float(((X - recon) ** 2).sum(1).mean())


def test_nested_losses_match_a_hand_computation():
    sae = setup(ARCH, k=2, prefix_fractions=(0.5, 1.0)).train()  # prefixes: latents [0, 2) and [0, 4)
    p = pre().clamp_min(0)
    kept = sorted(((float(p[b, i]), b, i) for b in range(2) for i in range(4)), reverse=True)[:4]
    codes = torch.zeros(2, 4)
    for v, b, i in kept:
        codes[b, i] = v
    assert codes[:, :2].abs().sum() > 0 and codes[:, 2:].abs().sum() > 0, "both groups must be active"
    out = sae(X)
    torch.testing.assert_close(out.codes, codes)  # BatchTopK selection: the 4 largest of the batch
    torch.testing.assert_close(out.recon, decode(codes))
    inner = codes[:, :2] @ W_DEC[:2] + B_DEC  # the first prefix alone
    assert list(out.losses) == ["mse", "mse_prefix_2"]
    assert out.losses["mse"].item() == pytest.approx(mse(decode(codes)), rel=1e-5)
    assert out.losses["mse_prefix_2"].item() == pytest.approx(mse(inner), rel=1e-5)
    assert out.loss.item() == pytest.approx(mse(decode(codes)) + mse(inner), rel=1e-5)


def test_a_prefix_loss_trains_only_its_prefix():
    sae = probsae.build_sae(ARCH, d_in=16, d_sae=64, k=8, prefix_fractions=(0.25, 1.0)).train()
    out = sae(torch.randn(64, 16))
    out.losses["mse_prefix_16"].backward()
    assert sae.W_dec.grad[:16].abs().sum() > 0
    assert sae.W_dec.grad[16:].abs().sum() == 0, "later latents must not help the first prefix"


def test_selection_threshold_and_inference_are_batchtopks(device):
    kw = {"d_in": 16, "d_sae": 64, "k": 4, "seed": 3}
    ours, plain = probsae.build_sae(ARCH, **kw).train(), probsae.build_sae("batchtopk", **kw).train()
    x = torch.randn(256, 16).to(device)  # where train() leaves the SAE: the hand computation below runs there
    torch.testing.assert_close(ours(x).codes, plain(x).codes)  # same init: the same batch selection
    probsae.train(ours, x, probsae.TrainConfig(steps=1, batch_size=256, progress=False, device=str(device)))
    assert float(ours.threshold) > 0  # the EMA of the smallest kept activation, set by the step
    with torch.no_grad():
        a = ours.pre_acts(ours.normalizer(x)[0]).relu()
        torch.testing.assert_close(ours.encode(x), a * (a > ours.threshold))


def test_prefix_configuration():
    sae = probsae.build_sae(ARCH, d_in=8, d_sae=100, k=4, prefix_fractions=[0.1, 0.333, 1])
    assert sae.cfg.prefix_fractions == (0.1, 0.333, 1) and sae.prefix_ends() == [10, 33, 100]
    assert probsae.build_sae(ARCH, d_in=8, d_sae=64, k=4).prefix_ends() == [4, 16, 64]  # the default
    for bad in ([], [0.5, 0.5, 1.0], [0.5, 0.9], [0.0, 1.0], [1.5], ["a", 1.0], [0.7, 0.2, 1.0]):
        with pytest.raises(ConfigError, match="prefix_fractions"):
            probsae.build_sae(ARCH, d_in=8, d_sae=64, k=4, prefix_fractions=bad)
    with pytest.raises(ConfigError, match="coincide"):
        probsae.build_sae(ARCH, d_in=8, d_sae=8, k=2, prefix_fractions=(0.01, 0.02, 1.0))


def test_save_load_keeps_the_prefixes(tmp_path, device):
    sae = probsae.build_sae(ARCH, d_in=8, d_sae=32, k=2, prefix_fractions=(0.25, 0.5, 1.0))
    probsae.train(sae, torch.randn(128, 8), probsae.TrainConfig(steps=2, batch_size=64, progress=False,
                                                                device=str(device)))
    sae.save(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["config"]["prefix_fractions"] == [0.25, 0.5, 1.0]
    back = probsae.load_sae(tmp_path)  # on the CPU; the trained SAE stays on the training device
    assert back.cfg == sae.cfg and torch.equal(back.threshold, sae.threshold.cpu())


def _prefix_fvu(sae, x, end: int) -> float:
    """FVU of the reconstruction from the first ``end`` latents only (inference codes), computed on
    the SAE's device (``encode`` returns its codes there)."""
    x = x.to(sae.W_dec.device)
    with torch.no_grad():
        x_n, _ = sae.normalizer(x)
        codes = sae.encode(x)
        recon = codes[:, :end] @ sae.W_dec[:end] + sae.b_dec
        return float((recon - x_n).pow(2).sum() / (x_n - x_n.mean(0)).pow(2).sum())


def test_early_latents_reconstruct_alone_better_than_a_flat_batchtopk(device):
    """What the nested losses are for: with identical data, init and budget, the first 16 of 128
    latents explain far more on their own than the first 16 latents of a plain BatchTopK SAE."""
    gen, train_x, test_x = toy_data(n_train=12_000, n_test=2_000)
    cfg = probsae.TrainConfig(steps=300, batch_size=256, lr=5e-3, warmup_steps=30, progress=False, device=str(device))
    fvu = {}
    for arch, hp in ((ARCH, {"prefix_fractions": (0.125, 1.0)}), ("batchtopk", {})):
        sae = probsae.build_sae(arch, d_in=32, d_sae=128, k=8, **hp)
        probsae.train(sae, train_x, cfg)
        fvu[arch] = (_prefix_fvu(sae, test_x, 16), probsae.evaluate(sae, test_x)["fvu"])
    assert fvu[ARCH][0] < 0.8 * fvu["batchtopk"][0], fvu
    assert fvu[ARCH][1] < 0.2, fvu  # and the whole dictionary still reconstructs well


def test_saelens_export_is_a_jumprelu_that_comes_back_as_matryoshka(tmp_path, device):
    from probsae.formats import export_saelens, import_saelens

    sae = probsae.build_sae(ARCH, d_in=8, d_sae=32, k=2, prefix_fractions=(0.25, 1.0), normalize="none")
    probsae.train(sae, torch.randn(256, 8) * 2, probsae.TrainConfig(steps=3, batch_size=64, progress=False,
                                                                    device=str(device)))
    report = export_saelens(sae, tmp_path)
    assert report.exact and report.target_architecture == "jumprelu"
    assert "prefix_fractions=[0.25, 1.0]" in (tmp_path / "PROBSAE_EXPORT.md").read_text()
    back = import_saelens(tmp_path).to(device)  # imported on the CPU; compared where the original runs
    assert back.architecture == ARCH and back.cfg == sae.cfg
    x = torch.randn(50, 8) * 2
    torch.testing.assert_close(back.encode(x), sae.encode(x))


def test_a_sweep_shows_it_as_one_more_line(tmp_path, monkeypatch):
    from probsae.cli.main import main
    from probsae.data import build_cache
    from probsae.experiments import plots

    gen, x, _ = toy_data(n_train=2048, n_test=1)
    build_cache([x[:1024], x[1024:]], tmp_path / "c", {"model": "synthetic", "hook": "x"}, shard_tokens=1024)
    cfg = tmp_path / "m.toml"
    cfg.write_text(f"""
name = "m"
[data]
cache = "{tmp_path / 'c'}"
[sae]
d_sae = 64
[train]
steps = 20
batch_size = 64
log_every = 10
[[grid]]
architecture = ["topk", "{ARCH}"]
k = [4, 8]
""")
    drawn = {}
    real = plots.pareto
    monkeypatch.setattr(plots, "pareto", lambda series, *a: drawn.update(series) or real(series, *a))
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "s"), "--no-progress"]) == 0
    assert main(["report", str(tmp_path / "s")]) == 0
    assert list(drawn) == ["TopK", "Matryoshka BatchTopK"]  # one more line, in registry order
    assert [r["tag"] for r in drawn["Matryoshka BatchTopK"]] == ["K=4", "K=8"]
    st = style("Matryoshka BatchTopK")                      # its own colour and marker, from its module
    assert (st.color, st.marker) == ("#882255", "*") and st == style(ARCH)
    md = (tmp_path / "s" / "report" / "report.md").read_text()
    for k in (4, 8):
        assert f"| {ARCH}-k={k} | {ARCH} | full |" in md
