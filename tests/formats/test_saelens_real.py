"""Against the real ``sae-lens`` package (skipped when it is not installed; the main venv does not
have it). Run it with the separate ecosystem venv, see docs/FORMATS.md:

    PYTHONPATH=src .venv-ecosys/bin/python -m pytest tests/formats/test_saelens_real.py -q
"""

from __future__ import annotations

import warnings

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens")

from test_formats import D_IN, D_SAE, EXACT_SAELENS, K, codes, data, make_sae, recon  # noqa: E402

import probsae  # noqa: E402
from probsae.formats import export_saelens, import_saelens  # noqa: E402
from probsae.formats._common import working_state  # noqa: E402
from probsae.saes.declarations import NotExpressible  # noqa: E402

TOL = dict(atol=1e-4, rtol=1e-4)  # layer_norm: SAELens adds eps=1e-5 to the std


def load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sae_lens.SAE.load_from_disk(str(path), device="cpu")


@pytest.mark.parametrize("normalize", ["unit", "scalar", "none"])
@pytest.mark.parametrize("arch", EXACT_SAELENS)
def test_sae_lens_loads_our_export_and_reconstructs_identically(arch, normalize, tmp_path):
    ours = make_sae(arch, normalize)
    export_saelens(ours, tmp_path, hook_name="resid_post.3", model_name="gpt2")
    theirs = load(tmp_path)
    assert theirs.cfg.metadata.hook_name == "blocks.3.hook_resid_post"
    x = data()
    with torch.no_grad():
        f = theirs.encode(x)
        out = theirs.decode(f)
    torch.testing.assert_close(f, codes(ours, x), **TOL)
    torch.testing.assert_close(out, recon(ours, x), **TOL)


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_every_exactly_exportable_architecture_loads_in_sae_lens(arch, tmp_path):
    """Registry-driven: whatever an architecture module declares an exact SAELens export of."""
    ours = make_sae(arch, "unit")
    declared = ours.to_saelens(working_state(ours))
    if isinstance(declared, NotExpressible) or declared.changes:
        pytest.skip(f"{arch}: no exact SAELens form")
    export_saelens(ours, tmp_path)
    theirs = load(tmp_path)
    x = data()
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), codes(ours, x), **TOL)
        torch.testing.assert_close(theirs(x), recon(ours, x), **TOL)


def test_lossy_prob_topk_export_behaves_as_documented_in_sae_lens(tmp_path):
    """SAELens computes the TopK of the export (equal to probsae's import of it), which is probsae's
    prob_topk inference on the tokens whose selections agree (most of them, at the end of the anneal)."""
    from test_formats import annealed_prob_topk

    ours = annealed_prob_topk("unit")
    export_saelens(ours, tmp_path, allow_lossy=True)
    theirs = load(tmp_path)
    assert type(theirs).__name__ == "TopKSAE"
    back = import_saelens(tmp_path)  # probsae topk: what the file is
    x = data(512)
    with torch.no_grad():
        f_theirs, f_ours = theirs.encode(x), codes(ours, x)
        torch.testing.assert_close(theirs(x), recon(back, x), **TOL)
        torch.testing.assert_close(f_theirs, codes(back, x), **TOL)
    agree = ((f_theirs != 0) == (f_ours != 0)).all(-1)
    assert agree.float().mean() >= 0.95
    torch.testing.assert_close(f_theirs[agree], f_ours[agree], **TOL)  # same latents: same codes


def _random_saelens(arch: str, **cfg_kw):
    from sae_lens.registry import get_sae_class

    cls, cfg_cls = get_sae_class(arch)
    sae = cls(cfg_cls(d_in=D_IN, d_sae=D_SAE, **cfg_kw))
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name == "threshold":
                p.copy_(torch.rand(p.shape, generator=g) * 0.2)
            else:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    return sae


@pytest.mark.parametrize("arch,kw", [
    ("standard", {}), ("topk", {"k": K}), ("topk", {"k": K, "rescale_acts_by_decoder_norm": True}),
    ("abstopk", {"k": K}), ("gated", {}), ("jumprelu", {}),
    ("topk", {"k": K, "apply_b_dec_to_input": False}), ("gated", {"apply_b_dec_to_input": False}),
    ("standard", {"normalize_activations": "layer_norm"}), ("jumprelu", {"normalize_activations": "layer_norm"}),
])
def test_import_of_sae_lens_saved_saes(arch, kw, tmp_path):
    theirs = _random_saelens(arch, **kw)
    theirs.save_model(tmp_path)
    ours = import_saelens(tmp_path)
    x = data()
    with torch.no_grad():
        torch.testing.assert_close(recon(ours, x), theirs(x), **TOL)
        torch.testing.assert_close(codes(ours, x), theirs.encode(x), **TOL)
