"""JSONL run log (always written when a path is given) and the in-memory history."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import atomic_write_text, strict_json


class JsonlLogger:
    """Appends one JSON object per line and flushes, so a killed run keeps its log."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.path:
            with self.path.open("a") as f:
                f.write(json.dumps(strict_json(record)) + "\n")

    def reset(self) -> None:
        """Remove the log of an earlier attempt (a fresh start must not append to stale records)."""
        if self.path and self.path.is_file():
            self.path.unlink()

    def read(self) -> list[dict[str, Any]]:
        if not self.path or not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a kill
        return out

    def truncate_after(self, step: int) -> None:
        """Drop step records beyond ``step`` (written after the checkpoint we resume from)."""
        if not self.path or not self.path.is_file():
            return
        kept = [r for r in self.read() if r.get("step", 0) <= step or r.get("event")]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


@dataclass
class TrainHistory:
    """Log records of one SAE's training (``records``); ``final`` is the last step record."""

    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def steps(self) -> list[dict[str, Any]]:
        return step_records(self.records)

    @property
    def final(self) -> dict[str, Any]:
        steps = self.steps
        return steps[-1] if steps else {}

    def column(self, key: str) -> list[Any]:
        return [r.get(key) for r in self.steps]


def step_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-step records of a log (not its events such as ``start``)."""
    return [r for r in records if "step" in r and not r.get("event")]
