"""A TopK transcoder in sparsify's format: the exported files, run through sparsify's transcoder
forward re-implemented here from its equations (sparsify is not installed in the test venv),
reproduce probsae's output; the import reads them back as the same transcoder."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import probsae
from probsae.formats import LossyExportError, export_sparsify, import_sparsify, sparsify_hookpoint

D, D_SAE, K = 8, 32, 4


def sparsify_transcoder_forward(path, x: torch.Tensor) -> torch.Tensor:
    """sparsify's SparseCoder with ``transcode=true`` (sparsify/sparse_coder.py):
    z = TopK_k(ReLU(x Eᵀ + e)) (no b_dec subtracted from x), ŷ = z W_dec + b_dec (+ x W_skipᵀ)."""
    cfg = json.loads((path / "cfg.json").read_text())
    w = {n: t.double() for n, t in load_file(str(path / "sae.safetensors")).items()}
    assert cfg["transcode"] is True and cfg["activation"] == "topk" and cfg["d_in"] == x.shape[-1]
    pre = torch.relu(x @ w["encoder.weight"].T + w["encoder.bias"])
    vals, idx = pre.topk(cfg["k"], dim=-1)
    y = (vals.unsqueeze(-1) * w["W_dec"][idx]).sum(-2) + w["b_dec"]
    if cfg["skip_connection"]:
        y = y + x @ w["W_skip"].T
    return y


def trained_like(normalize: str, skip: bool) -> probsae.SAE:
    """A transcoder with every parameter random and non-trivial (b_dec, W_skip, target_scale ≠ 1,
    a fitted scalar normaliser), as after training."""
    torch.manual_seed(0)
    sae = probsae.build_sae("transcoder", d_in=D, d_sae=D_SAE, k=K, normalize=normalize, skip=skip)
    x, y = torch.randn(256, D) * 3 + 1, torch.randn(256, D) * 0.5 - 2
    sae.init_from_data(torch.cat([x, y], -1))
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    assert normalize == "none" or abs(float(sae.target_scale) - 1) > 0.1
    return sae.double().eval()


@pytest.mark.parametrize("normalize", ["none", "scalar"])
@pytest.mark.parametrize("skip", [False, True])
def test_sparsify_forward_of_the_export_reproduces_probsae(normalize, skip, tmp_path):
    sae = trained_like(normalize, skip)
    report = export_sparsify(sae, tmp_path / "x")
    assert report.exact and not report.changes
    cfg = json.loads((tmp_path / "x" / "cfg.json").read_text())
    assert (cfg["transcode"], cfg["skip_connection"], cfg["k"], cfg["num_latents"]) == (True, skip, K, D_SAE)
    x = torch.randn(64, D, dtype=torch.float64) * 3 + 1
    with torch.no_grad():
        ours = sae(torch.cat([x, torch.zeros_like(x)], -1)).recon  # the target half does not change ŷ
    torch.testing.assert_close(sparsify_transcoder_forward(tmp_path / "x", x), ours, rtol=0, atol=1e-5)

    back = import_sparsify(tmp_path / "x")
    assert back.architecture == "transcoder" and back.cfg.skip == skip and back.cfg.k == K
    assert back.cfg.normalize == normalize
    with torch.no_grad():
        again = back.double()(torch.cat([x, torch.zeros_like(x)], -1)).recon
    torch.testing.assert_close(again, ours, rtol=0, atol=1e-5)


def test_unit_normalisation_is_a_documented_lossy_export(tmp_path):
    sae = trained_like("unit", skip=True)
    with pytest.raises(LossyExportError):
        export_sparsify(sae, tmp_path / "refused")
    report = export_sparsify(sae, tmp_path / "x", allow_lossy=True)
    assert not report.exact and "input x's mean and norm" in " ".join(report.changes)
    x = torch.randn(16, D, dtype=torch.float64) * 3 + 1
    mu = x.mean(-1, keepdim=True)
    norm = (x - mu).norm(dim=-1, keepdim=True)
    with torch.no_grad():  # the documented recipe: feed x_n, map the output back with x's statistics
        ours = sae(torch.cat([x, x], -1)).recon
    theirs = sparsify_transcoder_forward(tmp_path / "x", (x - mu) / norm) * norm + mu
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)


def test_an_autoencoder_with_a_skip_is_still_refused_and_hookpoints(tmp_path):
    sae = trained_like("none", skip=True)
    export_sparsify(sae, tmp_path / "x")
    cfg_path = tmp_path / "x" / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "transcode": False}))
    with pytest.raises(probsae.ConfigError, match="skip connections"):
        import_sparsify(tmp_path / "x")
    assert sparsify_hookpoint("mlp_in.3", "gpt2", "mlp_out.3") == "h.3.mlp"
    assert sparsify_hookpoint("mlp_in.3", "Qwen/Qwen3-0.6B", "mlp_out.3") == "layers.3.mlp"
    assert sparsify_hookpoint("resid_mid.3", "gpt2", "mlp_out.3") is None
    assert sparsify_hookpoint("mlp_out.3", "gpt2") == "h.3.mlp"
    assert sparsify_hookpoint("resid_mid.3", "gpt2") is None
