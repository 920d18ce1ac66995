"""Explainers: turn one bucket's explanation examples into a short natural-language explanation.

* :class:`LLMExplainer` — asks a chat model (via :class:`~probsae.interp.llm_client.ChatClient`).
  Examples show the window text with the firing tokens marked ``<<like this>>`` and the strongest
  tokens with activations rescaled to 0–10 (the convention of Paulo et al. 2025 / delphi); the
  model must end its reply with ``EXPLANATION: ...``. A reply without it counts as a failure
  (``explanation_format="strict"``); with ``"lenient"`` (for small models) its first sentence is
  taken instead, unless it is empty, echoes the prompt, is mostly copied from an excerpt, or a repetition loop
  (:func:`parse_explanation_lenient`); such explanations are marked ``lenient``.
* :class:`TopTokensExplainer` — a **non-LLM baseline** for offline runs: lists the most frequent
  strongly-activating tokens of the examples. Its explanations are labelled ``top-tokens``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .latent_cache import LatentCache
from .llm_client import ChatClient
from .sampling import Example

HIGHLIGHT_FRACTION = 0.3
"""A token is marked as firing in an example if its activation exceeds this fraction of the
window's maximum (delphi's default threshold)."""

EXPLAINER_SYSTEM = (
    "You are helping to interpret the internal features of a language model. A feature is a "
    "direction that becomes active on some tokens. You are shown text excerpts on which one "
    "feature is active; the tokens where it is active are enclosed in << and >>, and below each "
    "excerpt the most active tokens are listed with their activation on a 0-10 scale.\n"
    "Work out what the marked tokens have in common: a word or token pattern, a topic, a "
    "syntactic role, or the context around them. Keep your reasoning brief. Then give a concise "
    "explanation of the feature, at most about 15 words, without mentioning the markers or the "
    "numbers, on a final line of the form:\n"
    "EXPLANATION: <your explanation>"
)


@dataclass
class Explanation:
    latent: int
    bucket: int
    text: str | None
    source: str                 # "llm" or "top-tokens"
    error: str | None = None
    cached: bool = False
    lenient: bool = False
    """Taken from a reply without an ``EXPLANATION:`` line (``explanation_format="lenient"``)."""

    def to_json(self) -> dict:
        d = {"latent": self.latent, "bucket": self.bucket, "explanation": self.text,
             "source": self.source, "error": self.error}
        return {**d, "lenient": True} if self.lenient else d


class TextFormatter:
    """Token pieces of cached windows, memoised (shared by explainers, scorers and dashboards)."""

    def __init__(self, cache: LatentCache):
        self.cache = cache
        self._pieces: dict[int, list[str]] = {}

    def pieces(self, window: int) -> list[str]:
        if window not in self._pieces:
            self._pieces[window] = self.cache.token_strings(window)
        return self._pieces[window]

    def text(self, window: int) -> str:
        return re.sub(r"\s+", " ", "".join(self.pieces(window))).strip()

    def highlighted(self, ex: Example, fraction: float = HIGHLIGHT_FRACTION) -> str:
        """Window text with runs of firing tokens wrapped in ``<< >>``."""
        pieces = self.pieces(ex.window)
        thr = fraction * float(ex.acts.max()) if ex.acts.size else 0.0
        out: list[str] = []
        inside = False
        for p, a in zip(pieces, ex.acts):
            on = a > thr and a > 0 and p != ""
            if on and not inside:
                lead = len(p) - len(p.lstrip())
                out.append(p[:lead] + "<<" + p[lead:])
                inside = True
            elif on:
                out.append(p)
            elif inside:
                out.append(">>" + p)
                inside = False
            else:
                out.append(p)
        if inside:
            out.append(">>")
        return re.sub(r"\s+", " ", "".join(out)).strip()

    def strongest(self, ex: Example, scale: float, n: int = 5) -> list[tuple[str, int]]:
        pieces = self.pieces(ex.window)
        order = np.argsort(-ex.acts)[:n]
        return [(pieces[i].strip(), int(round(10 * ex.acts[i] / scale))) for i in order
                if ex.acts[i] > 0 and pieces[i].strip()]


def build_explainer_messages(fmt: TextFormatter, examples: list[Example]) -> list[dict]:
    scale = max((float(e.acts.max()) for e in examples), default=1.0) or 1.0
    blocks = []
    for i, ex in enumerate(examples, 1):
        toks = ", ".join(f'"{t}" {v}' for t, v in fmt.strongest(ex, scale))
        blocks.append(f"Excerpt {i}: {fmt.highlighted(ex)}\nMost active: {toks}")
    user = "Excerpts where the feature is active:\n\n" + "\n\n".join(blocks)
    return [{"role": "system", "content": EXPLAINER_SYSTEM}, {"role": "user", "content": user}]


_EXPL = re.compile(r"explanation\s*\**\s*[:\-]\s*\**\s*(.+)", re.IGNORECASE)


def parse_explanation(reply: str) -> str | None:
    """The text after the last ``EXPLANATION:`` marker (quotes and markdown stripped), or None."""
    found = _EXPL.findall(reply or "")
    if not found:
        return None
    text = found[-1].strip().strip("*").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text or None


EXPLANATION_FORMATS = ("strict", "lenient")
"""How an explainer reply is read: 'strict' (only an ``EXPLANATION:`` line) or 'lenient' (else its
first sentence, :func:`parse_explanation_lenient`; for small models)."""

COPY_NGRAM = 4
"""Word n-grams compared with the excerpts to tell a copied excerpt from an explanation."""
COPY_FRACTION = 0.5
"""A first sentence is a copy when at least this fraction of its word ``COPY_NGRAM``-grams occur in
an excerpt shown to the explainer."""
PROMPT_ECHO = re.compile(r"(excerpt\s*\d*|most active)\s*:", re.IGNORECASE)
"""A first sentence starting with one of the prompt's own labels ("Excerpt 1:", "Most active:")
echoes the prompt and is no explanation."""
MIN_DISTINCT_WORDS = 0.5
"""A first sentence of 6 words or more is a repetition loop when fewer than this fraction of its
words are distinct ("The feature is a feature of the feature of the feature")."""


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _ngrams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + COPY_NGRAM]) for i in range(len(words) - COPY_NGRAM + 1)}


def first_sentence(reply: str) -> str:
    """The reply's first non-empty line, cut after its first sentence; quotes, markdown and a
    leading list number stripped."""
    line = next((l for l in (reply or "").splitlines() if l.strip(" *#>-\t")), "")
    line = re.sub(r"^\d+[.)]\s+", "", line.strip(" *#>-\t"))        # a list number
    text = re.split(r"(?<=[.!?])\s", line, maxsplit=1)[0].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text


def parse_explanation_lenient(reply: str, excerpts: list[str]) -> tuple[str | None, bool]:
    """(explanation, lenient): the ``EXPLANATION:`` line if there is one (lenient False); else the
    reply's first sentence (lenient True), or None when it is empty, echoes the prompt
    (:data:`PROMPT_ECHO`), copies an excerpt (:data:`COPY_FRACTION`) or loops (:data:`MIN_DISTINCT_WORDS`)."""
    strict = parse_explanation(reply)
    if strict is not None:
        return strict, False
    text = first_sentence(reply)
    words = _words(text)
    if not words or PROMPT_ECHO.match(text) or (len(words) >= 6 and len(set(words)) < MIN_DISTINCT_WORDS * len(words)):
        return None, False
    grams = _ngrams(words)
    seen = set().union(*(_ngrams(_words(e)) for e in excerpts)) if excerpts else set()
    if grams and len(grams & seen) >= COPY_FRACTION * len(grams):
        return None, False
    return text, True


class LLMExplainer:
    source = "llm"

    def __init__(self, client: ChatClient, temperature: float = 0.0, max_tokens: int = 400,
                 explanation_format: str = "strict"):
        """``explanation_format``: one of :data:`EXPLANATION_FORMATS`."""
        self.client = client
        self.params = {"temperature": temperature, "max_tokens": max_tokens}
        self.lenient = explanation_format == "lenient"

    def parse(self, fmt: TextFormatter, reply: str, examples: list[Example]) -> tuple[str | None, bool]:
        """(explanation or None, whether the lenient rule gave it) of one reply."""
        if not self.lenient:
            return parse_explanation(reply), False
        return parse_explanation_lenient(reply, [fmt.text(e.window) for e in examples])

    def explain_many(self, fmt: TextFormatter, items: list[tuple[int, int, list[Example]]]) -> list[Explanation]:
        reqs = [(build_explainer_messages(fmt, exs), dict(self.params)) for _, _, exs in items]
        results = self.client.complete_many(reqs, desc="LLM explanations")
        out = []
        for (latent, bucket, exs), r in zip(items, results):
            if not r.ok:
                out.append(Explanation(latent, bucket, None, self.source, error=r.error))
                continue
            text, lenient = self.parse(fmt, r.text or "", exs)
            out.append(Explanation(latent, bucket, text, self.source,
                                   error=None if text else "malformed", cached=r.cached, lenient=lenient))
        return out


class TopTokensExplainer:
    """Non-LLM baseline: 'Fires on the tokens: "a", "b", ...' from the examples' firing tokens."""

    source = "top-tokens"

    def __init__(self, n_tokens: int = 5, fraction: float = 0.5):
        self.n_tokens = n_tokens
        self.fraction = fraction

    def explain(self, fmt: TextFormatter, examples: list[Example]) -> str | None:
        counts: Counter[str] = Counter()
        for ex in examples:
            pieces = fmt.pieces(ex.window)
            thr = self.fraction * float(ex.acts.max())
            for p, a in zip(pieces, ex.acts):
                tok = p.strip().lower()
                if a > 0 and a >= thr and tok:
                    counts[tok] += 1
        if not counts:
            return None
        top = [t for t, _ in counts.most_common(self.n_tokens)]
        return "Fires on the tokens: " + ", ".join(f'"{t}"' for t in top)

    def explain_many(self, fmt: TextFormatter, items: list[tuple[int, int, list[Example]]]) -> list[Explanation]:
        out = []
        for latent, bucket, exs in items:
            text = self.explain(fmt, exs)
            out.append(Explanation(latent, bucket, text, self.source, None if text else "no firing tokens"))
        return out
