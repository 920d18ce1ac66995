"""Error classes of the data pipeline.

Every error is a :class:`DataError`, itself a :class:`probsae.ProbSAEError` (a ``ValueError``), so callers can catch the whole
family at once; messages name the offending model, hook point, file or field.
"""

from __future__ import annotations

from ..errors import ProbSAEError


class DataError(ProbSAEError):
    """Base class for every error raised by :mod:`probsae.data`."""


class ModelLoadError(DataError):
    """A model or tokenizer could not be loaded (not local, not cached, hub unreachable...)."""


class HookPointError(DataError):
    """A hook point string is malformed or does not exist in the model."""


class CorpusError(DataError):
    """A corpus spec cannot be read, is empty, or needs a missing optional dependency."""


class CacheError(DataError):
    """An activation cache is missing, corrupt, incomplete or does not match what was asked."""


class UnembeddingError(DataError):
    """A causal LM's unembedding or final norm cannot be found or is not an elementwise norm."""
