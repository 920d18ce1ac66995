"""The data pipeline: model -> hook point -> activations -> on-disk cache.

* :mod:`~probsae.data.models` — :func:`load_model`, :class:`ModelHandle`.
* :mod:`~probsae.data.hooks` — :class:`HookPoint`, :func:`capture` / :func:`capture_many` (early
  stop after the deepest hook point), :func:`splice`.
* :mod:`~probsae.data.corpus` — :func:`load_corpus`, :func:`split_documents`, :func:`token_windows`.
* :mod:`~probsae.data.extract` — :class:`ActivationStream`, :func:`iter_activations`.
* :mod:`~probsae.data.stream` — :class:`ModelStream`: shuffled training batches straight from
  the model (the GPU path of ``probsae.train``).
* :mod:`~probsae.data.cache` — :func:`build_cache`, :class:`ActivationCache`.
"""

from probsae.data.cache import ActivationCache, build_cache
from probsae.data.corpus import (Corpus, WindowBatch, load_corpus, split_documents, token_windows,
                                 window_ids)
from probsae.data.errors import CacheError, CorpusError, DataError, HookPointError, ModelLoadError
from probsae.data.extract import ActivationBatch, ActivationStream, activations_of, iter_activations
from probsae.data.hooks import HookPoint, capture, capture_many, splice
from probsae.data.models import SHORT_NAMES, ModelHandle, find_blocks, load_model
from probsae.data.stream import ModelStream

__all__ = [
    "ActivationBatch", "ActivationCache", "ActivationStream", "CacheError", "Corpus", "CorpusError",
    "DataError", "HookPoint", "HookPointError", "ModelHandle", "ModelLoadError", "ModelStream", "SHORT_NAMES",
    "WindowBatch", "activations_of", "build_cache", "capture", "capture_many", "find_blocks", "iter_activations",
    "load_corpus", "load_model", "splice", "split_documents", "token_windows", "window_ids",
]
