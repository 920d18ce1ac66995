"""A trained run as one object: the SAE, its model and hook point, text in, sparse codes out.

    run = probsae.load_run("runs/minilm-prob_topk-k8")
    enc = run.encode_text("def parse(path): return open(path).read()")
    enc.top_latents(5)                 # [(latent, max |act|, token), …]
    run.top_examples(latent=123, n=5)  # its strongest contexts in the run's held-out text
    run.top_examples(123, texts=["…", "…"])  # or in given texts, each windowed on its own (ex.text)

The model, hook point, context length and special-token handling come from the SAE's own metadata
(config.json, written by ``probsae train`` / ``probsae sweep``); the model is loaded on first use.
Text is cut into windows and special tokens are skipped exactly as in training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError


@dataclass
class EncodedText:
    """Sparse SAE codes of one text.

    ``token_ids`` / ``tokens`` (T,): the tokens that were encoded, in order (special tokens skipped
    when training skipped them); ``latents`` / ``acts`` (T, K): each token's firing latents and
    their codes (signed), strongest first, padded with latent -1 and act 0 where a token has fewer
    than K (ReLU-family L0 varies)."""

    text: str
    token_ids: torch.Tensor
    tokens: list[str]
    latents: torch.Tensor
    acts: torch.Tensor
    d_sae: int
    profile: object = None
    """The run's :class:`~probsae.interp.latent_cache.LatentProfile` (None: no latent cache yet)."""

    def __len__(self) -> int:
        return len(self.tokens)

    def dense(self) -> torch.Tensor:
        """(T, d_sae) dense codes."""
        out = torch.zeros(len(self.tokens), self.d_sae)
        ok = self.latents >= 0
        rows = torch.arange(len(self.tokens)).unsqueeze(1).expand_as(self.latents)
        out[rows[ok], self.latents[ok]] = self.acts[ok]
        return out

    def top_latents(self, n: int = 10, exclude_flagged: bool = True) -> list[tuple[int, float, str]]:
        """The ``n`` strongest latents of the text, as (latent, signed code at its strongest token,
        that token).

        With a :class:`~probsae.interp.latent_cache.LatentProfile` (``profile``: the run's latent
        cache, attached by ``Run.encode_text`` when one exists) latents rank by their code relative
        to their own max |code| over the cache (ties: larger |code| first), and
        ``exclude_flagged`` (default) leaves out dense, window-start and positional latents.
        Without one they rank by raw |code| (a dense or window-start latent can then come first)."""
        best: dict[int, tuple[float, int]] = {}
        for t in range(len(self.tokens)):
            for l, a in zip(self.latents[t].tolist(), self.acts[t].tolist()):
                if l >= 0 and abs(a) > abs(best.get(l, (0.0, 0))[0]):
                    best[l] = (a, t)
        p = self.profile
        if p is None:
            order = sorted(best.items(), key=lambda kv: -abs(kv[1][0]))
        else:
            flagged = p.flagged if exclude_flagged else np.zeros(self.d_sae, bool)
            order = sorted(((l, v) for l, v in best.items() if not flagged[l]),
                           key=lambda kv: (-p.relative(kv[0], kv[1][0]), -abs(kv[1][0])))
        return [(l, a, self.tokens[t]) for l, (a, t) in order[:n]]


@dataclass
class LatentExample:
    """One context where a latent fires: the window's tokens, the latent's code at each (0 where it
    does not fire) and the strongest position."""

    window: int
    """The window's index: in its text when ``text`` is set, else in the packed held-out windows."""
    tokens: list[str]
    acts: np.ndarray
    max_pos: int
    text: int | None = None
    """Index of the text it came from in ``top_examples(texts=...)``; None for the run's held-out
    documents, which are packed into windows as in training."""

    @property
    def max_act(self) -> float:
        return float(self.acts[self.max_pos])

    def context(self, left: int = 24, right: int = 8) -> str:
        """The text around the strongest token, which is shown as [[token]]."""
        lo, hi = max(0, self.max_pos - left), min(len(self.tokens), self.max_pos + right + 1)
        parts = [f"[[{t}]]" if i == self.max_pos else t for i, t in enumerate(self.tokens[lo:hi], lo)]
        return ("…" if lo else "") + "".join(parts) + ("…" if hi < len(self.tokens) else "")

    def __str__(self) -> str:
        return f"{self.max_act:+.3f}  {self.context()}"


class Examples(list):
    """The examples :meth:`Run.top_examples` found (a list of :class:`LatentExample`, strongest
    first), with what they rest on."""

    source: str
    """``held-out text`` (the run's held-out documents) or ``given texts``."""
    n_windows: int
    """Windows searched."""
    n_tokens: int
    """Tokens encoded in those windows."""
    capped_from: int | None = None
    """Held-out windows there were, when the default cap (the time budget) searched fewer; else None."""

    def describe(self) -> str:
        s = f"{len(self)} examples from {self.n_windows:,} windows ({self.n_tokens:,} tokens) of {self.source}"
        if self.capped_from is not None:
            s += f", capped from {self.capped_from:,} windows by the time budget (pass max_windows= to choose)"
        return s


