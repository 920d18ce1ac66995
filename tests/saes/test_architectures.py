"""Every registered architecture declares what the rest of the package needs (formats, reports,
sweeps, the CLI, docs); a missing piece fails here with the architecture's name."""

import ast
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
    assert "toy_hparams" in problems
    assert "forward_normalized" not in problems
    assert "half_done" not in probsae.saes.architectures()


#: The packages that must work through the architecture interface alone (docs/ARCHITECTURE.md).
INTERFACE_ONLY = ("training", "interp", "evaluation")


def architecture_mentions(path: Path, names: tuple[str, ...]) -> list[str]:
    """Where the code of ``path`` names a registered architecture (an identifier, or a string,
    docstrings included, holding the name as a word) or probes an SAE (``hasattr(sae``,
    ``getattr(sae.cfg``). Attribute names (``t.topk(...)``, ``x.relu()``: tensor methods) and
    comments do not count."""
    text = path.read_text()
    found = [f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group()}"
             for m in re.finditer(r"hasattr\(sae\b|getattr\(sae\.cfg", text)]
    tree = ast.parse(text)
    words = re.compile(rf"\b({'|'.join(map(re.escape, names))})\b")
    for node in ast.walk(tree):
        idents = []
        if isinstance(node, ast.Name):
            idents = [node.id]
        elif isinstance(node, ast.arg):
            idents = [node.arg]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            idents = [node.name]
        elif isinstance(node, ast.alias):
            idents = [node.asname or node.name.rpartition(".")[2]]
        elif isinstance(node, ast.keyword) and node.arg:
            idents = [node.arg]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            idents = words.findall(node.value)
        found += [f"{path.name}:{node.lineno}: {i}" for i in idents if i in names]
    return found


def test_nothing_outside_saes_names_or_probes_an_architecture():
    src = DOCS.parent / "src" / "probsae"
    names = probsae.ARCHITECTURES
    found = [m for pkg in INTERFACE_ONLY for p in sorted((src / pkg).rglob("*.py")) for m in architecture_mentions(p, names)]
    assert not found, "training/, interp/ and evaluation/ must use the declared interface (saes/base.py), not names:\n" + "\n".join(found)


def test_the_mention_check_finds_names_and_probes(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('"""A docstring naming topk counts too."""\nGRAPHABLE = ("topk", "prob_topk")\n'
                   'def f(sae, relu):\n    return hasattr(sae, "beta") or getattr(sae.cfg, "aux_k", 0) or x.topk(2)\n')
    found = "\n".join(architecture_mentions(bad, ("topk", "prob_topk", "relu")))
    assert "2: topk" in found and "2: prob_topk" in found and "3: relu" in found
    assert "hasattr(sae" in found and "getattr(sae.cfg" in found
    assert "1: topk" in found and found.count("topk") == 3  # the docstring counts; the tensor method does not
