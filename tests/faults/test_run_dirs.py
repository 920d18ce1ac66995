"""Issue 24, runs and run directories: one writer per run directory (a lock), failed starts that
leave nothing behind, grid members that stay inside --out, warnings where a result would go
silently wrong, and SIGTERM that says how to resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probsae.cli.main import main
from probsae.runs.lock import LOCK_FILE

HOLD = """
import fcntl, json, os, socket, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00Z",
                         "command": "probsae train --out elsewhere"}).encode())
print("ready", flush=True)
sys.stdin.read()
"""


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process holding ``run_dir``'s lock (as a running ``probsae train`` does)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir / LOCK_FILE)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def results(run):
    m = json.loads((run / "metrics.json").read_text())
    return m["heldout"], {k: v for k, v in m["train_final"].items() if k != "elapsed_s"}


def without(argv: list[str], flag: str) -> list[str]:
    i = argv.index(flag)
    return argv[:i] + argv[i + 2:]


# ---- 11: one lock per run directory --------------------------------------------------------------

def test_a_second_process_is_refused_and_a_killed_holders_lock_is_taken_over(reference, tmp_path, train_args,
                                                                              fails_cleanly, capsys):
    run = tmp_path / "run"
    holder = hold_lock(run)
    try:
        line = fails_cleanly(train_args(run), f"{run} is in use by another probsae process", f"pid {holder.pid}",
                             "probsae train --out elsewhere")
        assert "\n" not in line
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]  # the second process wrote nothing
    finally:
        holder.kill()  # SIGKILL: the kernel releases its flock, its record stays in the file
        holder.wait()
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == holder.pid
    capsys.readouterr()
    assert main(train_args(run)) == 0
    assert f"was locked by pid {holder.pid}" in capsys.readouterr().err  # taken over, with a note
    assert results(run) == results(reference)
    assert not (run / LOCK_FILE).exists()  # released at the end


def test_a_grid_locks_every_member_and_leaves_nothing_when_one_is_busy(tmp_path, train_args, fails_cleanly):
    out = tmp_path / "grid"
    argv = without(train_args(out), "--k") + ["--k", "2,3"]
    holder = hold_lock(out / "topk-k=3")
    try:
        fails_cleanly(argv, f"{out / 'topk-k=3'} is in use", f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "topk-k=2").exists()  # the member locked first was given back, its folder removed


def test_eval_into_a_run_directory_being_trained_is_refused(run_copy, fails_cleanly):
    before = sorted(p.name for p in run_copy.iterdir())
    holder = hold_lock(run_copy)
    try:
        fails_cleanly(["eval", str(run_copy), "--no-downstream"], "is in use by another probsae process")
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in run_copy.iterdir() if p.name != LOCK_FILE) == before  # no eval.json


# ---- 11 (sweep): one writer per member directory ----------------------------------------------------

def _sweep_config(assets: Path, tmp_path: Path) -> Path:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(f"""
name = "tiny"
[data]
model = "{assets / 'model'}"
hook = "resid_pre.1"
corpus = "{assets / 'corpus.txt'}"
context_length = 16
cache_dir = "{assets / 'cache'}"
[sae]
d_sae = 64
[train]
steps = 8
batch_size = 32
[sweep]
downstream_tokens = 0
[[grid]]
architecture = "topk"
k = [2, 3]
""")
    return cfg


def test_a_second_sweep_on_the_same_members_is_refused_and_a_disjoint_only_runs_beside_it(assets, tmp_path,
                                                                                          fails_cleanly):
    from probsae.errors import RunInUseError
    from probsae.experiments.presets import load_config
    from probsae.experiments.sweep import run_sweep
    from probsae.runs.lock import RunDirLock

    cfg, out = _sweep_config(assets, tmp_path), tmp_path / "sweep"
    holder = hold_lock(out / "runs" / "topk-k=3")  # a sweep (or train) writing member topk-k=3
    try:
        fails_cleanly(["sweep", str(cfg), "--out", str(out), "--no-progress"],
                      f"{out / 'runs' / 'topk-k=3'} is in use by another probsae process", f"pid {holder.pid}")
        assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [  # it wrote nothing
            "runs", "runs/topk-k=3", f"runs/topk-k=3/{LOCK_FILE}"]

        held = []  # a disjoint --only runs beside it, holding its own member's lock for the whole sweep

        def on_pass(names):
            with pytest.raises(RunInUseError, match="is in use by another probsae process"):
                RunDirLock(out / "runs" / "topk-k=2").acquire()
            held.append(names)

        summary = run_sweep(load_config(str(cfg)), out, only=["topk-k=2"], progress=False, on_pass=on_pass)
    finally:
        holder.kill()
        holder.wait()
    assert held == [["topk-k=2"]] and summary["results"] == 1
    assert (out / "runs" / "topk-k=2" / "metrics.json").is_file()
    assert not (out / "runs" / "topk-k=2" / LOCK_FILE).exists()  # released at the end


# ---- 12: failed starts -----------------------------------------------------------------------------

@pytest.mark.parametrize("change", ["hook", "model", "stream", "k"])
def test_a_start_that_fails_before_training_leaves_nothing_and_blocks_nothing(reference, tmp_path, train_args,
                                                                           fails_cleanly, change):
    out = tmp_path / "parent" / "s4"
    argv = train_args(out)
    bad = {"hook": without(argv, "--hook") + ["--hook", "resid_pre.99"],
           "model": without(argv, "--model") + ["--model", str(tmp_path / "no-model")],
           "stream": without(argv, "--steps") + ["--stream"],
           "k": without(argv, "--k") + ["--k", "2,65,79"]}[change]  # d_sae is 4 × 16 = 64
    fails_cleanly(bad, {"hook": "99", "model": "no-model", "stream": "--steps", "k": "65"}[change])
    assert not (tmp_path / "parent").exists()  # no folder (with a run.json) is left behind
    assert main(argv) == 0
    assert results(out) == results(reference)


def test_a_folder_holding_only_the_run_json_of_a_failed_start_is_reused(reference, tmp_path, train_args, capsys):
    out = tmp_path / "s4"
    out.mkdir()
    old = json.loads((reference / "run.json").read_text())
    old["spec"]["data"]["hook"] = "resid_pre.99"  # what an earlier failed start recorded
    (out / "run.json").write_text(json.dumps(old))
    capsys.readouterr()
    assert main(train_args(out)) == 0
    err = capsys.readouterr().err
    assert "holds only the run.json of a start that failed before training" in err and "data.hook" in err
    assert json.loads((out / "run.json").read_text())["spec"]["data"]["hook"] == "resid_pre.1"
    assert results(out) == results(reference)


def test_a_folder_with_a_trained_run_is_still_refused(run_copy, train_args, fails_cleanly):
    fails_cleanly(without(train_args(run_copy), "--k") + ["--k", "3"], "holds a different run", "hparams.k")


# ---- 13: grid member names stay inside --out ---------------------------------------------------------

def test_a_module_hook_with_dot_dot_writes_nothing_outside_out(tmp_path, train_args, capsys):
    out = tmp_path / "a" / "b" / "out"
    argv = without(train_args(out), "--hook") + ["--hook", "resid_pre.1,module:../../../ESCAPED", "--stream"]
    main(argv)
    outside = [p for p in tmp_path.rglob("*") if out not in p.parents and p != out and p not in out.parents]
    assert outside == []


def test_grid_member_names_are_one_plain_path_component():
    from probsae.cli.train import run_dir_name as member_name

    assert member_name(["resid_pre.6", "k4"]) == "resid_pre.6-k4"
    assert member_name(["module:../../../ESCAPED", "k4"]) == "module_.._.._.._ESCAPED-k4"
    for parts in (["..", "k4"], [".."], ["a/b\\c"], ["module:/etc"], [""]):
        name = member_name(parts)
        assert "/" not in name and "\\" not in name and not name.startswith(".") and name


def test_hooks_whose_names_collide_are_refused(tmp_path, train_args, fails_cleanly):
    argv = without(train_args(tmp_path / "out"), "--hook") + ["--hook", "module:h_0,module:h/0", "--stream"]
    fails_cleanly(argv, "would share the run directory name")
    assert not (tmp_path / "out").exists()


# ---- 16: silent mistakes ------------------------------------------------------------------------------

def test_eval_warns_when_the_corpus_was_edited_after_training(assets, tmp_path, train_args, capsys):
    corpus = tmp_path / "corpus.txt"
    shutil.copy(assets / "corpus.txt", corpus)
    run = tmp_path / "run"
    argv = without(train_args(run, cache=tmp_path / "cache"), "--corpus") + ["--corpus", str(corpus)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--no-downstream"]) == 0
    assert "warning: the corpus" not in capsys.readouterr().err  # unchanged: no warning
    corpus.write_text(corpus.read_text().replace("the", "a"))
    assert main(["eval", str(run), "--no-downstream"]) == 0
    err = capsys.readouterr().err
    assert "warning: the corpus" in err and "corpus.txt changed" in err and "not comparable" in err


def test_resuming_a_finished_run_whose_log_was_deleted_is_refused(run_copy, train_args, fails_cleanly, capsys):
    metrics = (run_copy / "metrics.json").read_text()
    (run_copy / "log.jsonl").unlink()
    fails_cleanly(train_args(run_copy), "checkpoint at step 8", "log.jsonl is missing or empty")
    assert (run_copy / "metrics.json").read_text() == metrics  # no empty train_final written
    out = capsys.readouterr().out
    assert "trained on 0 tokens" not in out


def test_a_tiny_held_out_set_is_warned_about(tmp_path, train_args, capsys):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("\n\n".join(["hello"] * 40))  # 40 one-token documents; every 20th is held out
    run = tmp_path / "run"
    argv = without(train_args(run, cache=tmp_path / "cache"), "--corpus") + ["--corpus", str(corpus)]
    capsys.readouterr()
    assert main(argv) == 0
    n = json.loads((run / "metrics.json").read_text())["heldout"]["n_tokens"]
    assert n < 10
    err = capsys.readouterr().err
    assert f"warning: the held-out set holds only {n} tokens" in err and "asked for 64" in err


# ---- 17: SIGTERM ------------------------------------------------------------------------------------

class DefaultTerm(BaseException):
    """Stands for the default SIGTERM action (ending the process) while the test runs."""


def test_sigterm_says_how_to_resume_and_the_rerun_is_identical(reference, tmp_path, train_args, monkeypatch, capsys):
    run = tmp_path / "run"
    argv = train_args(run)
    real, seen = os.replace, []

    def replace(src, dst, *a, **kw):
        real(src, dst, *a, **kw)
        if os.path.basename(dst) == "checkpoint.safetensors":
            seen.append(dst)
            if len(seen) == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # a real signal, right after the first checkpoint

    def default(signum, frame):
        raise DefaultTerm()

    monkeypatch.setattr("probsae.io.os.replace", replace)
    previous = signal.signal(signal.SIGTERM, default)
    try:
        capsys.readouterr()
        assert main(argv) == 143
        assert signal.getsignal(signal.SIGTERM) is default  # the command restored the handler it found
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert "probsae train: terminated (SIGTERM)" in err
    assert f"{run} resumes from its last checkpoint" in err and "run the same command again" in err
    monkeypatch.undo()
    assert main(argv) == 0
    assert results(run) == results(reference)
    assert (run / "sae.safetensors").read_bytes() == (reference / "sae.safetensors").read_bytes()


def test_sigterm_stops_a_sweep_with_a_message_and_gives_its_locks_back(assets, tmp_path, monkeypatch, capsys):
    """Issue 24, finding 17 for `probsae sweep`: SIGTERM during training says what resumes (exit
    143, not a silent 143) and the members' locks are released; the rerun finishes the sweep."""
    import probsae.training

    cfg, out = _sweep_config(assets, tmp_path), tmp_path / "sweep"
    real = probsae.training.train

    def killed(*a, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this at once
        raise AssertionError("SIGTERM did not stop the sweep")

    def default(signum, frame):
        raise DefaultTerm()

    monkeypatch.setattr(probsae.training, "train", killed)
    previous = signal.signal(signal.SIGTERM, default)
    try:
        capsys.readouterr()
        assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert "probsae sweep: terminated (SIGTERM); members with a metrics.json are kept" in err
    assert "resume from their last checkpoint" in err and "Traceback" not in err
    assert not list(out.rglob(LOCK_FILE))  # every member's lock given back
    monkeypatch.setattr(probsae.training, "train", real)
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.parent.name for p in out.glob("runs/*/metrics.json")) == ["topk-k=2", "topk-k=3"]
