"""JSONL run log (always written when a path is given) and the in-memory history."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SAEFileError
from ..io import append_line, atomic_write_jsonl, dumps_json, ensure_dir, io_error, json_type_name, read_jsonl


class JsonlLogger:
    """Appends one strict-JSON object per line, so a killed run keeps its log (a kill can tear
    only the last line, which ``read`` drops); rewrites (``truncate_after``) are atomic."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        if self.path:
            ensure_dir(self.path.parent, "log directory")

    def write(self, record: dict[str, Any]) -> None:
        if self.path:
            append_line(self.path, dumps_json(record, indent=None))

    def reset(self) -> None:
        """Remove the log of an earlier attempt (a fresh start must not append to stale records)."""
        if self.path and self.path.is_file():
            try:
                self.path.unlink()
            except OSError as e:
                raise io_error("remove", self.path, e) from e

    def read(self) -> list[dict[str, Any]]:
        """The records. A last line that is not valid JSON (torn by a kill) is dropped; any other
        invalid line, invalid UTF-8 or a line that is not a JSON object is a ``SAEFileError``."""
        return read_log_records(self.path) if self.path else []

    def truncate_after(self, step: int) -> None:
        """Drop step records beyond ``step`` (written after the checkpoint we resume from); the
        rewrite is atomic, so a kill during it keeps the old log."""
        if not self.path or not self.path.is_file():
            return
        kept = [r for r in self.read() if r.get("step", 0) <= step or r.get("event")]
        atomic_write_jsonl(self.path, kept)


def read_log_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL log (``io.read_jsonl``: a torn last line is dropped), every step
    record checked (``step_record_problem``); [] if the file does not exist."""
    return read_jsonl(path, SAEFileError, check=_step_problem)


def _step_problem(rec: dict[str, Any]) -> str | None:
    return step_record_problem(rec) if "step" in rec and not rec.get("event") else None


def step_record_problem(rec: dict[str, Any]) -> str | None:
    """What is wrong with a per-step record (None if nothing): ``step`` and ``tokens`` are
    non-negative integers, every other field a finite number or null (what ``Member.log`` writes)."""
    for key in ("step", "tokens"):
        if key not in rec:
            return f"the step record has no {key!r}"
        v = rec[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            return f"{key!r} must be a non-negative integer (found {json_type_name(v)}: {json.dumps(v)[:40]})"
    for key, v in rec.items():
        if v is None or key in ("step", "tokens"):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"{key!r} must be a number (found {json_type_name(v)}: {json.dumps(v)[:40]})"
    return None


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
