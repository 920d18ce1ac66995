"""probsae: Probabilistic TopK sparse autoencoders (and the SAE family they are compared with)
for language-model activations.

Public API::

    sae = probsae.build_sae("prob_topk", d_in=384, d_sae=6144, k=8)
    out = sae(x)                       # out.recon, out.codes, out.loss, out.losses
    history = probsae.train(sae, data, probsae.TrainConfig(steps=1000))
    metrics = probsae.evaluate(sae, data)
    sae.save(path); probsae.load_sae(path)
    run = probsae.load_run("runs/x"); run.encode_text("some text").top_latents(5)

The names that need torch are imported on first use (PEP 562), so that ``import probsae`` and
``probsae --help`` stay fast; ``import probsae.X`` of a submodule is unchanged.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, InputError, ProbSAEError, SAEFileError
from .version import __version__

#: Public name → the module that defines it (imported when the name is first used).
_LAZY = {
    "evaluate": ".evaluation.metrics",
    "Run": ".runs.load", "load_run": ".runs.load",
    "ARCHITECTURES": ".saes", "SAE": ".saes", "SAEMetadata": ".saes", "SAEOutput": ".saes",
    "build_sae": ".saes", "hyperparameters": ".saes", "load_sae": ".saes",
    "TrainConfig": ".training", "TrainHistory": ".training", "train": ".training",
}

if TYPE_CHECKING:  # what type checkers and IDEs see
    from .evaluation.metrics import evaluate
    from .runs.load import Run, load_run
    from .saes import ARCHITECTURES, SAE, SAEMetadata, SAEOutput, build_sae, hyperparameters, load_sae
    from .training import TrainConfig, TrainHistory, train

__all__ = [
    "ARCHITECTURES", "SAE", "SAEMetadata", "SAEOutput", "build_sae", "load_sae", "hyperparameters", "load_run", "Run",
    "TrainConfig", "TrainHistory", "train", "evaluate",
    "ProbSAEError", "ConfigError", "InputError", "SAEFileError", "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
