"""Scorers: how well does a bucket's explanation pick out that bucket's held-out examples?

* :class:`DetectionScorer` (Paulo et al. 2025): a chat model sees the explanation and a shuffled
  batch of activating and non-activating windows (5 per prompt, temperature 0) and answers a list
  of 0/1 (``judge_format="list"``, the paper's). ``judge_format="yes-no"`` is for small models that
  cannot write that list: one excerpt per prompt, and the reply's first word must be Yes or No.
  Score = balanced accuracy ½(TP/P + TN/N) over the answered examples, plus precision,
  recall and F1. Failed requests and malformed answers are counted, never fatal.
* :class:`EmbeddingScorer` (no LLM): the bundled all-MiniLM-L6-v2 sentence model embeds the
  explanation (as the query) and every example; score = ROC-AUC of activating vs non-activating
  by cosine similarity.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np

from .explainer import Explanation, TextFormatter
from .llm_client import ChatClient
from .sampling import BucketSample, Example

DETECTION_SYSTEM = (
    "You check explanations of a language-model feature. You get an explanation of what makes "
    "the feature active and a numbered list of text excerpts. For each excerpt decide whether "
    "the feature would be active somewhere in it, according to the explanation. Some excerpts "
    "activate the feature and some do not.\n"
    "Reply with only a JSON list with one entry per excerpt, in order: 1 if the feature is "
    "active in that excerpt, 0 if not. For example, for four excerpts: [0, 1, 1, 0]"
)


YES_NO_SYSTEM = (
    "You check explanations of a language-model feature. You get an explanation of what makes "
    "the feature active and one text excerpt. Decide whether the feature would be active "
    "somewhere in the excerpt, according to the explanation. Answer with one word: Yes or No."
)

JUDGE_FORMATS = ("list", "yes-no")
"""Detection prompt formats: 'list' (several excerpts per prompt, a JSON list of 0/1; the paper's)
and 'yes-no' (one excerpt per prompt, a reply starting with Yes or No; for small models)."""

YES_NO_MAX_TOKENS = 8
"""max_tokens of a yes-no detection request: only the first word is read."""


@dataclass
class BucketScore:
    latent: int
    bucket: int
    scorer: str
    explanation: str | None
    explanation_source: str
    score: float | None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    n_activating: int = 0
    n_nonactivating: int = 0
    n_answered: int = 0
    n_prompts: int = 0
    n_failed_prompts: int = 0
    error: str | None = None
    details: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        return d


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve = P(score of a positive > score of a negative) + ½ P(tie)
    (the Mann–Whitney U statistic); None if one class is missing. Checked against scikit-learn's
    ``roc_auc_score`` in the tests (docs/ARCHITECTURE.md: why not depend on it)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    pos, neg = scores[labels], np.sort(scores[~labels])
    if len(pos) == 0 or len(neg) == 0:
        return None
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def classification_metrics(pred: list[int], truth: list[bool]) -> dict[str, float | None]:
    """Balanced accuracy, precision, recall, F1 of 0/1 predictions (None where undefined)."""
    p = np.asarray(pred, bool)
    t = np.asarray(truth, bool)
    tp, fp = int((p & t).sum()), int((p & ~t).sum())
    tn, fn = int((~p & ~t).sum()), int((~p & t).sum())
    P, N = tp + fn, tn + fp
    recall = tp / P if P else None
    spec = tn / N if N else None
    bal = (recall + spec) / 2 if recall is not None and spec is not None else None
    precision = tp / (tp + fp) if tp + fp else (0.0 if P else None)
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall > 0 else
          (0.0 if precision is not None and recall is not None else None))
    return {"balanced_accuracy": bal, "precision": precision, "recall": recall, "f1": f1,
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}


_LIST = re.compile(r"\[[^\[\]]*\]")


def parse_predictions(reply: str, n: int) -> list[int] | None:
    """The first bracketed list of exactly ``n`` 0/1 values in ``reply``, or None (malformed)."""
    for m in _LIST.finditer(reply or ""):
        try:
            vals = json.loads(m.group(0).replace("'", '"'))
        except ValueError:
            continue
        if not isinstance(vals, list) or len(vals) != n:
            continue
        out = []
        for v in vals:
            if isinstance(v, bool):
                out.append(int(v))
            elif isinstance(v, (int, float)) and v in (0, 1):
                out.append(int(v))
            elif isinstance(v, str) and v.strip() in ("0", "1"):
                out.append(int(v.strip()))
            else:
                return None
        return out
    return None


def parse_yes_no(reply: str | None) -> int | None:
    """1 if the reply's first word is "yes", 0 if "no" (case and punctuation ignored), else None."""
    words = (reply or "").split(maxsplit=1)
    first = re.sub(r"[^\w]", "", words[0]).lower() if words else ""
    return {"yes": 1, "no": 0}.get(first)


def build_yes_no_messages(explanation: str, text: str) -> list[dict]:
    user = (f"Explanation: {explanation}\n\nExcerpt: {text}\n\n"
            "Does the feature fire on this excerpt? Answer Yes or No.")
    return [{"role": "system", "content": YES_NO_SYSTEM}, {"role": "user", "content": user}]


def build_detection_messages(explanation: str, texts: list[str]) -> list[dict]:
    lines = "\n".join(f"Excerpt {i}: {t}" for i, t in enumerate(texts, 1))
    user = f"Explanation: {explanation}\n\n{lines}\n\nAnswer with a JSON list of {len(texts)} values (0 or 1)."
    return [{"role": "system", "content": DETECTION_SYSTEM}, {"role": "user", "content": user}]


def _shuffled(bucket: BucketSample, seed: int, latent: int) -> list[Example]:
    samples = list(bucket.test) + list(bucket.nonactivating)
    rng = np.random.default_rng([seed, latent, bucket.bucket, 7])
    return [samples[i] for i in rng.permutation(len(samples))]


class DetectionScorer:
    name = "detection"

    def __init__(self, client: ChatClient, examples_per_prompt: int = 5, seed: int = 0,
                 temperature: float = 0.0, max_tokens: int = 64, judge_format: str = "list"):
        """``judge_format``: one of :data:`JUDGE_FORMATS`; 'yes-no' asks one excerpt per prompt
        (``examples_per_prompt`` is then 1) with at most :data:`YES_NO_MAX_TOKENS` tokens."""
        self.client = client
        self.yes_no = judge_format == "yes-no"
        self.k = 1 if self.yes_no else examples_per_prompt
        self.seed = seed
        self.params = {"temperature": temperature,
                       "max_tokens": min(max_tokens, YES_NO_MAX_TOKENS) if self.yes_no else max_tokens}

    def messages(self, explanation: str, texts: list[str]) -> list[dict]:
        """The prompt of one batch of excerpts, in this scorer's judge format."""
        return build_yes_no_messages(explanation, texts[0]) if self.yes_no else build_detection_messages(explanation, texts)

    def parse(self, reply: str | None, n: int) -> list[int] | None:
        """The 0/1 predictions of a batch of ``n`` excerpts, or None (malformed)."""
        if not self.yes_no:
            return parse_predictions(reply, n)
        v = parse_yes_no(reply)
        return None if v is None else [v]

    def score_many(self, fmt: TextFormatter, items: list[tuple[Explanation, BucketSample]]) -> list[BucketScore]:
        """Score every (explanation, bucket) pair; all prompts of all pairs run concurrently."""
        plans = []
        reqs = []
        for expl, bucket in items:
            if expl.text is None:
                plans.append(None)
                continue
            samples = _shuffled(bucket, self.seed, expl.latent)
            batches = [samples[i:i + self.k] for i in range(0, len(samples), self.k)]
            start = len(reqs)
            for b in batches:
                reqs.append((self.messages(expl.text, [fmt.text(e.window) for e in b]), dict(self.params)))
            plans.append((batches, start))
        results = self.client.complete_many(reqs, desc="LLM detection")
        out = []
        for (expl, bucket), plan in zip(items, plans):
            if plan is None:
                out.append(BucketScore(expl.latent, bucket.bucket, self.name, None, expl.source, None,
                                       n_activating=len(bucket.test), n_nonactivating=len(bucket.nonactivating),
                                       error=f"no explanation ({expl.error})"))
                continue
            batches, start = plan
            preds, truth, details = [], [], []
            failed = 0
            errors = []
            for j, b in enumerate(batches):
                r = results[start + j]
                p = self.parse(r.text, len(b)) if r.ok else None
                if p is None:
                    failed += 1
                    errors.append(r.error or "malformed")
                for e, v in zip(b, p if p is not None else [None] * len(b)):
                    details.append({"window": e.window, "activating": e.activating, "prediction": v})
                    if v is not None:
                        preds.append(v)
                        truth.append(e.activating)
            m = classification_metrics(preds, truth) if preds else {}
            out.append(BucketScore(
                expl.latent, bucket.bucket, self.name, expl.text, expl.source, m.get("balanced_accuracy"),
                m.get("precision"), m.get("recall"), m.get("f1"), len(bucket.test), len(bucket.nonactivating),
                len(preds), len(batches), failed, ",".join(sorted(set(errors))) or None, details))
        return out


class SentenceEmbedder:
    """all-MiniLM-L6-v2 (bundled): transformers AutoModel, mean pooling, L2 normalisation
    (the model's own sentence-transformers recipe). Runs in float32 whatever dtype the checkpoint
    holds (transformers 5 keeps a checkpoint's dtype, so a float16 copy would give float16
    embeddings, unit-norm only to ~1e-3); ``embed`` returns float32 arrays."""

    def __init__(self, path: str | None = None, device: str = "cpu", batch_size: int = 64):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            from ..extras import require

            path = str(require("minilm").get_model_path())
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device=device, dtype=torch.float32).eval()
        self.device = device
        self.batch_size = batch_size
        self._torch = torch
        self._memo: dict[str, np.ndarray] = {}

    def embed(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        from ..progress import bar as progress_bar

        todo = sorted((t for t in dict.fromkeys(texts) if t not in self._memo), key=len)
        bar = progress_bar(total=len(todo), desc="embed texts", unit="text", requested=len(todo) > 4 * self.batch_size)
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            enc = self.tok(chunk, padding=True, truncation=True, max_length=256, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                h = self.model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                e = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
                e = torch.nn.functional.normalize(e, dim=-1).cpu().numpy()
            for t, v in zip(chunk, e):
                self._memo[t] = v
            bar.update(len(chunk))
        bar.close()
        return np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


class EmbeddingScorer:
    name = "embedding"

    def __init__(self, embedder: SentenceEmbedder | None = None):
        self.embedder = embedder or SentenceEmbedder()

    def score_many(self, fmt: TextFormatter, items: list[tuple[Explanation, BucketSample]]) -> list[BucketScore]:
        # one batched embedding pass over every explanation and example text
        texts = [e.text for e, _ in items if e.text is not None]
        texts += [fmt.text(s.window) for e, b in items if e.text is not None for s in (*b.test, *b.nonactivating)]
        self.embedder.embed(texts)
        out = []
        for expl, bucket in items:
            samples = list(bucket.test) + list(bucket.nonactivating)
            if expl.text is None:
                out.append(BucketScore(expl.latent, bucket.bucket, self.name, None, expl.source, None,
                                       n_activating=len(bucket.test), n_nonactivating=len(bucket.nonactivating),
                                       error=f"no explanation ({expl.error})"))
                continue
            q = self.embedder.embed([expl.text])[0]
            e = self.embedder.embed([fmt.text(s.window) for s in samples])
            sims = e @ q
            labels = np.array([s.activating for s in samples])
            auc = roc_auc(sims, labels)
            out.append(BucketScore(
                expl.latent, bucket.bucket, self.name, expl.text, expl.source, auc,
                n_activating=len(bucket.test), n_nonactivating=len(bucket.nonactivating), n_answered=len(samples),
                error=None if auc is not None else "one class missing",
                details=[{"window": s.window, "activating": s.activating, "similarity": round(float(v), 5)}
                         for s, v in zip(samples, sims)]))
        return out
