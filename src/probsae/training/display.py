"""What ``train`` shows while it runs: one bar of tokens/s and, when several SAEs train on the
same batches (a sweep pass), one status line per SAE with its own loss, explained variance, L0
and alive count (never a sum over SAEs)."""

from __future__ import annotations

from .. import progress


def member_summary(rec: dict) -> str:
    """``loss 0.123 · EV 0.812 · L0 8.0 · alive 5,400 (recent 5,100)`` of one log record."""
    parts = [f"loss {rec['loss']:.4g}", f"EV {rec['explained_variance']:.3f}", f"L0 {rec['l0']:.1f}",
             f"alive {rec['alive']:,}"]
    if rec.get("alive_recent") is not None:
        parts[-1] += f" (last {short_tokens(rec['alive_window'])} tok: {rec['alive_recent']:,})"
    return " · ".join(parts)


def short_tokens(n: float) -> str:
    """4.1M, 256k, 512 (token counts in labels)."""
    return f"{n / 1e6:.3g}M" if n >= 1e6 else (f"{n / 1e3:.3g}k" if n >= 1e3 else f"{n:g}")


class TrainProgress:
    """The token bar plus, for several members, one line per member under it."""

    def __init__(self, requested: bool, total_tokens: int, done_tokens: int, names: list[str]):
        self.many = len(names) > 1
        desc = f"train {len(names)} SAEs" if self.many else "train"
        self.bar = progress.bar(total=total_tokens, desc=desc, unit="tok", unit_scale=True,
                                initial=done_tokens, requested=requested, mininterval=1.0)
        width = max((len(n) for n in names), default=0)
        self.names = [n.ljust(width) for n in names]
        self.lines = [progress.status_line(f"  {n}", i + 1, requested) for i, n in enumerate(self.names)] \
            if self.many else []

    def logged(self, index: int, rec: dict) -> None:
        """Show member ``index``'s latest log record."""
        if self.many:
            self.lines[index].set_description_str(f"  {self.names[index]}  {member_summary(rec)}")
        else:
            self.bar.set_postfix_str(member_summary(rec))

    def update(self, tokens: int) -> None:
        self.bar.update(tokens)

    def close(self) -> None:
        for line in self.lines:
            line.close()
        self.bar.close()
