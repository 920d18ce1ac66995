"""On-disk cache of SAE latent activations over token windows (the input of every interp step).

A cache directory holds::

    manifest.json                 metadata (model, hook, corpus, SAE, window length, chunk list)
    stats.safetensors             per-latent totals: token/window firing counts, max and sum of |act|
    nonactivating.safetensors     per latent, a seeded sample of window ids where it never fires
    positions.safetensors         per latent: |act| mass per window-position bin, firing tokens at a
                                  window's first encoded token, top token ids (``LatentProfile``;
                                  caches written before it have it computed from the triplets on
                                  first read)
    logits.safetensors            causal LMs: top positive/negative W_dec·W_U entries per latent (final norm folded)
    chunk_00000.safetensors       one chunk of ``chunk_windows`` consecutive windows:
        tokens          (n, W) int32   token ids of each window (-1 = padding)
        keep            (n, W) bool    tokens whose activations were encoded (not special, not pad)
        g0003/window    (m,) int64     sparse triplets of the latents in group 3
        g0003/pos       (m,) int16     (latent ids 3*G .. 4*G-1, G = ``group_size``),
        g0003/latent    (m,) int32     sorted by window then position
        g0003/act       (m,) float32   the SAE code (signed; firing = code != 0)
        g0003/<output>  (m,) float16   the architecture's extra per-token outputs at the firing
                                       token (e.g. ``gate_logits`` = LayerNorm(a), the gate's
                                       pre-temperature score; see ``interp.encode.token_outputs``)
    tokenizer/                    the tokenizer (so examples can be decoded without the model)

Triplets are partitioned by latent group inside each chunk, so reading one latent touches only
its group's tensors (safetensors reads them lazily), and nothing has to fit in memory at once.
"Activation" of a window for a latent = max over its tokens of |code| (codes of some architectures
can be negative; for codes ≥ 0, |code| = code).

This module is the format's reader (``LatentCache``); ``latent_cache_writer.build_latent_cache``
writes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileIOError, InputError
from .encode import token_outputs

MANIFEST = "manifest.json"
STATS = "stats.safetensors"
NONACT = "nonactivating.safetensors"
LOGITS = "logits.safetensors"
POSITIONS = "positions.safetensors"
MAX_POSITION_BINS = 256
"""Window positions are summed into at most this many equal bins (one bin per position up to it)."""
DENSE_DENSITY = 0.10
"""A latent is flagged *dense* when it fires on more than this fraction of encoded tokens (the
"fires on 10–50 % of tokens" range that Sun et al. 2025, *Dense SAE latents are features, not
bugs*, study as dense latents)."""
START_SHARE = 0.5
"""A latent is flagged *window start* when at least this share of its firing tokens sit at a
window's first encoded token (an artefact of how text is cut into windows)."""
POSITIONAL_MASS = 0.8
"""A latent is flagged *positional* when at least this share of its |activation| mass sits ..."""
POSITIONAL_BAND = 0.10
"""... within one contiguous band of at most this fraction of the window length (and it is not a
window-start latent, which has its own flag)."""
POSITIONAL_MIN_WINDOWS = 10
"""The positional flag needs the latent to fire in at least this many windows (a latent seen in
two windows is trivially concentrated)."""
N_TOP_TOKENS = 5
FORMAT = "probsae-latent-cache"
VERSION = 2


@dataclass
class LatentRecord:
    """Every activating window of one latent.

    Attributes:
        latent: latent index.
        windows: (n,) window ids, ascending.
        acts: (n, W) float32 |code| per token of each window (0 where the latent did not fire).
        signed_max: (n,) the signed code at each window's strongest token.
        extras: the architecture's extra per-token outputs, each (n, W) float32 at firing tokens
            (NaN elsewhere), e.g. ``gate_logits``.
    """

    latent: int
    windows: np.ndarray
    acts: np.ndarray
    signed_max: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def max_acts(self) -> np.ndarray:
        """(n,) window activation = max over the window's tokens of |code|."""
        return self.acts.max(axis=1) if len(self.windows) else np.zeros(0, np.float32)

    def __len__(self) -> int:
        return len(self.windows)


@dataclass
class LatentStats:
    """Per-latent totals over the whole cache (arrays of length d_sae)."""

    token_counts: np.ndarray
    window_counts: np.ndarray
    max_act: np.ndarray
    sum_act: np.ndarray
    n_tokens: int
    n_windows: int

    @property
    def density(self) -> np.ndarray:
        """Fraction of encoded tokens on which each latent fires."""
        return self.token_counts / max(self.n_tokens, 1)

    @property
    def alive(self) -> np.ndarray:
        return self.token_counts > 0


