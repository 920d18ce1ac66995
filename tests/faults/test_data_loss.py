"""Issue 14, data loss: nothing overwrites what is not ours, and no rewrite can tear a file."""

import errno
import json
import os
from pathlib import Path

import pytest

from probsae.cli.main import main


def test_train_refuses_a_directory_holding_the_users_files(tmp_path, train_args, fails_cleanly):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')
    (mine / "log.jsonl").write_text('{"my": "log"}\n')
    fails_cleanly(train_args(mine), "is not empty (config.json, log.jsonl)", "--force")
    assert (mine / "config.json").read_text() == '{"my": "settings"}'
    assert (mine / "log.jsonl").read_text() == '{"my": "log"}\n'
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "log.jsonl"]
    assert main(train_args(mine, "--force")) == 0  # asked for explicitly


def test_export_refuses_a_directory_holding_the_users_files(reference, tmp_path, capsys, fails_cleanly):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "cfg.json").write_text("mine")
    argv = ["export", str(reference), "--format", "saelens", "--out", str(out)]
    fails_cleanly(argv, "is not empty (cfg.json)", "--force")
    assert (out / "cfg.json").read_text() == "mine"
    fresh = tmp_path / "fresh"
    assert main(["export", str(reference), "--format", "saelens", "--out", str(fresh)]) == 0
    assert main(["export", str(reference), "--format", "saelens", "--out", str(fresh)]) == 0  # its own export
    assert main([*argv, "--force"]) == 0


class Killed(BaseException):
    """Stands in for SIGKILL inside a write (tests/faults/test_kills.py uses a real one)."""


def tear_writes(monkeypatch, name, exc):
    """Every text write to a file whose name contains ``name`` writes half its content, then
    raises ``exc`` (a kill or a full disk in the middle of the write)."""
    real = Path.write_text

    def torn(self, data, *a, **kw):
        if name in self.name:
            real(self, data[: len(data) // 2], *a, **kw)
            raise exc
        return real(self, data, *a, **kw)

    monkeypatch.setattr(Path, "write_text", torn)


def test_a_kill_while_the_log_is_rewritten_on_resume_loses_nothing(run_copy, train_args, monkeypatch, capsys):
    before = (run_copy / "log.jsonl").read_bytes()
    tear_writes(monkeypatch, "log.jsonl", Killed())  # resuming rewrites the log (records after the checkpoint go)
    with pytest.raises(Killed):
        main(train_args(run_copy))
    assert (run_copy / "log.jsonl").read_bytes() == before
    monkeypatch.undo()
    out = run_copy.parent / "exported"
    assert main(["export", str(run_copy), "--format", "saelens", "--out", str(out)]) == 0
    meta = json.loads((out / "cfg.json").read_text())
    assert meta["model_name"].endswith("model") and meta["hook_name"] == "blocks.1.hook_resid_pre"


def test_export_warns_when_a_run_records_no_model_or_hook(run_copy, tmp_path, capsys):
    import probsae
    from probsae.saes import SAEMetadata

    sae = probsae.load_sae(run_copy)
    assert sae.metadata.hook_name and sae.metadata.model_name   # training recorded them
    sae.metadata = SAEMetadata()                                 # an SAE saved without them (older probsae)
    sae.save(run_copy)
    (run_copy / "run.json").unlink()
    (run_copy / "log.jsonl").unlink()
    assert main(["export", str(run_copy), "--format", "saelens", "--out", str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "records no hook point and no model" in err and "--hook-name" in err


def test_metrics_json_is_replaced_atomically(run_copy, train_args, monkeypatch, fails_cleanly):
    before = (run_copy / "metrics.json").read_bytes()
    tear_writes(monkeypatch, "metrics.json", OSError(errno.ENOSPC, "No space left on device"))
    fails_cleanly(train_args(run_copy), "cannot write", "metrics.json", "(disk full)")
    assert (run_copy / "metrics.json").read_bytes() == before
    assert not [p for p in os.listdir(run_copy) if "probsae-tmp" in p]


def test_report_refuses_a_directory_holding_the_users_files(run_copy, tmp_path, capsys, fails_cleanly):
    """As dashboard and autointerp (issue 24, finding 14): `report --out` into a folder of the
    user's own report.md and figures exits 2 before any work and leaves them alone; --force
    writes; a folder holding a report (a "Made by:" line, even below hand notes) is rewritten."""
    runs = tmp_path / "sweep" / "runs"
    for name in ("a", "b"):
        (runs / name).mkdir(parents=True)
        (runs / name / "metrics.json").write_text((run_copy / "metrics.json").read_text())
    mine = tmp_path / "paper"
    mine.mkdir()
    (mine / "report.md").write_text("# my draft\n")
    (mine / "pareto.png").write_bytes(b"my figure")
    argv = ["report", str(tmp_path / "sweep"), "--out", str(mine)]
    fails_cleanly(argv, "is not empty (pareto.png, report.md)", "not a probsae report directory", "--force")
    assert (mine / "report.md").read_text() == "# my draft\n" and (mine / "pareto.png").read_bytes() == b"my figure"
    assert sorted(p.name for p in mine.iterdir()) == ["pareto.png", "report.md"]
    assert main([*argv, "--force"]) == 0
    md = (mine / "report.md").read_text()
    assert "Made by: `probsae report" in md
    (mine / "report.md").write_text("> a note added by hand\n\n" + md)
    assert main(argv) == 0  # its own report, hand notes and all
