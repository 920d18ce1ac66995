"""`probsae autointerp` end to end against misbehaving endpoints and output folders (issue 24):
Ctrl-C stops sending at once with a message about what was saved (finding 5), a file:// endpoint
is refused (finding 6), and a folder of the user's own files is never overwritten without --force
(finding 14)."""

import importlib.util
import json
import os
import signal
import threading
import time
from pathlib import Path

from probsae.cli.main import main

_spec = importlib.util.spec_from_file_location("interp_bad_http", Path(__file__).with_name("bad_http.py"))
bad_http = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bad_http)


def _argv(run, base_url, tmp_path, *extra):
    return ["autointerp", str(run), "--llm-base-url", base_url, "--llm-model", "fake", "--n-explain", "3",
            "--n-test", "3", "--n-windows", "160", "--llm-cache", str(tmp_path / "llm_cache"), "--no-progress", *extra]


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def test_sigint_stops_autointerp_at_once_and_says_what_was_saved(trained_run, tmp_path, capsys, sigint_default):
    """Ctrl-C 2 replies into a run with --llm-concurrency 2 --n-latents 6 (30 explanation requests):
    the 2 requests in flight are cut off, nothing more is sent, the command exits 130 at once, and
    the message names the response cache that a rerun resumes from (no "last checkpoint")."""
    srv = bad_http.BadHTTP([], hold_s=2.0, hold_from=2, lifetime_s=30)
    sent = {}

    def interrupt():
        t_end = time.monotonic() + 25
        while srv.n_requests < 4 and time.monotonic() < t_end:
            time.sleep(0.01)
        sent["t"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    try:
        argv = _argv(trained_run, srv.base_url, tmp_path, "--llm-concurrency", "2", "--n-latents", "6",
                     "--out", str(tmp_path / "table"))
        capsys.readouterr()
        threading.Thread(target=interrupt, daemon=True).start()
        rc = main(argv)
        took = time.monotonic() - sent["t"]
        err = capsys.readouterr().err
        assert rc == 130 and took < 1.0, (rc, took)
        time.sleep(1.0)
        assert srv.n_requests == 4, "requests were sent after Ctrl-C"
        line = _one_error_line(err)
        assert "interrupted" in line and "checkpoint" not in line
        assert f"response cache {tmp_path / 'llm_cache'} (2 in all)" in line and "rerun the same command" in line
        assert not (tmp_path / "table" / "table2.md").exists()
    finally:
        srv.stop()


def test_a_file_url_endpoint_is_refused(trained_run, tmp_path, capsys):
    reply = tmp_path / "v1" / "chat" / "completions"
    reply.parent.mkdir(parents=True)
    reply.write_bytes(bad_http.GOOD)
    assert main(_argv(trained_run, f"file://{tmp_path}/v1", tmp_path, "--n-latents", "2",
                      "--out", str(tmp_path / "table"))) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "must be an http:// or https:// URL" in line and "file://" in line


def test_autointerp_out_of_user_files_is_refused_unless_force(trained_run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "table2.md").write_text("my own table\n")
    (mine / "notes.txt").write_text("keep\n")
    srv = bad_http.BadHTTP([], lifetime_s=60)
    try:
        argv = _argv(trained_run, srv.base_url, tmp_path, "--n-latents", "2", "--out", str(mine))
        capsys.readouterr()
        assert main(argv) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert str(mine) in line and "--force" in line and "table2.md" in line
        assert (mine / "table2.md").read_text() == "my own table\n" and srv.n_requests == 0
        assert main([*argv, "--force"]) == 0
        assert "settings_key" in json.loads((mine / "table2.json").read_text())
        assert (mine / "notes.txt").read_text() == "keep\n"
        assert main(argv) == 0          # now it holds autointerp results: rerunning into it is fine
    finally:
        srv.stop()


def test_default_n_windows_is_capped_to_the_time_budget_an_explicit_one_is_not(trained_run, tmp_path, autointerp_configs):
    from probsae.interp.cost import DEFAULT_N_WINDOWS, TIME_BUDGET_S

    seen = autointerp_configs
    argv = ["autointerp", str(trained_run), "--scorer", "embedding", "--explainer", "top-tokens", "--no-progress"]
    assert main(argv) == 2 and main([*argv, "--n-windows", "4096"]) == 2
    assert (seen[0].n_windows, seen[0].time_budget_s) == (DEFAULT_N_WINDOWS, TIME_BUDGET_S)
    assert (seen[1].n_windows, seen[1].time_budget_s) == (4096, None)
    assert seen[0].key() == seen[1].key()   # the budget is not a result setting: same results directory
