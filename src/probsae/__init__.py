"""probsae: Probabilistic TopK sparse autoencoders (and the SAE family they are compared with)
for language-model activations.

Public API::

    sae = probsae.build_sae("prob_topk", d_in=384, d_sae=6144, k=8)
    out = sae(x)                       # out.recon, out.codes, out.loss, out.losses
    history = probsae.train(sae, data, probsae.TrainConfig(steps=1000))
    metrics = probsae.evaluate(sae, data)
    sae.save(path); probsae.load_sae(path)
    run = probsae.load_run("runs/x"); run.encode_text("some text").top_latents(5)
"""

from .errors import ConfigError, InputError, ProbSAEError, SAEFileError
from .evaluation.metrics import evaluate
from .runs.load import Run, load_run
from .saes import ARCHITECTURES, SAE, SAEMetadata, SAEOutput, build_sae, hyperparameters, load_sae
from .training import TrainConfig, TrainHistory, train
from .version import __version__

__all__ = [
    "ARCHITECTURES", "SAE", "SAEMetadata", "SAEOutput", "build_sae", "load_sae", "hyperparameters", "load_run", "Run",
    "TrainConfig", "TrainHistory", "train", "evaluate",
    "ProbSAEError", "ConfigError", "InputError", "SAEFileError", "__version__",
]
