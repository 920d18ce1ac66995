"""Issue 24, finding 15: fields of the wrong type in a run's files are one clear line naming the file
(and line or field), never a TypeError, OverflowError or KeyError."""

import json

import pytest

from probsae.cli.main import main


@pytest.mark.parametrize("line, needle", [
    ('{"step": "x"}', "'step' must be a non-negative integer (found a string"),
    ('{"step": 1e400}', "'step' must be a non-negative integer (found a float: Infinity)"),
    ('{"step": true, "loss": "a"}', "'step' must be a non-negative integer (found a boolean"),
    ('{"step": 2, "loss": "a", "tokens": 64}', "'loss' must be a number (found a string"),
    ('{"step": 2, "loss": 0.5}', "has no 'tokens'"),
])
def test_wrong_typed_log_record_on_resume(run_copy, train_args, fails_cleanly, line, needle):
    log = run_copy / "log.jsonl"
    lines = log.read_text().splitlines()
    lines.insert(1, line)       # not the last line (a torn last line is dropped, by design)
    log.write_text("\n".join(lines) + "\n")
    before = log.read_bytes()
    fails_cleanly(train_args(run_copy), "log.jsonl line 2", needle)
    assert log.read_bytes() == before   # nothing rewritten