@dataclass
class LatentProfile:
    """What a researcher checks first about each latent, over the whole cache (arrays over d_sae).

    Attributes:
        density: fraction of encoded tokens on which the latent fires.
        max_act: largest |code| seen.
        pos_mass: (d_sae, bins) sum of |code| per window-position bin (bin b covers positions
            ``b*W//bins`` .. ``(b+1)*W//bins - 1``).
        start_share: share of the latent's firing tokens at a window's first encoded token.
        window_counts: windows in which the latent fires.
        top_tokens: (d_sae, N_TOP_TOKENS) ids of the distinct tokens of its strongest firings (-1 pad).
        window_len: W, the cache's window length.
    """

    density: np.ndarray
    max_act: np.ndarray
    pos_mass: np.ndarray
    start_share: np.ndarray
    window_counts: np.ndarray
    top_tokens: np.ndarray
    window_len: int

    @cached_property
    def band(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(first bin, last bin, share of mass) of each latent's narrowest contiguous band of bins
        holding ≥ ``POSITIONAL_MASS`` of its |act| mass, among bands of at most
        ``POSITIONAL_BAND`` × bins bins (the heaviest such band where none holds enough)."""
        bins = self.pos_mass.shape[1]
        width = max(1, int(POSITIONAL_BAND * bins))
        total = np.maximum(self.pos_mass.sum(axis=1, keepdims=True), 1e-30)
        cum = np.concatenate([np.zeros((len(total), 1)), np.cumsum(self.pos_mass / total, axis=1)], axis=1)
        best_w = np.full(len(total), width, np.int64)
        best_lo = np.zeros(len(total), np.int64)
        best_share = np.zeros(len(total))
        for w in range(width, 0, -1):   # narrower bands overwrite wider ones when they hold enough
            share = cum[:, w:] - cum[:, :-w]
            lo = share.argmax(axis=1)
            s = share[np.arange(len(total)), lo]
            take = (s >= POSITIONAL_MASS) | (w == width)
            best_w[take], best_lo[take], best_share[take] = w, lo[take], s[take]
        return best_lo, best_lo + best_w - 1, best_share

    @cached_property
    def dense(self) -> np.ndarray:
        return self.density > DENSE_DENSITY

    @cached_property
    def window_start(self) -> np.ndarray:
        return (self.start_share >= START_SHARE) & (self.window_counts > 0)

    @cached_property
    def positional(self) -> np.ndarray:
        share = self.band[2]
        return (share >= POSITIONAL_MASS) & (self.window_counts >= POSITIONAL_MIN_WINDOWS) & ~self.window_start

    @cached_property
    def flagged(self) -> np.ndarray:
        """Latents with any flag (dense, window start, positional)."""
        return self.dense | self.window_start | self.positional

    def flags(self, latent: int) -> list[str]:
        """The flags of one latent: ``dense``, ``window-start``, ``positional``."""
        names = (("dense", self.dense), ("window-start", self.window_start), ("positional", self.positional))
        return [n for n, a in names if a[int(latent)]]

    def bin_positions(self, b: int) -> tuple[int, int]:
        """(first, last) window position of bin ``b``."""
        bins = self.pos_mass.shape[1]
        return b * self.window_len // bins, (b + 1) * self.window_len // bins - 1

    def relative(self, latent: int, act: float) -> float:
        """|act| over the latent's max |act| in the cache (the larger of the two when the text
        beats the cache, so ≤ 1)."""
        return abs(act) / max(float(self.max_act[int(latent)]), abs(act), 1e-30)


def gate_beta_end(sae) -> float | None:
    """The gate temperature β an SAE with gate logits ends training with (its inference β, the
    ``gate_temperature`` it declares); None for architectures that declare no ``gate_logits``."""
    if "gate_logits" not in token_outputs(sae):
        return None
    return sae.gate_temperature


class LatentCache:
    """Read access to a cache written by :func:`~probsae.interp.latent_cache_writer.build_latent_cache`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        mp = self.path / MANIFEST
        if not mp.is_file():
            raise InputError(f"{self.path} is not a latent cache (no {MANIFEST})")
        self.manifest: dict[str, Any] = json.loads(mp.read_text())
        if self.manifest.get("format") != FORMAT:
            raise InputError(f"{mp}: not a probsae latent cache")
        self.d_sae: int = self.manifest["d_sae"]
        self.window_len: int = self.manifest["window_len"]
        self.group_size: int = self.manifest["group_size"]
        self.outputs: tuple[str, ...] = tuple(self.manifest.get("token_outputs") or ())
        self._tokens: np.ndarray | None = None
        self._keep: np.ndarray | None = None
        self._tokenizer = None
        self._nonact: np.ndarray | None = None

    # ---- sizes and stats --------------------------------------------------------------------
    @property
    def n_windows(self) -> int:
        return sum(c["n_windows"] for c in self.manifest["chunks"])

    def stats(self) -> LatentStats:
        from safetensors.torch import load_file

        s = load_file(str(self.path / STATS))
        return LatentStats(s["token_counts"].numpy(), s["window_counts"].numpy(), s["max_act"].numpy(),
                           s["sum_act"].numpy(), int(self.manifest["n_tokens"]), self.n_windows)

    def profile(self) -> LatentProfile:
        """The :class:`LatentProfile` (``positions.safetensors``; computed from the triplets and
        saved, where the directory is writable, for a cache written before that file existed)."""
        from safetensors.numpy import load_file

        path = self.path / POSITIONS
        if path.is_file():
            p = load_file(str(path))
        else:
            p = compute_positions(self)
            from safetensors.numpy import save_file

            from ..io import atomic_write
            try:
                atomic_write(path, lambda tmp: save_file(p, str(tmp)))
            except FileIOError:
                pass   # a read-only cache: recomputed on each open
        st = self.stats()
        ww = np.maximum(st.token_counts, 1)
        return LatentProfile(st.density, st.max_act, p["pos_mass"], p["start_tokens"] / ww, st.window_counts,
                             p["top_tokens"], self.window_len)

    # ---- tokens -----------------------------------------------------------------------------
    def _load_tokens(self) -> None:
        from safetensors import safe_open

        toks, keeps = [], []
        for c in self.manifest["chunks"]:
            with safe_open(str(self.path / c["file"]), framework="np") as f:
                toks.append(f.get_tensor("tokens"))
                keeps.append(f.get_tensor("keep"))
        self._tokens = np.concatenate(toks)
        self._keep = np.concatenate(keeps)

    def tokens(self, windows: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(token ids (n, W) with -1 padding, keep mask (n, W)) of the given windows."""
        if self._tokens is None:
            self._load_tokens()
        idx = np.asarray(windows, dtype=np.int64)
        return self._tokens[idx], self._keep[idx]

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            tdir = self.path / "tokenizer"
            if tdir.is_dir():
                self._tokenizer = AutoTokenizer.from_pretrained(str(tdir))
            else:
                from ..data.models import load_model
                self._tokenizer = load_model(self.manifest["model"]).tokenizer
        return self._tokenizer

    def token_strings(self, window: int) -> list[str]:
        """Display strings of a window's tokens (special tokens and padding as ''), concatenating
        to the decoded text."""
        ids, keep = self.tokens([window])
        return token_pieces(self.tokenizer, ids[0], keep[0])

    def text(self, window: int) -> str:
        """Decoded text of a window (special tokens dropped)."""
        return "".join(self.token_strings(window)).strip()

    # ---- latents ----------------------------------------------------------------------------
    def group_triplets(self, group: int) -> dict[str, np.ndarray]:
        from safetensors import safe_open

        keys = ["window", "pos", "latent", "act", *self.outputs]
        parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for c in self.manifest["chunks"]:
            with safe_open(str(self.path / c["file"]), framework="np") as f:
                for k in keys:
                    parts[k].append(f.get_tensor(f"g{group:04d}/{k}"))
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}

    def records(self, latents: Iterable[int]) -> dict[int, LatentRecord]:
        """:class:`LatentRecord` of each requested latent (reads each latent group once)."""
        latents = sorted({int(l) for l in latents})
        for l in latents:
            if not 0 <= l < self.d_sae:
                raise InputError(f"latent {l} out of range 0..{self.d_sae - 1}")
        out: dict[int, LatentRecord] = {}
        by_group: dict[int, list[int]] = {}
        for l in latents:
            by_group.setdefault(l // self.group_size, []).append(l)
        W = self.window_len
        for g, ls in by_group.items():
            t = self.group_triplets(g)
            for l in ls:
                m = t["latent"] == l
                win, pos, act = t["window"][m], t["pos"][m].astype(np.int64), t["act"][m]
                uw, inv = np.unique(win, return_inverse=True)
                acts = np.zeros((len(uw), W), np.float32)
                acts[inv, pos] = np.abs(act)
                signed = np.zeros((len(uw), W), np.float32)
                signed[inv, pos] = act
                arg = acts.argmax(axis=1) if len(uw) else np.zeros(0, np.int64)
                extras = {}
                for name in self.outputs:
                    extras[name] = np.full((len(uw), W), np.nan, np.float32)
                    extras[name][inv, pos] = t[name][m].astype(np.float32)
                out[l] = LatentRecord(l, uw, acts, signed[np.arange(len(uw)), arg], extras)
        return out

    def record(self, latent: int) -> LatentRecord:
        return self.records([latent])[int(latent)]

    def logit_effects(self) -> dict[str, np.ndarray] | None:
        """Top positive/negative W_dec·W_U entries per latent (final norm folded; ``pos_ids``, ``pos_vals``,
        ``neg_ids``, ``neg_vals``, each (d_sae, n)), or None (not a causal LM: see
        ``manifest["logit_note"]``)."""
        if not self.manifest.get("logit_effects"):
            return None
        from safetensors.numpy import load_file

        return load_file(str(self.path / LOGITS))

    def first_positions(self) -> np.ndarray:
        """(n_windows,) the first encoded position of each window (1 after a [CLS]/BOS, 0 without
        one; -1 for a window with nothing encoded)."""
        if self._tokens is None:
            self._load_tokens()
        keep = self._keep
        first = keep.argmax(axis=1)
        return np.where(keep.any(axis=1), first, -1)

    def nonactivating(self, latent: int) -> np.ndarray:
        """Stored sample of window ids where ``latent`` never fires (may be shorter than asked
        for a latent that fires almost everywhere)."""
        if self._nonact is None:
            from safetensors.torch import load_file
            self._nonact = load_file(str(self.path / NONACT))["windows"].numpy()
        row = self._nonact[int(latent)]
        return row[row >= 0]


def compute_positions(cache: LatentCache) -> dict[str, np.ndarray]:
    """From the stored triplets: per latent, |act| mass per window-position bin (``pos_mass``),
    firing tokens at a window's first encoded token (``start_tokens``) and the distinct token ids
    of its strongest firings (``top_tokens``). One pass over the latent groups."""
    W, d = cache.window_len, cache.d_sae
    bins = min(W, MAX_POSITION_BINS)
    first = cache.first_positions()
    pos_mass = np.zeros((d, bins), np.float64)
    start = np.zeros(d, np.int64)
    top = np.full((d, N_TOP_TOKENS), -1, np.int64)
    for g in range((d + cache.group_size - 1) // cache.group_size):
        t = cache.group_triplets(g)
        if not len(t["latent"]):
            continue
        lat, pos, win = t["latent"].astype(np.int64), t["pos"].astype(np.int64), t["window"].astype(np.int64)
        a = np.abs(t["act"]).astype(np.float64)
        pos_mass += np.bincount(lat * bins + pos * bins // W, weights=a, minlength=d * bins).reshape(d, bins)
        start += np.bincount(lat[pos == first[win]], minlength=d)
        ids = cache.tokens(win)[0][np.arange(len(win)), pos]
        order = np.lexsort((-a, lat))
        lat, ids = lat[order], ids[order]
        bounds = np.searchsorted(lat, np.arange(d + 1))
        for l in np.unique(lat):
            seen = list(dict.fromkeys(ids[bounds[l]:bounds[l + 1]][:64].tolist()))[:N_TOP_TOKENS]
            top[l, :len(seen)] = seen
    return {"pos_mass": pos_mass.astype(np.float32), "start_tokens": start, "top_tokens": top}


def token_pieces(tokenizer, ids: np.ndarray, keep: np.ndarray) -> list[str]:
    """Display strings of ``ids`` ('' for special/padding) whose concatenation is the decoded text.

    Uses incremental decoding (decode of each prefix), which handles byte-level BPE and WordPiece
    ('##' continuations) alike; falls back to per-token decoding if a prefix is not stable."""
    kept = [int(t) for t, k in zip(ids, keep) if k and t >= 0]
    pieces: list[str] = []
    prev = ""
    ok = True
    for i in range(len(kept)):
        cur = tokenizer.decode(kept[: i + 1], clean_up_tokenization_spaces=False)
        if not cur.startswith(prev):
            ok = False
            break
        pieces.append(cur[len(prev):])
        prev = cur
    if not ok:
        pieces = []
        for t in kept:
            p = tokenizer.decode([t], clean_up_tokenization_spaces=False)
            pieces.append(p[2:] if p.startswith("##") else (" " + p if pieces and not p.startswith(" ") else p))
    if pieces and pieces[0].startswith("##"):   # a window that starts inside a WordPiece word
        pieces[0] = pieces[0][2:]
    out: list[str] = []
    j = 0
    for t, k in zip(ids, keep):
        if k and t >= 0:
            out.append(pieces[j])
            j += 1
        else:
            out.append("")
    return out
