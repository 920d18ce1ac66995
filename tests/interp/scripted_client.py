"""A chat client that answers from a script (a function of the prompt), for scorer and explainer
unit tests; the real HTTP path is tested with fake_llm.py and test_local_llm.py."""

from __future__ import annotations

import numpy as np

from probsae.interp.llm_client import ChatResult
from probsae.interp.sampling import BucketSample, Example


class ScriptedClient:
    def __init__(self, answer):
        self.answer = answer
        self.requests: list[tuple[list[dict], dict]] = []

    def complete_many(self, reqs, desc: str = "") -> list[ChatResult]:
        self.requests += reqs
        return [ChatResult(self.answer(msgs)) for msgs, _ in reqs]


class WordsCache:
    """The one method of a LatentCache that TextFormatter reads: window → token strings."""

    def __init__(self, texts: list[str]):
        self.texts = texts

    def token_strings(self, window: int) -> list[str]:
        return [" " + w for w in self.texts[window].split()]


def example(window: int, activating: bool, n_tokens: int = 3) -> Example:
    acts = np.zeros(n_tokens, np.float32)
    if activating:
        acts[1] = 2.0
    return Example(window, acts, float(acts.max()), activating)


def bucket(test: list[int], nonactivating: list[int], explain: list[int] = ()) -> BucketSample:
    return BucketSample(0, 0.0, 100.0, (0.0, 2.0), [example(w, True) for w in explain],
                        [example(w, True) for w in test], [example(w, False) for w in nonactivating])
