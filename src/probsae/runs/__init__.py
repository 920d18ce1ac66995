"""A training run as a directory: spec → activations → trained SAE → metrics → plot.

What ``probsae train`` and ``probsae eval`` do, as library functions."""

from .eval_run import eval_run
from .load import EncodedText, LatentExample, Run, load_run
from .spec import RunSpec
from .train_run import train_run

__all__ = ["RunSpec", "train_run", "eval_run", "Run", "load_run", "EncodedText", "LatentExample"]
