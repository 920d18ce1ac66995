"""Issue 24, finding 15: fields of the wrong type in a run's files are one clear line naming the file
(and line or field), never a TypeError, OverflowError or KeyError."""

import json

import pytest

from probsae.cli.main import main


@pytest.mark.parametrize("line, needle", [
    ('{"step": "x"}', "'step' must be a non-negative integer (found a string"),
    ('{"step": 1e400}', "'step' must be a non-negative integer (found a number: Infinity)"),
    ('{"step": true, "loss": "a"}', "'step' must be a non-negative integer (found true/false"),
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


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m["heldout"].update(fvu="abc"), "field 'heldout.fvu' holds a string (\"abc\"), expected a finite number"),
    (lambda m: m.pop("heldout"), "has no field 'heldout'"),
    (lambda m: m["hparams"].update(k="x"), "field 'hparams.k' holds a string (\"x\"), expected a non-negative integer"),
    (lambda m: m["heldout"].update(alive=True), "field 'heldout.alive' holds true/false"),
])
def test_wrong_typed_metrics_in_a_report(run_copy, tmp_path, fails_cleanly, edit, needle):
    """A report refuses (rc 2, naming the run and the field) rather than skipping the run: a
    metrics.json is written atomically, so a wrong field was edited in, and a report silently
    missing a run would claim less than was measured (docs/EXPERIMENTS.md)."""
    runs = tmp_path / "sweep" / "runs"
    runs.mkdir(parents=True)
    for name in ("a", "b"):
        (runs / name).mkdir()
        (runs / name / "metrics.json").write_text((run_copy / "metrics.json").read_text())
    m = json.loads((runs / "b" / "metrics.json").read_text())
    edit(m)
    (runs / "b" / "metrics.json").write_text(json.dumps(m))
    fails_cleanly(["report", str(tmp_path / "sweep"), "--out", str(tmp_path / "rep")], "run b:", needle)
    assert not (tmp_path / "rep" / "report.md").exists()
