"""Percentile-bucket sampling of a latent's examples (paper §4.3; METHODS.md "Automatic interpretability").

Each latent's activating windows (window activation = max over its tokens of |code|) are ranked
and cut into ``n_buckets`` equal-count percentile buckets (0–20 %, …, 80–100 % for 5). Within each
bucket, explanation examples and held-out test examples are drawn separately and never overlap;
non-activating test windows come from the cache's stored sample and are split between buckets
without overlap when there are enough. Everything is seeded by (seed, latent).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .latent_cache import LatentCache, LatentRecord


@dataclass
class Example:
    """One window shown to an explainer or a scorer."""

    window: int
    acts: np.ndarray          # (W,) |code| per token (zeros for non-activating windows)
    max_act: float
    activating: bool
    bucket: int | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    """The architecture's extra per-token outputs (e.g. ``gate_logits``), (W,) each."""

    def to_json(self) -> dict:
        return {"window": int(self.window), "max_act": float(self.max_act),
                "activating": bool(self.activating), "bucket": self.bucket}


@dataclass
class BucketSample:
    """Examples of one percentile bucket of one latent."""

    bucket: int
    lo_pct: float
    hi_pct: float
    act_range: tuple[float, float]
    explain: list[Example]
    test: list[Example]
    nonactivating: list[Example]

    @property
    def label(self) -> str:
        return f"{self.lo_pct:g}-{self.hi_pct:g}%"


@dataclass
class LatentSample:
    latent: int
    n_activating: int
    buckets: list[BucketSample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def bucket_edges(n_buckets: int) -> list[tuple[float, float]]:
    step = 100.0 / n_buckets
    return [(round(i * step, 6), round((i + 1) * step, 6)) for i in range(n_buckets)]


def assign_buckets(max_acts: np.ndarray, n_buckets: int = 5, seed: int = 0) -> np.ndarray:
    """Percentile bucket (0 … n_buckets-1) of each window: by rank of its activation, equal
    counts per bucket; ties are broken by a seeded random order so equal values spread evenly."""
    n = len(max_acts)
    if n == 0:
        return np.zeros(0, np.int64)
    tie = np.random.default_rng(seed).random(n)
    order = np.lexsort((tie, max_acts))           # ascending activation
    ranks = np.empty(n, np.int64)
    ranks[order] = np.arange(n)
    return np.minimum((ranks * n_buckets) // n, n_buckets - 1)


def sample_latent(record: LatentRecord, nonact_windows: np.ndarray, *, n_buckets: int = 5,
                  n_explain: int = 10, n_test: int = 10, n_nonact: int | None = None,
                  seed: int = 0) -> LatentSample:
    """Draw explanation and held-out test examples from each percentile bucket of ``record``.

    A bucket with fewer than ``n_explain + n_test`` windows is split in proportion (at least one of
    each); a bucket with fewer than 2 windows is skipped (reported in ``skipped``).
    ``n_nonact`` non-activating test windows per bucket (default ``n_test``)."""
    n_nonact = n_test if n_nonact is None else n_nonact
    rng = np.random.default_rng([seed, record.latent])
    out = LatentSample(record.latent, len(record))
    max_acts = record.max_acts
    buckets = assign_buckets(max_acts, n_buckets, seed=seed + record.latent)
    nonact = rng.permutation(np.asarray(nonact_windows, dtype=np.int64))
    # non-activating windows: disjoint across buckets when there are enough, else reused
    per = n_nonact
    for b, (lo, hi) in enumerate(bucket_edges(n_buckets)):
        idx = np.flatnonzero(buckets == b)
        if len(idx) < 2:
            out.skipped.append(f"bucket {b}: {len(idx)} activating window(s)")
            continue
        idx = rng.permutation(idx)
        if len(idx) >= n_explain + n_test:
            n_e, n_t = n_explain, n_test
        else:
            n_e = max(1, min(n_explain, round(len(idx) * n_explain / (n_explain + n_test))))
            n_e = min(n_e, len(idx) - 1)
            n_t = min(n_test, len(idx) - n_e)
        ex_idx, te_idx = idx[:n_e], idx[n_e:n_e + n_t]

        def mk(i: int) -> Example:
            return Example(int(record.windows[i]), record.acts[i], float(max_acts[i]), True, b,
                           {k: v[i] for k, v in record.extras.items()})

        if len(nonact) >= per * n_buckets:
            na = nonact[b * per:(b + 1) * per]
        else:
            na = rng.permutation(nonact)[:per]
        W = record.acts.shape[1] if record.acts.ndim == 2 else 0
        out.buckets.append(BucketSample(
            b, lo, hi, (float(max_acts[idx].min()), float(max_acts[idx].max())),
            [mk(i) for i in ex_idx], [mk(i) for i in te_idx],
            [Example(int(w), np.zeros(W, np.float32), 0.0, False, b) for w in na]))
    return out


def choose_latents(cache: LatentCache, n: int, *, seed: int = 0, min_windows: int = 10,
                   latents: list[int] | None = None) -> list[int]:
    """``n`` random alive latents (the paper: 150) firing in at least ``min_windows`` windows,
    seeded; or the given ``latents`` (checked against the cache)."""
    stats = cache.stats()
    if latents:
        return [int(l) for l in latents]
    ok = np.flatnonzero(stats.window_counts >= min_windows)
    rng = np.random.default_rng(seed)
    return sorted(int(x) for x in rng.permutation(ok)[:n])
