"""Step schedules: learning rate (warm-up then cosine) and the gate temperature (held, then
exponential decay). Pure functions of the step, shared by the trainer and the architectures."""

from __future__ import annotations

import math


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str = "cosine",
              min_ratio: float = 0.0) -> float:
    """Multiplier of the base LR at ``step`` (0-based): linear warm-up from 1/warmup to 1 over
    ``warmup_steps``, then cosine decay to ``min_ratio`` at ``total_steps`` (or constant)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"unknown lr schedule {schedule!r}; choose cosine or constant")
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def exp_anneal(step: int, total_steps: int, warmup_steps: int, start: float, end: float) -> float:
    """Paper §3.3: held at ``start`` during warm-up, then β_t = β_0 (β_T/β_0)^{t/T} with t counted
    from the end of warm-up and T the steps after warm-up, so β reaches ``end`` at the last step."""
    if step < warmup_steps:
        return start
    span = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return start * (end / start) ** progress
