"""The cost estimate of a latent cache: its line, and the cap on a default window count."""

from __future__ import annotations

from probsae.interp.cost import estimate


def test_estimate_line_has_the_counts_the_speed_and_the_minutes():
    e = estimate("latent cache", 4096, 256, first_windows=8, first_seconds=2.0)
    assert e.tokens_per_s == 1024 and e.n_windows == 4096 and e.capped_from is None
    assert abs(e.seconds - 1024) < 1e-6  # 4096 × 256 tokens at 1024 tokens/s
    assert e.line() == ("latent cache: 4,096 windows × 256 tokens = 1,048,576 tokens; measured 1,024 tokens/s "
                        "on the first batch → about 17.1 min")


def test_a_default_over_budget_is_capped_to_whole_batches():
    e = estimate("latent cache", 4096, 256, first_windows=8, first_seconds=2.0, budget_s=600, batch_size=8)
    assert e.n_windows == 2400 and e.capped_from == 4096 and e.seconds <= 600  # 600 s × 1024 tok/s / 256
    assert "capped from 4,096 windows to stay under 10 min; pass --n-windows to choose" in e.line()
    assert e.to_json() == {"tokens_per_s": 1024.0, "estimated_s": 600.0, "capped_from": 4096, "time_budget_s": 600}


def test_a_default_under_budget_or_an_explicit_count_is_kept():
    assert estimate("c", 100, 32, 16, 1.0, budget_s=600).n_windows == 100
    assert estimate("c", 4096, 256, 8, 2.0, budget_s=None).n_windows == 4096


def test_the_cap_keeps_at_least_the_first_batch():
    e = estimate("c", 4096, 256, first_windows=8, first_seconds=100.0, budget_s=10, batch_size=8)
    assert e.n_windows == 8 and e.capped_from == 4096


def test_window_count_is_the_users_or_the_capped_default():
    from probsae.interp.cost import DEFAULT_N_WINDOWS, TIME_BUDGET_S, window_count

    assert window_count(300) == (300, None)                       # the user's count: never capped
    assert window_count(None) == (DEFAULT_N_WINDOWS, TIME_BUDGET_S)
