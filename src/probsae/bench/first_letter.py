"""The first-letter task of feature absorption (Chanin et al. 2024, as SAEBench v0.6 runs it).

Words come from a word list (Debian's ``wamerican``: ``/usr/share/dict/words``), kept when they
are lowercase ``a-z`` and one token with a leading space in the model's tokenizer. Each word is
asked for in an in-context prompt in SAEBench's format::

    <BOS>
     tiger has the first letter: T
     lion has the first letter: L
    … (3 examples; SAEBench: 10)
     castle has the first letter:

and read at the word's token (SAEBench's position −6 of that prompt). The examples come from a
few fixed prefixes (words set aside for them, never asked), so each prefix runs once and every
word is one cached token after it: the activation at the word needs only that token, and the
model check (greedy next token after ``:`` = `` C``) the five more of the template. Docs:
docs/BENCH.md (absorption).
"""

from __future__ import annotations

import copy
import inspect
import random
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import FileIOError, InputError
from ..validators import number, whole

LETTERS = "abcdefghijklmnopqrstuvwxyz"
#: The word list used when none is given (Debian/Ubuntu package ``wamerican``).
DEFAULT_WORDS = Path("/usr/share/dict/words")
#: SAEBench's prompt template; the word keeps its leading space (`` tiger``).
TEMPLATE = "{word} has the first letter:"
#: Share of the words the probes are trained on (SAEBench's train_test_fraction); the rest are test words.
TRAIN_FRACTION = 0.8
_WORD = re.compile(r"[a-z]+")


@dataclass
class FirstLetterConfig:
    """The words and prompts of the first-letter task."""

    max_words: int = 6000
    """Words asked for at most (a seeded sample of the filtered list; 0: all of them)."""
    seed: int = 42
    """Seed of the word sample, the split and the examples (SAEBench's default random_seed)."""
    icl_examples: int = 3
    """In-context examples before each word (SAEBench: 10; SmolLM2-135M answers more words right with 3)."""
    words: str = ""
    """Word list file, one word a line; empty: /usr/share/dict/words (apt-get install wamerican)."""
    prefixes: int = 4
    """Different example prefixes; the words are spread over them (SAEBench draws new examples per prompt)."""
    accuracy_words: int = 500
    """Test words the model check asks for (greedy next token = the first letter); 0: all test words."""
    min_accuracy: float = 0.5
    """Below this model accuracy on the task the absorption metric is skipped (chance is 1/26)."""
    batch_size: int = 64
    """Words per forward pass."""


def _check(cfg: FirstLetterConfig) -> None:
    """ConfigError naming the first field out of range."""
    for name, low in (("max_words", 0), ("icl_examples", 0), ("prefixes", 1), ("accuracy_words", 0),
                      ("batch_size", 1), ("seed", 0)):
        whole(name, getattr(cfg, name), low)
    number("min_accuracy", cfg.min_accuracy)


def read_words(path: str | Path | None = None) -> list[str]:
    """The lines of a word list (default :data:`DEFAULT_WORDS`), stripped, empty ones dropped."""
    p = Path(path) if path else DEFAULT_WORDS
    if not p.is_file():
        hint = ("install Debian's word list (apt-get install wamerican) or give one with --words FILE"
                if not path else "give an existing file, one word a line")
        raise FileIOError(f"word list {p} not found: {hint}")
    try:
        return [w.strip() for w in p.read_text(encoding="utf-8", errors="replace").splitlines() if w.strip()]
    except OSError as e:
        raise FileIOError(f"cannot read word list {p}: {e.strerror or e}") from e


def _single_tokens(tokenizer, texts: list[str]) -> list[int | None]:
    """Each text's token id when it is one ordinary token (not UNK or special), else None."""
    bad = {getattr(tokenizer, "unk_token_id", None), *getattr(tokenizer, "all_special_ids", [])}
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [t[0] if len(t) == 1 and t[0] not in bad else None for t in ids]


def filter_words(words: list[str], tokenizer) -> list[str]:
    """SAEBench's vocabulary filter on a word list: lowercase ``a-z`` words that are one token with
    a leading space (`` tiger``) in ``tokenizer``; sorted, without repeats."""
    cands = sorted({w for w in words if _WORD.fullmatch(w)})
    return [w for w, t in zip(cands, _single_tokens(tokenizer, [" " + w for w in cands])) if t is not None]


def letter_token_ids(tokenizer) -> list[int]:
    """The 26 answer tokens `` A`` … `` Z`` (SAEBench's answer format); InputError when they are not
    26 distinct single tokens."""
    ids = _single_tokens(tokenizer, [" " + c.upper() for c in LETTERS])
    if None in ids or len(set(ids)) != 26:
        raise InputError("the tokenizer has no single token for each of ' A' … ' Z', so the first-letter "
                         "answer cannot be read from the model")
    return ids  # type: ignore[return-value]


