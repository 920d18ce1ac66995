"""Fast paths used by the SAEs. Each has a plain reference next to it and a test that the two agree."""

from .sparse import sparse_decode, sparse_decode_reference
from .noise import logistic_noise

__all__ = ["sparse_decode", "sparse_decode_reference", "logistic_noise"]
