"""Export and import driven by each architecture's own declarations, for every registered
architecture: an exact export comes back with identical codes and reconstructions (as the same
architecture when it reads its own export), a lossy one is refused without ``allow_lossy`` and
documented with it, and "not expressible" is a ConfigError carrying the module's reason."""

from __future__ import annotations

import pytest
import torch

import probsae
from probsae.formats import NOTES_FILE, LossyExportError, export_saelens, export_sparsify, import_saelens, import_sparsify
from probsae.formats._common import working_state
from probsae.saes.declarations import NotExpressible

from test_formats import data, make_sae  # noqa: E402

FORMATS = {"saelens": (export_saelens, import_saelens), "sparsify": (export_sparsify, import_sparsify)}


def inference(sae, x):
    with torch.no_grad():
        return sae.encode(x), sae(x).recon


@pytest.mark.parametrize("normalize", ["scalar", "none"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_export_follows_the_architectures_declaration(arch, fmt, normalize, tmp_path):
    export, load = FORMATS[fmt]
    sae = make_sae(arch, normalize)
    declared = getattr(sae, f"to_{fmt}")(working_state(sae))
    if isinstance(declared, NotExpressible):
        with pytest.raises(probsae.ConfigError, match="cannot export"):
            export(sae, tmp_path / "x", allow_lossy=True)
        return
    if declared.changes:
        with pytest.raises(LossyExportError):
            export(sae, tmp_path / "refused")
        report = export(sae, tmp_path / "x", allow_lossy=True)
        assert not report.exact and all(c in (report.path / NOTES_FILE).read_text() for c in declared.changes)
        return
    report = export(sae, tmp_path / "x")
    assert report.exact and report.target_architecture == declared.target
    back = load(tmp_path / "x")
    x = data()
    for ours, theirs in zip(inference(back, x), inference(sae, x)):
        torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-5)
    if declared.target in type(sae).reads.get(fmt, ()):
        assert back.architecture == arch and back.cfg == sae.cfg, f"{arch} reads its own {fmt} export"