@dataclass
class FirstLetterData:
    """The task's words, labels and activations at the word token, one tensor per hook point."""

    words: list[str]
    """The N asked words (lowercase; each one token with a leading space)."""
    letters: np.ndarray
    """(N,) letter index 0–25 of each word."""
    train: np.ndarray
    """(N,) True for the probe-training words, False for the test words."""
    acts: dict[str, torch.Tensor]
    """hook point → (N, d) float32 activations at the word token."""
    examples: list[list[str]] = field(default_factory=list)
    """The in-context example words of each prefix."""
    accuracy: float | None = None
    """Share of the checked test words whose greedy next token is the first letter (None: not checked)."""
    checked: int = 0
    """Number of words the model check asked for."""
    check_error: str | None = None
    """Why the model check could not run (e.g. no single-token letters), if it could not."""

    def summary(self) -> dict:
        """The task's facts as a JSON-able dict (no activations)."""
        return {"n_words": len(self.words), "n_train": int(self.train.sum()),
                "n_test": int((~self.train).sum()), "accuracy": self.accuracy, "accuracy_words": self.checked,
                "accuracy_error": self.check_error, "template": TEMPLATE,
                "examples": self.examples}


def _prefix_text(examples: list[str]) -> str:
    """SAEBench's example block: separator first, one `` word has the first letter: W`` per line."""
    return "\n" + "".join(f"{TEMPLATE.format(word=' ' + w)} {w[0].upper()}\n" for w in examples)


def _forward_kwargs(model, cache) -> dict:
    """The keyword that passes a KV cache (``cache`` in newer transformers, else ``past_key_values``)
    and ``logits_to_keep=1`` where the model takes it."""
    params = inspect.signature(model.forward).parameters
    kw = {"cache" if "cache" in params else "past_key_values": cache, "use_cache": True}
    if "logits_to_keep" in params:
        kw["logits_to_keep"] = 1
    return kw


def _check_tokenization(tokenizer, prefix_text: str, prefix_ids: list[int], word: str, word_id: int,
                        suffix: list[int]) -> None:
    natural = tokenizer(prefix_text + TEMPLATE.format(word=" " + word), add_special_tokens=False)["input_ids"]
    if natural != prefix_ids + [word_id] + suffix:
        raise InputError(f"the tokenizer does not split the first-letter prompt at the word {word!r} "
                         "(its tokens differ from the examples', the word's and the template's tokens "
                         "concatenated): this task needs a tokenizer that splits words at spaces")


