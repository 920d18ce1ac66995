"""probsae.runs.lock: one writer per run directory."""

import errno
import json
import os
import socket
import subprocess
import sys

import pytest

from probsae.errors import RunInUseError
from probsae.runs import lock as lock_mod
from probsae.runs.lock import LOCK_FILE, RunDirLock, locked_run_dirs


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_lock_records_its_holder_and_release_removes_what_acquire_created(tmp_path):
    run = tmp_path / "a" / "b" / "run"
    with RunDirLock(run, "probsae train --out x") as lk:
        assert lk.held
        rec = json.loads((run / LOCK_FILE).read_text())
        assert rec["pid"] == os.getpid() and rec["host"] == socket.gethostname()
        assert rec["command"] == "probsae train --out x" and rec["started"].endswith("Z")
    assert not (tmp_path / "a").exists()  # nothing was written: every directory it created is gone
    with RunDirLock(run):
        (run / "run.json").write_text("{}")
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]  # kept, only the lock file is gone


def test_a_held_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    with RunDirLock(tmp_path / "run", "probsae train first"):
        with pytest.raises(RunInUseError, match=f"in use by another probsae process \\(pid {os.getpid()} on host "
                                                f".*: probsae train first\\)"):
            RunDirLock(tmp_path / "run").acquire()
    RunDirLock(tmp_path / "run").acquire().release()  # free again


def test_a_record_left_by_a_killed_holder_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    pid = dead_pid()
    (run / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    with RunDirLock(run):
        assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"was locked by pid {pid}" in capsys.readouterr().err


def test_without_flock_the_record_is_the_lock(tmp_path, monkeypatch):
    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_mod.fcntl, "flock", no_flock)
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(RunInUseError, match=f"pid {os.getppid()}"):  # alive on this host
        RunDirLock(run).acquire()
    (run / LOCK_FILE).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    with RunDirLock(run):  # no longer running: taken over
        assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_grid_gives_back_the_locks_it_took_when_one_is_busy(tmp_path):
    dirs = [tmp_path / "k2", tmp_path / "k3", tmp_path / "k4"]
    with RunDirLock(dirs[1]):
        with pytest.raises(RunInUseError, match="k3"):
            with locked_run_dirs(dirs):
                pass
        assert not dirs[0].exists() and not dirs[2].exists()
    with locked_run_dirs(dirs) as locks:
        assert all(lk.held for lk in locks)
