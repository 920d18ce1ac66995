"""Every registered architecture declares what the rest of the package needs (formats, reports,
sweeps, the CLI, docs); a missing piece fails here with the architecture's name."""

import re
from pathlib import Path

import pytest

import probsae
from probsae.saes import missing_declarations
from probsae.saes import registry
from probsae.saes.base import SAE
from probsae.saes.config import SAEConfig
from probsae.saes.declarations import Export, NotExpressible

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_architecture_module_declares_everything(arch):
    assert missing_declarations(arch) == [], f"architecture {arch!r} is incomplete"


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_export_declarations_are_exports_or_reasons(arch):
    kw = {"k": 4} if "k" in probsae.hyperparameters(arch) else {}
    sae = probsae.build_sae(arch, d_in=8, d_sae=32, **kw)
    state = {k: v.detach().double() for k, v in sae.state_dict().items()}
    for fmt in ("saelens", "sparsify"):
        declared = getattr(sae, f"to_{fmt}")(state)
        assert isinstance(declared, (Export, NotExpressible)), f"{arch}.to_{fmt}"
        if isinstance(declared, NotExpressible):
            assert declared.reason, f"{arch}.to_{fmt}: say why"
        else:
            assert declared.target and not {"W_enc", "W_dec", "b_dec"} & set(declared.tensors), f"{arch}.to_{fmt}"


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_docs_describe_every_architecture(arch):
    saelens, sparsify = (DOCS / "FORMATS.md").read_text().split("\n## sparsify")
    row = re.compile(rf"^\| {arch} \|", re.M)
    assert row.search(saelens), f"docs/FORMATS.md: the SAELens table has no row for {arch}"
    assert row.search(sparsify), f"docs/FORMATS.md: the sparsify table has no row for {arch}"


def test_a_missing_declaration_is_reported_by_name():
    class HalfDone(SAE):
        architecture = "half_done"
        config_class = SAEConfig

        def forward_normalized(self, x_n, target_n, dead_mask=None):
            raise NotImplementedError

    registry.register(HalfDone)
    try:
        problems = "\n".join(missing_declarations("half_done"))
    finally:
        del registry._REGISTRY["half_done"]
    for piece in ("presentation", "encode_normalized", "to_saelens", "to_sparsify", "sparsity"):
        assert piece in problems and "half_done" in problems, piece
    assert "forward_normalized" not in problems
    assert "half_done" not in probsae.saes.architectures()