class _Prompts:
    """The prompts of the asked words: a few shared example prefixes (each run once, its KV cache
    reused), then per word its token (and the template's tokens for the model check)."""

    def __init__(self, handle, examples: list[list[str]], asked: list[str]):
        tok = handle.tokenizer
        self.handle = handle
        start = handle.bos_id if handle.bos_id is not None else handle.eos_id
        head = [start] if start is not None else []
        texts = [_prefix_text(ex) for ex in examples]
        body = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        self.word_ids = _single_tokens(tok, [" " + w for w in asked])
        self.suffix = tok(TEMPLATE.format(word=""), add_special_tokens=False)["input_ids"]
        _check_tokenization(tok, texts[0], body[0], asked[0], self.word_ids[0], self.suffix)
        self.group = np.arange(len(asked)) % len(examples)
        with torch.inference_mode():
            self.caches = [handle.model(input_ids=torch.tensor([head + b], device=handle.device),
                                        use_cache=True).past_key_values for b in body]

    def batches(self, words: np.ndarray, batch_size: int):
        """(prefix, word indices) batches of ``words``, each batch under one prefix."""
        for p in range(len(self.caches)):
            idx = words[self.group[words] == p]
            for s in range(0, len(idx), batch_size):
                yield p, idx[s:s + batch_size]

    @torch.inference_mode()
    def run(self, p: int, rows: torch.Tensor, hooks: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Run ``rows`` (B, T) after prefix ``p``: each hook's activation at the rows' first token
        (B, d) and the logits after their last token (B, V)."""
        from ..data.hooks import splice

        cache = copy.deepcopy(self.caches[p])
        cache.batch_repeat_interleave(rows.shape[0])
        got: dict[str, torch.Tensor] = {}

        def keeper(h: str):
            def keep(x: torch.Tensor) -> torch.Tensor:
                got.setdefault(h, x[:, 0].float().cpu())
                return x
            return keep

        model = self.handle.model
        with ExitStack() as stack:
            for h in hooks:
                stack.enter_context(splice(self.handle, h, keeper(h)))
            logits = model(input_ids=rows.to(self.handle.device), **_forward_kwargs(model, cache)).logits[:, -1]
        return got, logits.float().cpu()


def not_causal(handle) -> str | None:
    """Why the task cannot run on ``handle``'s model (an encoder), or None for a causal LM."""
    if handle.is_causal:
        return None
    return (f"model {handle.name!r} is not a causal LM: the first-letter task needs next-token predictions "
            "(absorption runs on causal LMs only)")


def _require_causal(handle) -> None:
    reason = not_causal(handle)
    if reason:
        raise InputError(reason)


def first_letter_data(handle, hooks: list[str], words: list[str], cfg: FirstLetterConfig | None = None,
                      progress: bool = False) -> FirstLetterData:
    """Filter ``words`` (:func:`filter_words`), build the prompts, and read every hook point's
    activation at each word token in one pass over the words; check the model on up to
    ``cfg.accuracy_words`` test words. ``handle``: a causal LM's ModelHandle."""
    from ..progress import bar

    cfg = cfg or FirstLetterConfig()
    _check(cfg)
    _require_causal(handle)
    kept = filter_words(words, handle.tokenizer)
    n_ex = cfg.prefixes * cfg.icl_examples
    if len(kept) < n_ex + 20:
        raise InputError(f"only {len(kept)} of {len(words)} words are lowercase a-z and one token with a leading "
                         f"space in {handle.name!r}'s tokenizer; the task needs at least {n_ex + 20}")
    rng = random.Random(cfg.seed)
    rng.shuffle(kept)
    examples = [kept[i * cfg.icl_examples:(i + 1) * cfg.icl_examples] for i in range(cfg.prefixes)]
    asked = kept[n_ex:][:cfg.max_words or None]
    prompts = _Prompts(handle, examples, asked)
    train = np.zeros(len(asked), bool)
    train[:int(len(asked) * TRAIN_FRACTION)] = True
    acts = {h: torch.zeros(len(asked), handle.d_model) for h in hooks}
    with bar(total=len(asked), desc="first-letter activations", unit="word", requested=progress) as pb:
        for p, b in prompts.batches(np.arange(len(asked)), cfg.batch_size):
            got, _ = prompts.run(p, torch.tensor([[prompts.word_ids[i]] for i in b]), hooks)
            for h in hooks:
                acts[h][b] = got[h]
            pb.update(len(b))
    data = FirstLetterData(asked, np.array([LETTERS.index(w[0]) for w in asked]), train, acts, examples)
    _model_check(prompts, data, cfg, progress)
    return data


def _model_check(prompts: _Prompts, data: FirstLetterData, cfg: FirstLetterConfig, progress: bool) -> None:
    """Greedy next token after the whole prompt vs the first letter, on test words (sets
    ``data.accuracy``, ``data.checked``; ``data.check_error`` when the answer cannot be read)."""
    test = np.flatnonzero(~data.train)[:cfg.accuracy_words or None]
    try:
        right = _right_answers(prompts, test, data.letters, cfg.batch_size, progress)
    except InputError as e:
        data.check_error = str(e)
        return
    data.checked = len(test)
    data.accuracy = float(right.mean()) if len(test) else None


def _right_answers(prompts: _Prompts, words: np.ndarray, letters: np.ndarray, batch_size: int,
                   progress: bool = False) -> np.ndarray:
    """(len(words),) whether the greedy next token after each word's prompt is its first letter."""
    from ..progress import bar

    answers = letter_token_ids(prompts.handle.tokenizer)
    right = np.zeros(len(prompts.word_ids), bool)
    with bar(total=len(words), desc="first-letter model check", unit="word", requested=progress) as pb:
        for p, b in prompts.batches(words, batch_size):
            rows = torch.tensor([[prompts.word_ids[i], *prompts.suffix] for i in b])
            _, logits = prompts.run(p, rows, [])
            right[b] = (logits.argmax(-1) == torch.tensor([answers[letters[i]] for i in b])).numpy()
            pb.update(len(b))
    return right[words]


def first_letter_accuracy(handle, words: list[str], examples: list[list[str]], batch_size: int = 64) -> dict:
    """The model check on given ``words`` (lowercase, each one token with a leading space) after the
    given example prefixes (``examples``: the example words of each prefix; word i uses prefix
    i mod len(examples)): ``{"accuracy", "n", "wrong": [words answered wrongly]}``."""
    _require_causal(handle)
    bad = [w for w, t in zip(words, _single_tokens(handle.tokenizer, [" " + w for w in words])) if t is None]
    if bad:
        raise InputError(f"not one token with a leading space in {handle.name!r}'s tokenizer: {', '.join(bad[:10])}")
    prompts = _Prompts(handle, examples, words)
    right = _right_answers(prompts, np.arange(len(words)), np.array([LETTERS.index(w[0]) for w in words]),
                           batch_size)
    return {"accuracy": float(right.mean()), "n": len(words), "wrong": [w for w, r in zip(words, right) if not r]}
