"""SAELens / sparsify export and import without the packages: the written files are checked against
the formats' documented keys and shapes, export → import must give identical reconstructions, lossy
exports must be refused without the flag and documented with it, and the CLI round-trips a run."""

from __future__ import annotations

import json

import pytest
import torch

import probsae
from probsae.cli.main import main as cli
from probsae.formats import (
    NOTES_FILE, LossyExportError, export_saelens, export_sparsify, import_saelens, import_sparsify,
    saelens_hook_name, sparsify_hookpoint,
)

D_IN, D_SAE, K = 12, 48, 4
EXACT_SAELENS = ["relu", "topk", "abstopk", "vsae_topk", "gated", "jumprelu", "batchtopk"]
SAELENS_ARCH = {"relu": "standard", "topk": "topk", "abstopk": "abstopk", "vsae_topk": "topk", "gated": "gated",
                "jumprelu": "jumprelu", "batchtopk": "jumprelu", "prob_topk": "topk"}
SAELENS_KEYS = {"standard": {"W_enc", "b_enc", "W_dec", "b_dec"}, "topk": {"W_enc", "b_enc", "W_dec", "b_dec"},
                "abstopk": {"W_enc", "b_enc", "W_dec", "b_dec"},
                "gated": {"W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"},
                "jumprelu": {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}}


def make_sae(arch: str, normalize: str = "unit", seed: int = 0):
    """An SAE with non-trivial weights everywhere (biases, thresholds, scale) without training."""
    hp = {"k": K} if "k" in probsae.hyperparameters(arch) else {}  # the TopK family
    sae = probsae.build_sae(arch, d_in=D_IN, d_sae=D_SAE, normalize=normalize, seed=seed, **hp)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name == "log_threshold":
                p.copy_(torch.log(torch.rand(p.shape, generator=g) * 0.2 + 0.01))
            else:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in sae.named_buffers():
            if name == "threshold":  # a trained global threshold (the BatchTopK family)
                b.fill_(0.05)
        if normalize == "scalar":
            sae.normalizer.scale.fill_(0.37)
            sae.normalizer.fitted.fill_(True)
    return sae.eval()


def data(n: int = 64, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D_IN, generator=g) * 4 + 2


def recon(sae, x):
    with torch.no_grad():
        return sae(x).recon


def codes(sae, x):
    with torch.no_grad():
        return sae.encode(x)


# ---- SAELens -------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", EXACT_SAELENS + ["prob_topk"])
def test_saelens_files_have_the_documented_keys_and_shapes(arch, tmp_path):
    from safetensors.torch import load_file

    sae = make_sae(arch)
    rep = export_saelens(sae, tmp_path, hook_name="resid_post.6", model_name="gpt2", allow_lossy=True)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    target = SAELENS_ARCH[arch]
    assert cfg["architecture"] == rep.target_architecture == target
    for key in ("d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input", "normalize_activations",
                "reshape_activations", "metadata"):
        assert key in cfg, key
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"], cfg["apply_b_dec_to_input"]) == (D_IN, D_SAE, "float32", True)
    assert cfg["normalize_activations"] == "layer_norm" and cfg["reshape_activations"] == "none"
    meta = cfg["metadata"]
    assert meta["hook_name"] == cfg["hook_name"] == "blocks.6.hook_resid_post" and meta["model_name"] == "gpt2"
    assert meta["sae_lens_version"].startswith("6.")  # v6 layout (older layouts are re-mapped by SAELens)
    if target in ("topk", "abstopk"):
        assert cfg["k"] == K and cfg["rescale_acts_by_decoder_norm"] is False
    w = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert set(w) == SAELENS_KEYS[target]
    assert w["W_enc"].shape == (D_IN, D_SAE) and w["W_dec"].shape == (D_SAE, D_IN) and w["b_dec"].shape == (D_IN,)
    assert all(v.shape == (D_SAE,) for k, v in w.items() if k not in ("W_enc", "W_dec", "b_dec"))
    assert all(v.dtype == torch.float32 for v in w.values())
    assert (tmp_path / NOTES_FILE).is_file()


