"""What a latent cache costs: the time estimate printed before the long work, from the speed
measured on its first batch, and the cap on a default window count that keeps it under a budget."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_N_WINDOWS = 4096
"""Windows a latent cache encodes when the user does not choose (``--n-windows`` left out);
capped so that encoding them takes about :data:`TIME_BUDGET_S` at most."""

TIME_BUDGET_S = 600.0
"""Seconds a latent cache built with the default window count may take (10 min): when the speed
measured on the first batch says more, the default is capped. An explicit count is never changed."""


def window_count(n_windows: int | None) -> tuple[int, float | None]:
    """(windows to encode, time budget) for a latent cache: the user's count as given (no
    budget), or :data:`DEFAULT_N_WINDOWS` capped to :data:`TIME_BUDGET_S` when none was given."""
    return (n_windows, None) if n_windows else (DEFAULT_N_WINDOWS, TIME_BUDGET_S)


@dataclass(frozen=True)
class Estimate:
    """The cost of encoding a latent cache, measured on its first batch."""

    job: str
    """What is being built (``latent cache``), the line's prefix."""
    n_windows: int
    """Windows to encode (after the cap, if any)."""
    window_len: int
    """Tokens per window (every position runs through the model)."""
    tokens_per_s: float
    """Model + SAE speed on the first batch (its tokens over its wall-clock seconds)."""
    capped_from: int | None = None
    """The default window count before the cap; None when nothing was capped."""
    budget_s: float | None = None
    """The time budget that capped it (None: the count was the user's)."""

    @property
    def seconds(self) -> float:
        return self.n_windows * self.window_len / max(self.tokens_per_s, 1e-9)

    def line(self) -> str:
        """``latent cache: N windows × W tokens = T tokens; measured S tokens/s on the first batch → about M min``
        (plus what was capped and how to choose)."""
        s = (f"{self.job}: {self.n_windows:,} windows × {self.window_len} tokens = {self.n_windows * self.window_len:,} "
             f"tokens; measured {self.tokens_per_s:,.0f} tokens/s on the first batch → about {self.seconds / 60:.1f} min")
        if self.capped_from is not None:
            s += (f" (capped from {self.capped_from:,} windows to stay under {self.budget_s / 60:g} min; "
                  "pass --n-windows to choose)")
        return s

    def to_json(self) -> dict:
        return {"tokens_per_s": round(self.tokens_per_s, 1), "estimated_s": round(self.seconds, 1),
                "capped_from": self.capped_from, "time_budget_s": self.budget_s}


def estimate(job: str, n_windows: int, window_len: int, first_windows: int, first_seconds: float,
             budget_s: float | None = None, batch_size: int = 1) -> Estimate:
    """The estimate after a first batch of ``first_windows`` windows took ``first_seconds``. With a
    ``budget_s`` (the count is a default), ``n_windows`` is capped to the whole batches that fit in
    it (at least the first batch); without one it is kept."""
    rate = first_windows * window_len / max(first_seconds, 1e-9)
    est = Estimate(job, n_windows, window_len, rate)
    if budget_s is None or est.seconds <= budget_s:
        return est
    fit = int(budget_s * rate / window_len) // max(batch_size, 1) * max(batch_size, 1)
    cap = min(n_windows, max(fit, first_windows))
    return Estimate(job, cap, window_len, rate, capped_from=n_windows, budget_s=budget_s) if cap < n_windows else est
