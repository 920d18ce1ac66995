"""The import graph of the package stays one-way: no import cycles between modules, and no
module imports from a higher layer than its own. Every import counts, including those inside
functions and under TYPE_CHECKING (a lazy import is still a dependency).

``LAYERS`` is the one definition of the order (docs/ARCHITECTURE.md describes it). A package may
import from its own layer or a lower one; packages that share a layer may import each other as
long as no cycle forms.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "probsae"

#: Lowest first; names are top-level modules or subpackages of ``probsae``. ``probsae`` itself is
#: the public facade (``probsae/__init__.py``): nothing inside the package imports it.
LAYERS: list[set[str]] = [
    {"errors", "io", "tensorfile", "version", "fielddocs", "schedules", "synthetic", "devices",  # foundations
     "progress", "extras", "validators", "stats", "reconstruction"},
    {"kernels"},                                    # fast paths, tested against plain references
    {"saes"},                                       # architectures: the SAE interface and registry
    {"training", "data"},                           # the trainer; activations (models, hooks, caches, corpora)
    {"evaluation"},                                 # metrics, downstream CE/KL, synthetic recovery
    {"runs", "interp"},                             # a run as a directory (spec, train, eval, metrics.json,
                                                    # load_run); interpretability (encode, caches, dashboard)
    {"experiments", "formats", "bench"},            # sweeps and reports; other formats; SAEBench-style metrics
    {"cli", "__main__", "probsae"},                 # commands and the public facade
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the probsae modules it imports (anywhere in the file)."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for a in node.names:  # `from . import module` imports the module, `from .x import name` x
                    targets.add(f"{source}.{a.name}" if f"{source}.{a.name}" in files else source)
        graph[mod] = {t for t in targets if t in files and t != mod}
    return graph


def unit(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


GRAPH = import_graph()


def test_every_package_has_a_layer():
    missing = sorted({unit(m) for m in GRAPH} - set(LAYER))
    assert not missing, f"give {missing} a layer in tests/test_layers.py LAYERS (and docs/ARCHITECTURE.md)"


@pytest.mark.parametrize("mod", sorted(GRAPH))
def test_no_import_from_a_higher_layer(mod):
    if unit(mod) not in LAYER:
        pytest.skip("no layer yet (test_every_package_has_a_layer)")
    upward = sorted(t for t in GRAPH[mod] if unit(t) in LAYER and LAYER[unit(t)] > LAYER[unit(mod)])
    assert not upward, f"{mod} (layer {LAYER[unit(mod)]}: {unit(mod)}) imports a higher layer: {upward}"


def test_no_import_cycles():
    cycles, state = [], {}

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = "open"
        for t in sorted(GRAPH[mod]):
            if state.get(t) == "open":
                cycles.append(" → ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[mod] = "done"

    for mod in sorted(GRAPH):
        if mod not in state:
            visit(mod, [mod])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_relative_and_nested_imports():
    assert "probsae.saes.registry" in GRAPH["probsae.saes.topk"]          # from .registry import register
    assert "probsae.kernels" in GRAPH["probsae.saes.topk"]                # from .. import kernels
    assert "probsae.saes.topk" in GRAPH["probsae.saes"]                   # from . import topk, …
    assert "probsae.saes.base" in GRAPH["probsae.saes.registry"]          # inside load_sae()
    assert "probsae.saes.output" in GRAPH["probsae.training.member"]      # under TYPE_CHECKING


DOC = ROOT.parents[1] / "docs" / "ARCHITECTURE.md"


def test_the_layer_table_in_architecture_md_is_layers():
    import re

    layers_section = DOC.read_text().split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d) \| (.+) \|$", layers_section, re.M)
    documented = [set(re.findall(r"`?([\w_]+)`?(?:,|$| the)", units.split(" (")[0].replace(" facade", ""))) for _, units in rows]
    assert [int(i) for i, _ in rows] == list(range(len(LAYERS)))
    assert documented == LAYERS, "docs/ARCHITECTURE.md's layer table differs from LAYERS"


def test_the_package_list_in_architecture_md_names_every_module_and_package():
    text = DOC.read_text()
    listed = {u for u in LAYER if u not in ("probsae", "__main__")}
    missing = sorted(u for u in listed if f"  {u}.py " not in text and f"  {u}/ " not in text)
    assert not missing, f"docs/ARCHITECTURE.md's package list lacks {missing}"
