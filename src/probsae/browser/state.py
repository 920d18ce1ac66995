"""What the live browser knows about one run, built once at start-up: the run (SAE + model, for
encoding typed text and steering), its latent cache (the one ``probsae dashboard`` builds and
reuses), the per-latent page data (:class:`~probsae.interp.dashboard.LatentPages`) and the search
index over every alive latent. Every model call holds one lock: a forward pass with a steering
hook registered must never overlap another request's."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

MAX_TEXT_CHARS = 4000
"""Longest text the front page encodes (a few windows; longer text is refused, not cut)."""
MAX_NEW_TOKENS = 64
"""Most tokens one steering request generates (each is a full forward pass, twice)."""
STEER_MEMO = 32
"""Steering answers kept (greedy decoding is deterministic)."""


@dataclass
class TokenShade:
    """One token of an encoded text and the activation it is shaded by."""

    text: str
    latent: int
    """The latent shown (the chosen one, else the token's strongest by relative code); -1: none fires."""
    act: float
    """Its code at this token (0 where it does not fire)."""
    rel: float
    """``act`` over the latent's max |code| in the cache, in [0, 1]: the shading."""


@dataclass
class EncodedPage:
    """The front page's data for one text."""

    text: str
    tokens: list[TokenShade]
    top: list[tuple[int, float, str, float, list[str]]]
    """(latent, code at its strongest token, that token, relative code, flags) strongest first."""
    latent: int | None
    """The latent the tokens are shaded by (None: each token's strongest)."""


class Browser:
    """One run's data and model, shared by every request (module docstring)."""

    def __init__(self, run, cache, pages):
        self.run, self.cache, self.pages = run, cache, pages
        self.profile = pages.profile
        self.lock = threading.Lock()
        self._latents: dict[int, dict[str, Any]] = {}
        self._index: list[list] | None = None
        self._rows: dict[int, list] | None = None
        self._steered: dict[tuple, tuple] = {}

    @classmethod
    def open(cls, run_dir: str | Path, *, n_windows: int | None = None, window_len: int | None = None,
             batch_size: int = 8, cache_dir: str | Path | None = None, device: str = "cpu", seed: int = 0,
             progress: bool = True) -> "Browser":
        """Load the run and build (or reuse) its latent cache as ``probsae dashboard`` does: the
        same default location and window count (capped to the time budget, the estimate printed
        after the first batch), so a cache the dashboard built is reused and vice versa."""
        from ..interp.cost import window_count
        from ..interp.dashboard import LatentPages
        from ..interp.pipeline import ensure_cache, resolve_run
        from ..runs.load import load_run

        info = resolve_run(run_dir)
        run = load_run(run_dir, device=device)
        count, budget = window_count(n_windows)
        cache = ensure_cache(info, n_windows=count,
                             window_len=window_len or info.context_length or 128, batch_size=batch_size,
                             cache_dir=cache_dir, device=device, seed=seed, progress=progress, handle=run.model,
                             time_budget_s=budget)
        return cls(run, cache, LatentPages(cache, seed=seed, run_dir=info.run_dir))

    # ---- facts -------------------------------------------------------------------------------
    @property
    def d_sae(self) -> int:
        return self.cache.d_sae

    @property
    def is_causal(self) -> bool:
        return bool(getattr(self.run.model, "is_causal", False))

    def check_latent(self, latent: int) -> int:
        if not 0 <= int(latent) < self.d_sae:
            raise ConfigError(f"latent {latent} out of range 0..{self.d_sae - 1}")
        return int(latent)

    def explanation(self, latent: int) -> str:
        """The latent's autointerp explanations (one per bucket, distinct, joined by ' / '), or ''."""
        got = self.pages.interp.get(int(latent), {})
        return " / ".join(dict.fromkeys(str(e["explanation"]) for _, e in sorted(got.items()) if e.get("explanation")))

    # ---- pages' data -------------------------------------------------------------------------
    def encode(self, text: str, latent: int | None = None, n_top: int = 20) -> EncodedPage:
        """Tokens of ``text`` shaded by ``latent`` (else each token's strongest latent relative to
        its max) and the text's top latents (``EncodedText.top_latents`` with this cache's
        profile; flagged latents kept and marked)."""
        if len(text) > MAX_TEXT_CHARS:
            raise ConfigError(f"text too long: {len(text)} characters (at most {MAX_TEXT_CHARS})")
        if latent is not None:
            self.check_latent(latent)
        with self.lock:
            enc = self.run.encode_text(text)
        enc.profile = self.profile
        p = self.profile
        shades = []
        for t, tok in enumerate(enc.tokens):
            pairs = [(l, a) for l, a in zip(enc.latents[t].tolist(), enc.acts[t].tolist()) if l >= 0]
            if latent is not None:
                pairs = [(l, a) for l, a in pairs if l == latent] or [(latent, 0.0)]
            l, a = max(pairs, key=lambda la: p.relative(la[0], la[1]), default=(-1, 0.0))
            shades.append(TokenShade(tok, l, a, p.relative(l, a) if l >= 0 else 0.0))
        top = [(l, a, tok, p.relative(l, a), p.flags(l)) for l, a, tok in enc.top_latents(n_top, exclude_flagged=False)]
        return EncodedPage(text, shades, top, latent)

    def latent(self, latent: int) -> dict[str, Any]:
        """The dashboard's data of one latent (density, flags, position histogram, top contexts,
        buckets, logit effects, explanations), computed on first request."""
        latent = self.check_latent(latent)
        if latent not in self._latents:
            self._latents[latent] = self.pages.latent(latent, self.cache.record(latent))
        return self._latents[latent]

    @property
    def index(self) -> list[list]:
        """Every alive latent as [id, density, max activation, flags, top tokens, explanation]."""
        if self._index is None:
            from ..interp.dashboard import latent_index

            self._index = [row + [self.explanation(row[0])] for row in latent_index(self.cache, self.profile)]
        return self._index

    def index_row(self, latent: int) -> list | None:
        """The latent's :attr:`index` row (None: it never fired in the cache)."""
        if self._rows is None:
            self._rows = {row[0]: row for row in self.index}
        return self._rows.get(int(latent))

    def search(self, query: str) -> list[list]:
        """Every alive latent whose explanation or top tokens contain each word of ``query``
        (case-insensitive), or whose id is ``query``; strongest max activation first."""
        words = query.lower().split()
        if not words:
            return []
        hits = [row for row in self.index if str(row[0]) == query.strip()
                or all(w in f"{row[4]} {row[5]}".lower() for w in words)]
        return sorted(hits, key=lambda row: -row[2])

    def steer(self, latent: int, strength: float, prompt: str, max_new_tokens: int):
        """Both greedy continuations (:func:`~probsae.interp.steering.steered_generate`) with
        code strength × the latent's max activation over the cache; returns (Steered, max act).
        Greedy decoding is deterministic, so the last ``STEER_MEMO`` answers are kept (a page
        reloaded, or opened by a screenshot after a check, is not generated again)."""
        from ..interp.steering import check_steerable, steered_generate, steering_value

        latent = self.check_latent(latent)
        check_steerable(self.run.sae, self.run.model)
        if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise ConfigError(f"max_new_tokens must be 1..{MAX_NEW_TOKENS}, got {max_new_tokens}")
        if not np.isfinite(strength):
            raise ConfigError(f"strength must be a finite number, got {strength}")
        m = float(self.profile.max_act[latent])
        if m <= 0:
            raise ConfigError(f"latent {latent} never fired in the latent cache: its strength has no unit")
        key = (latent, float(strength), prompt, max_new_tokens)
        with self.lock:
            if key not in self._steered:
                if len(self._steered) >= STEER_MEMO:
                    self._steered.pop(next(iter(self._steered)))
                self._steered[key] = steered_generate(self.run.model, self.run.hook, self.run.sae, latent,
                                                      steering_value(strength, m), prompt, max_new_tokens,
                                                      prepend_bos=self.run.metadata.prepend_bos)
        return self._steered[key], m
