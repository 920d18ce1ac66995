"""Ctrl-C: every command exits 130 with one line saying what its interruption leaves behind and
how to go on; only the commands that checkpoint (train, sweep) speak of a checkpoint (issue 24,
finding 5: the old line promised "its last checkpoint" for every command)."""

from __future__ import annotations

import importlib

import pytest

from probsae.cli.main import main


def _interrupt(*_a, **_kw):
    raise KeyboardInterrupt


CASES = {  # module: (argv, words the line must hold)
    "cache": (["cache", "--model", "m", "--hook", "resid_pre.1", "--corpus", "c.txt"],
              ["the extraction resumes after its last finished shard"]),
    "sweep": (["sweep", "tiny.toml"], ["the others resume from their last checkpoint", "metrics.json are kept"]),
    "eval": (["eval", "RUN"], ["no result was written"]),
    "report": (["report", "SWEEP"], ["may be incomplete", "run the same command again"]),
    "dashboard": (["dashboard", "RUN"], ["latent cache is kept", "--force"]),
    "export": (["export", "RUN", "--format", "saelens", "--out", "EXP"], ["EXP may hold part of the export", "--force"]),
    "import_": (["import", "SRC", "--format", "saelens", "--out", "DEST"], ["DEST may hold part", "--force"]),
    "corpus": (["corpus", "build", "offline-en"], [".deb files downloaded so far are kept"]),
    "autointerp": (["autointerp", "RUN"], ["no Table 2 was written"]),
}


@pytest.mark.parametrize("module", sorted(CASES))
def test_ctrl_c_says_what_applies_to_the_command(module, monkeypatch, capsys):
    argv, words = CASES[module]
    monkeypatch.setattr(importlib.import_module(f"probsae.cli.{module}"), "run", _interrupt)
    capsys.readouterr()
    assert main(argv) == 130
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"probsae {argv[0]}: interrupted; "), err
    for w in words:
        assert w in lines[0], lines[0]
    assert ("checkpoint" in lines[0]) == (module == "sweep"), lines[0]


def test_ctrl_c_in_train_names_the_run_directory_and_its_checkpoint_interval(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("probsae.cli.train._train", _interrupt)
    out = tmp_path / "run"
    argv = ["train", "--arch", "topk", "--k", "2", "--model", "m", "--hook", "resid_pre.1", "--corpus", "c.txt",
            "--checkpoint-every", "40", "--out", str(out)]
    capsys.readouterr()
    assert main(argv) == 130
    line = capsys.readouterr().err.strip()
    assert line == (f"probsae train: interrupted; {out} resumes from its last checkpoint (one every 40 steps): "
                    "run the same command again to continue")


def test_sigterm_stops_any_command_with_its_line_and_exit_143(monkeypatch, capsys):
    """Issue 24, finding 17 beyond train: SIGTERM (kill, Slurm, Kubernetes) unwinds every command
    like Ctrl-C and says what applies, exit 143; the handler found before is restored."""
    import os
    import signal
    import time

    def terminated(args):
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal to this process
        time.sleep(5)  # the handler interrupts this at once
        raise AssertionError("SIGTERM did not stop the command")

    class DefaultTerm(BaseException):
        """Stands for the default SIGTERM action (ending the process) while the test runs."""

    def default(signum, frame):
        raise DefaultTerm()

    monkeypatch.setattr("probsae.cli.cache.run", terminated)
    before = signal.signal(signal.SIGTERM, default)
    try:
        capsys.readouterr()
        t0 = time.monotonic()
        assert main(CASES["cache"][0]) == 143
        assert time.monotonic() - t0 < 3
        assert signal.getsignal(signal.SIGTERM) is default  # the command restored the handler it found
    finally:
        signal.signal(signal.SIGTERM, before)
    line = capsys.readouterr().err.strip()
    assert line == ("probsae cache: terminated (SIGTERM); the extraction resumes after its last finished shard: "
                    "run the same command again to continue")