@pytest.mark.parametrize("normalize", ["unit", "scalar", "none"])
@pytest.mark.parametrize("arch", EXACT_SAELENS)
def test_saelens_round_trip_gives_identical_reconstructions(arch, normalize, tmp_path):
    sae = make_sae(arch, normalize)
    rep = export_saelens(sae, tmp_path)
    assert rep.exact and not rep.changes
    back = import_saelens(tmp_path)
    want = "topk" if arch == "vsae_topk" else arch
    assert back.architecture == want and back.cfg.normalize == normalize
    x = data()
    torch.testing.assert_close(codes(back, x), codes(sae, x), atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(recon(back, x), recon(sae, x), atol=2e-5, rtol=1e-5)
    if arch != "vsae_topk":  # hyperparameters come back through the provenance block
        assert back.cfg == sae.cfg


def test_saelens_unit_normalisation_is_layer_norm_with_the_constant_folded(tmp_path):
    """Reimplements SAELens's documented layer_norm + topk inference on the exported tensors."""
    from safetensors.torch import load_file

    sae = make_sae("topk", "unit")
    export_saelens(sae, tmp_path)
    w = {k: v.double() for k, v in load_file(str(tmp_path / "sae_weights.safetensors")).items()}
    x = data().double()
    mu = x.mean(-1, keepdim=True)
    std = (x - mu).std(-1, keepdim=True)  # unbiased, as SAELens
    x_ln = (x - mu) / (std + 1e-5)
    pre = (x_ln - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    v, i = pre.topk(K, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, i, v.relu())
    out = (f @ w["W_dec"] + w["b_dec"]) * std + mu
    torch.testing.assert_close(f.float(), codes(sae, x.float()), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.float(), recon(sae, x.float()), atol=1e-4, rtol=1e-4)


def annealed_prob_topk(normalize: str = "unit"):
    """A prob_topk SAE at the end of its anneal (β = β_T = 1e-4), as a trained one is exported."""
    sae = make_sae("prob_topk", normalize)
    sae.beta.fill_(1e-4)
    return sae


def test_prob_topk_export_is_refused_without_the_flag_and_documented_with_it(tmp_path):
    sae = annealed_prob_topk()
    with pytest.raises(LossyExportError, match="allow_lossy"):
        export_saelens(sae, tmp_path / "a")
    assert not (tmp_path / "a" / "cfg.json").exists()
    rep = export_saelens(sae, tmp_path / "b", allow_lossy=True)
    assert not rep.exact and rep.target_architecture == "topk"  # issue 24: TopK, as the sparsify export
    notes = (tmp_path / "b" / NOTES_FILE).read_text()
    assert "ln_weight" in notes and "K largest a" in notes and "ReLU(a)" in notes and "NO (lossy" in notes
    assert "not measured at export" in notes and "prob_topk_export_agreement.py" in notes
    back = import_saelens(tmp_path / "b")
    assert back.architecture == "topk"  # what the file really is, not a disguised prob_topk
    # what SAELens computes: the K largest a, ReLU'd, a = W_enc(x_n − b_dec)
    x = data(512)
    x_n, _ = sae.normalizer(x)
    a = (x_n - sae.b_dec) @ sae.W_enc
    idx = a.topk(K, dim=-1).indices
    want = torch.zeros_like(a).scatter(-1, idx, a.gather(-1, idx).relu())
    torch.testing.assert_close(codes(back, x), want.detach(), atol=2e-5, rtol=1e-5)
    # ... which is prob_topk's own inference on the tokens whose selections agree: most of them here
    from probsae.formats.agreement import inference_agreement

    stats = inference_agreement(sae, back, x)
    assert stats["same_codes"] == stats["same_set"] >= 0.95 and stats["negative_codes"] == 0.0
    assert abs(stats["fvu_exported"] - stats["fvu_source"]) < 0.01


def test_the_agreement_measure_counts_tokens_whose_latents_differ():
    from probsae.formats.agreement import inference_agreement

    sae = make_sae("topk", "none")
    other = make_sae("topk", "none")
    other.load_state_dict(sae.state_dict())
    x = data(256)
    same = inference_agreement(sae, other, x)
    assert same["same_set"] == same["same_codes"] == 1.0 and same["fvu_source"] == same["fvu_exported"]
    with torch.no_grad():
        other.W_enc[:, 0] += 100.0  # latent 0 now wins wherever the input's sum is positive
    x_pos = data(256).abs()
    moved = inference_agreement(sae, other, x_pos)
    assert moved["same_set"] < 0.5 and moved["fvu_exported"] != moved["fvu_source"]


def test_saelens_import_folds_b_dec_input_convention(tmp_path):
    sae = make_sae("jumprelu", "none")
    export_saelens(sae, tmp_path)
    from safetensors.torch import load_file, save_file

    w = load_file(str(tmp_path / "sae_weights.safetensors"))
    w["b_enc"] = w["b_enc"] - w["b_dec"] @ w["W_enc"]  # the same SAE without b_dec applied to the input
    save_file(w, str(tmp_path / "sae_weights.safetensors"))
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg["apply_b_dec_to_input"] = False
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    back = import_saelens(tmp_path)
    x = data()
    torch.testing.assert_close(recon(back, x), recon(sae, x), atol=2e-5, rtol=1e-5)


def test_saelens_import_refuses_what_it_cannot_represent(tmp_path):
    export_saelens(make_sae("topk", "none"), tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    for change, msg in [({"architecture": "matryoshka_batchtopk"}, "no probsae equivalent"),
                        ({"reshape_activations": "hook_z"}, "hook_z"),
                        ({"normalize_activations": "expected_average_only_in"}, "fold"),
                        ({"normalize_activations": "constant_norm_rescale"}, "no probsae equivalent")]:
        (tmp_path / "cfg.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(probsae.ProbSAEError, match=msg):
            import_saelens(tmp_path)


# ---- sparsify ------------------------------------------------------------------------------------
def sparsify_inference(w: dict, cfg: dict, x: torch.Tensor) -> torch.Tensor:
    """sparsify's documented SparseCoder inference: TopK(ReLU(encoder(x − b_dec))) then W_dec + b_dec."""
    pre = torch.relu((x - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"])
    v, i = pre.topk(cfg["k"], dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, i, v) @ w["W_dec"] + w["b_dec"]


@pytest.mark.parametrize("normalize", ["scalar", "none"])
@pytest.mark.parametrize("arch", ["topk", "vsae_topk"])
def test_sparsify_layout_keys_inference_and_round_trip(arch, normalize, tmp_path):
    from safetensors.torch import load_file

    sae = make_sae(arch, normalize)
    rep = export_sparsify(sae, tmp_path, hookpoint="layers.6")
    assert rep.exact and rep.path == tmp_path / "layers.6"
    cfg = json.loads((tmp_path / "layers.6" / "cfg.json").read_text())
    for key, value in {"activation": "topk", "k": K, "num_latents": D_SAE, "d_in": D_IN, "expansion_factor": 4,
                       "multi_topk": False, "skip_connection": False, "transcode": False}.items():
        assert cfg[key] == value, key
    w = load_file(str(tmp_path / "layers.6" / "sae.safetensors"))
    assert set(w) == {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}
    assert w["encoder.weight"].shape == (D_SAE, D_IN) and w["encoder.bias"].shape == (D_SAE,)
    assert w["W_dec"].shape == (D_SAE, D_IN) and w["b_dec"].shape == (D_IN,)
    x = data()
    torch.testing.assert_close(sparsify_inference(w, cfg, x), recon(sae, x), atol=2e-5, rtol=1e-5)
    back = import_sparsify(tmp_path)  # the run folder holds one hook point: found automatically
    assert back.architecture == "topk" and back.cfg.normalize == normalize
    torch.testing.assert_close(recon(back, x), recon(sae, x), atol=2e-5, rtol=1e-5)


def test_sparsify_refuses_unit_normalisation_and_other_architectures(tmp_path):
    with pytest.raises(LossyExportError, match="normalisation") as e:
        export_sparsify(make_sae("topk", "unit"), tmp_path / "u")
    assert "train with --normalize none" in str(e.value)          # the way to an exact export
    rep = export_sparsify(make_sae("topk", "unit"), tmp_path / "u", allow_lossy=True)
    assert "x_n = (x − mean(x))/‖x − mean(x)‖" in (rep.path / NOTES_FILE).read_text()
    for arch in ("relu", "gated", "jumprelu"):
        with pytest.raises(probsae.ConfigError, match="sparsify has no"):
            export_sparsify(make_sae(arch, "none"), tmp_path / arch, allow_lossy=True)
    for arch in ("prob_topk", "abstopk", "batchtopk"):
        with pytest.raises(LossyExportError):
            export_sparsify(make_sae(arch, "none"), tmp_path / arch)


def test_sparsify_import_needs_a_hookpoint_when_there_are_several(tmp_path):
    export_sparsify(make_sae("topk", "none"), tmp_path, hookpoint="layers.1")
    export_sparsify(make_sae("topk", "none", seed=5), tmp_path, hookpoint="layers.2")
    with pytest.raises(probsae.SAEFileError, match="layers.1"):
        import_sparsify(tmp_path)
    assert import_sparsify(tmp_path, hookpoint="layers.2").W_enc.shape == (D_IN, D_SAE)


def test_hook_name_translation():
    assert saelens_hook_name("resid_post.8") == "blocks.8.hook_resid_post"
    assert saelens_hook_name("resid_pre.0") == "blocks.0.hook_resid_pre"
    assert saelens_hook_name("module:model.layers.3.mlp") == "model.layers.3.mlp"
    assert sparsify_hookpoint("resid_post.8") == "layers.8" and sparsify_hookpoint("resid_post.8", "gpt2") == "h.8"
    assert sparsify_hookpoint("resid_pre.8") == "layers.7" and sparsify_hookpoint("resid_pre.0") is None
    assert sparsify_hookpoint("blocks.8.hook_resid_pre", "gpt2") == "h.7"  # a TransformerLens name of resid_pre.8


def test_sparsify_hookpoints_follow_the_model_family(tmp_path):
    """Issue 24 (22): BERT's blocks are `encoder.layer.L` in its base model, not `layers.L`; the
    family comes from the model's config.json (else from its name)."""
    bert = tmp_path / "my-encoder"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert sparsify_hookpoint("resid_post.3", str(bert)) == "encoder.layer.3"
    assert sparsify_hookpoint("resid_pre.3", str(bert)) == "encoder.layer.2"
    assert sparsify_hookpoint("mlp_out.3", str(bert)) == "encoder.layer.3.output.dense"
    assert sparsify_hookpoint("resid_mid.3", str(bert)) == "encoder.layer.3.attention"
    assert sparsify_hookpoint("resid_post.3", "sentence-transformers/all-MiniLM-L6-v2") == "encoder.layer.3"
    gpt = tmp_path / "my-decoder"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert sparsify_hookpoint("resid_post.3", str(gpt)) == "h.3" and sparsify_hookpoint("mlp_out.3", str(gpt)) == "h.3.mlp"
    assert sparsify_hookpoint("resid_post.3", "Qwen/Qwen3-0.6B") == "layers.3"


# ---- CLI -------------------------------------------------------------------------------------------
def test_cli_export_import_round_trip(tmp_path, capsys):
    sae = make_sae("topk", "unit")
    run = tmp_path / "run"
    sae.save(run)
    (run / "log.jsonl").write_text(json.dumps({"event": "start", "train_config": {
        "extra": {"model": "gpt2", "hook": "resid_post.8"}}}) + "\n")
    assert cli(["export", str(run), "--format", "saelens", "--out", str(tmp_path / "sl")]) == 0
    assert json.loads((tmp_path / "sl" / "cfg.json").read_text())["metadata"]["hook_name"] == "blocks.8.hook_resid_post"
    assert cli(["import", str(tmp_path / "sl"), "--format", "saelens", "--out", str(tmp_path / "back")]) == 0
    x = data()
    torch.testing.assert_close(recon(probsae.load_sae(tmp_path / "back"), x), recon(sae, x), atol=2e-5, rtol=1e-5)
    # sparsify cannot express 'unit' normalisation: refused (exit 2, a clear message) unless --allow-lossy
    assert cli(["export", str(run), "--format", "sparsify", "--out", str(tmp_path / "sp")]) == 2
    assert "--allow-lossy" in capsys.readouterr().err
    assert cli(["export", str(run), "--format", "sparsify", "--out", str(tmp_path / "sp"), "--allow-lossy"]) == 0
    assert (tmp_path / "sp" / "h.8" / "cfg.json").is_file()  # gpt2 → h.<layer> hook-point folder
    assert cli(["import", str(tmp_path / "sp"), "--format", "sparsify", "--out", str(tmp_path / "back")]) == 2
    assert "--force" in capsys.readouterr().err