class Run:
    """A trained SAE with its model and hook point (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu"):
        from ..saes import load_sae

        self.path = Path(path)
        self.device = device
        self.sae = load_sae(self.path, device=device).eval()
        self.metadata = self.sae.metadata
        if not self.metadata.model_name or not self.metadata.hook_name:
            raise ConfigError(f"{self.path}: the SAE's config.json records no model/hook point (metadata); "
                              "set sae.metadata.model_name and hook_name and save it again (sae.save), or retrain "
                              "with probsae train")
        self._model = None
        self._heldout: dict[int | None, tuple[list, int | None]] = {}
        self._profile = None

    @property
    def hook(self) -> str:
        return self.metadata.hook_name  # type: ignore[return-value]

    @property
    def model(self):
        """The :class:`~probsae.data.ModelHandle`, loaded on first use."""
        if self._model is None:
            from ..data.models import load_model

            self._model = load_model(self.metadata.model_name, device=self.device)
        return self._model

    @property
    def context_length(self) -> int:
        return int(self.metadata.context_length or self.model.max_length)

    def _windows(self, docs, batch_size: int = 8):
        from ..data.corpus import token_windows

        m = self.metadata
        return token_windows(docs, self.model.tokenizer, self.context_length, batch_size=batch_size,
                             max_length=self.model.max_length, style=m.window_style, prepend_bos=m.prepend_bos,
                             exclude_special=m.exclude_special)

    def _encode(self, docs, batch_size: int = 8):
        from ..interp.encode import encode_windows

        return encode_windows(self.sae, self.model, self.hook, self._windows(docs, batch_size))

    def _encode_each(self, texts: list[str], batch_size: int = 8):
        """(text index, encoded batch) of each text windowed on its own (no window spans two texts)."""
        for i, text in enumerate(texts):
            for eb in self._encode([text], batch_size):
                yield i, eb

    def encode_text(self, texts: str | list[str], batch_size: int = 8) -> EncodedText | list[EncodedText]:
        """Tokens and sparse codes of one text (an :class:`EncodedText`) or of each text of a list.
        Each text is windowed on its own exactly as training windowed documents (a text longer than
        the context length spans several windows; their tokens are concatenated)."""
        from ..interp.latent_cache import token_pieces

        single = isinstance(texts, str)
        profile = self.latent_profile()  # once per call: the lookup reads every cache manifest
        out = []
        for text in [texts] if single else list(texts):
            ids, parts = [], []
            for eb in self._encode([text], batch_size):
                keep = eb.keep
                flat = keep.flatten().nonzero().squeeze(1)
                # token index of each (window, pos) in the concatenated kept tokens
                index = torch.full(keep.shape, -1, dtype=torch.long).flatten()
                index[flat] = torch.arange(len(flat)) + sum(len(i) for i in ids)
                ids.append(eb.input_ids[keep])
                tok = index.view(keep.shape)[eb.window - eb.first_window, eb.pos]
                parts.append((tok, eb.latent, eb.act))
            token_ids = torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long)
            latents, acts = _pack(token_ids.shape[0], parts)
            pieces = token_pieces(self.model.tokenizer, token_ids.numpy(), np.ones(len(token_ids), bool))
            out.append(EncodedText(text, token_ids, pieces, latents, acts, self.sae.d_sae, profile))
        return out[0] if single else out

    def latent_profile(self):
        """The :class:`~probsae.interp.latent_cache.LatentProfile` of the run's largest latent
        cache of this SAE (``RUN/interp/latent_cache/*``, as ``probsae dashboard`` builds), or None."""
        from ..interp.latent_cache_writer import find_profile

        if self._profile is None:   # looked up again until a cache exists
            self._profile = find_profile(self.path, self.sae)
        return self._profile

    def held_out_texts(self) -> list[str]:
        """The documents of the run's corpus that training never saw (every ``holdout_every``-th)."""
        from ..data.corpus import load_corpus, split_documents

        m = self.metadata
        if not m.corpus or not m.holdout_every:
            raise ConfigError(f"{self.path}: the SAE's metadata records no corpus/held-out split; pass texts=")
        return list(split_documents(load_corpus(m.corpus, text_field=m.text_field), "holdout",
                                    holdout_every=m.holdout_every))

    def _heldout_batches(self, max_windows: int | None, progress: bool) -> tuple[list, int | None]:
        """The run's held-out documents encoded (packed into windows as in training), once per
        ``max_windows``: ([(None, EncodedBatch)], the window count before the default cap or None).

        All held-out windows are tokenized first, so the estimate printed after the first batch (from
        its measured speed; :mod:`probsae.interp.cost`) covers the real count. Without
        ``max_windows`` the count is capped to what fits :data:`~probsae.interp.cost.TIME_BUDGET_S`."""
        import time

        from ..interp.cost import TIME_BUDGET_S, estimate
        from ..interp.encode import encode_windows
        from ..progress import bar as progress_bar
        from ..progress import say

        if max_windows in self._heldout:
            return self._heldout[max_windows]
        windows = list(self._windows(self.held_out_texts()))
        total = sum(len(w) for w in windows)
        if total == 0:
            raise ConfigError(f"{self.path}: the run's held-out documents make no token window; pass texts=")
        want = total if max_windows is None else min(total, max_windows)
        budget = TIME_BUDGET_S if max_windows is None else None
        out, stop, t0 = [], want, time.monotonic()
        with progress_bar(total=want, unit="win", desc="held-out examples", requested=progress) as bar:
            for eb in encode_windows(self.sae, self.model, self.hook, windows, max_windows=want):
                if not out:
                    est = estimate("held-out examples", want, self.context_length, len(eb),
                                   time.monotonic() - t0, budget, len(windows[0]))
                    if progress:
                        say(est.line())
                    stop = bar.total = est.n_windows
                out.append((None, eb))
                bar.update(len(eb))
                if sum(len(b) for _, b in out) >= stop:
                    break
        self._heldout[max_windows] = out, (total if stop < total and max_windows is None else None)
        return self._heldout[max_windows]

    def top_examples(self, latent: int, n: int = 10, texts: str | list[str] | None = None,
                     max_windows: int | None = None, progress: bool = True) -> Examples:
        """The ``n`` windows where ``latent`` fires most strongly (by max |code|), over ``texts``
        or, by default, the run's held-out documents (packed into windows as in training; encoded
        once per Run and ``max_windows``). Given texts are windowed each on its own, as
        ``encode_text`` does (no context from a neighbouring text), and each example's ``text`` is
        the index of its text.

        Held-out text: an estimate is printed after the first batch; without ``max_windows`` the
        windows searched are capped to what the measured speed encodes in
        :data:`~probsae.interp.cost.TIME_BUDGET_S`. The result's ``n_windows``, ``n_tokens``,
        ``capped_from`` and :meth:`Examples.describe` say what it rests on."""
        from ..interp.latent_cache import token_pieces

        if not 0 <= int(latent) < self.sae.d_sae:
            raise ConfigError(f"latent {latent} out of range 0..{self.sae.d_sae - 1}")
        if max_windows is not None and max_windows < 1:
            raise ConfigError(f"max_windows must be at least 1, got {max_windows}")
        capped_from = None
        if texts is None:
            batches, capped_from = self._heldout_batches(max_windows, progress)
        else:
            batches = list(self._encode_each([texts] if isinstance(texts, str) else list(texts)))
        found = []
        for text, eb in batches:
            m = eb.latent == int(latent)
            for w in torch.unique(eb.window[m]).tolist():
                sel = m & (eb.window == w)
                acts = np.zeros(eb.input_ids.shape[1], np.float32)
                acts[eb.pos[sel].numpy()] = eb.act[sel].numpy()
                found.append((float(np.abs(acts).max()), text, eb, w, acts))
        found.sort(key=lambda f: -f[0])
        out = Examples()
        for _, text, eb, w, acts in found[:n]:
            row = w - eb.first_window
            pieces = token_pieces(self.model.tokenizer, eb.input_ids[row].numpy(), eb.keep[row].numpy())
            out.append(LatentExample(w, pieces, acts, int(np.abs(acts).argmax()), text))
        out.source = "held-out text" if texts is None else "given texts"
        out.n_windows = sum(len(eb) for _, eb in batches)
        out.n_tokens = sum(int(eb.keep.sum()) for _, eb in batches)
        out.capped_from = capped_from
        return out


def _pack(n_tokens: int, parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Triplets (token, latent, act) → (T, K) latents/acts, strongest first, padded with -1/0."""
    if not parts or n_tokens == 0:
        return torch.full((n_tokens, 0), -1, dtype=torch.long), torch.zeros(n_tokens, 0)
    tok, lat, act = (torch.cat(x) for x in zip(*parts))
    order = torch.argsort(act.abs(), descending=True, stable=True)
    tok, lat, act = tok[order], lat[order], act[order]
    order = torch.argsort(tok, stable=True)
    tok, lat, act = tok[order], lat[order], act[order]
    counts = torch.bincount(tok, minlength=n_tokens)
    K = int(counts.max()) if len(counts) else 0
    slot = torch.arange(len(tok)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    latents = torch.full((n_tokens, K), -1, dtype=torch.long)
    acts = torch.zeros(n_tokens, K)
    latents[tok, slot] = lat
    acts[tok, slot] = act
    return latents, acts


def load_run(path: str | os.PathLike, device: str = "cpu") -> Run:
    """Open a run directory (or any saved SAE whose config.json has metadata): see :class:`Run`."""
    return Run(path, device)
