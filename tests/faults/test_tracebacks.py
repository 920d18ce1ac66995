"""Issue 14, tracebacks: each one is now exit 2 with one line naming the file and the cause."""

import contextlib
import errno
import json
import os
import resource
from pathlib import Path

import pytest

import probsae
from probsae.cli.main import main
from probsae.errors import ProbSAEError

ROOT_USER = os.geteuid() == 0


# ---- output paths ---------------------------------------------------------------------------------

def test_out_is_a_file_or_under_a_file(tmp_path, train_args, fails_cleanly):
    f = tmp_path / "afile"
    f.write_text("x")
    fails_cleanly(train_args(f), "afile is a file, not a directory")
    fails_cleanly(train_args(f / "run"), "afile/run", "a part of the path is a file")
    fails_cleanly(train_args(tmp_path / "run", cache=f), "afile is a file, not a directory")


# ---- permissions -----------------------------------------------------------------------------------

def test_unwritable_out_and_cache_dir(reference, tmp_path, train_args, fails_cleanly, deny):
    deny("denied_out")
    fails_cleanly(train_args(tmp_path / "denied_out"), "denied_out", "(permission denied)")
    deny("denied_cache", errno.EROFS)
    fails_cleanly(train_args(tmp_path / "run", cache=tmp_path / "denied_cache"), "denied_cache",
                  "(read-only file system)")


def test_unreadable_corpus(reference, tmp_path, train_args, fails_cleanly, deny, assets):
    corpus = tmp_path / "secret.txt"
    corpus.write_text((assets / "corpus.txt").read_text())
    argv = train_args(tmp_path / "run", cache=tmp_path / "cache")
    argv[argv.index("--corpus") + 1] = str(corpus)
    deny(str(corpus))
    fails_cleanly(argv, "cannot read corpus file", "secret.txt (permission denied)")


@pytest.mark.skipif(ROOT_USER, reason="root is not denied by chmod (the injected variants above cover the messages)")
def test_unwritable_and_unreadable_for_real(tmp_path, train_args, fails_cleanly, assets):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    corpus = tmp_path / "c.txt"
    corpus.write_text((assets / "corpus.txt").read_text())
    corpus.chmod(0)
    try:
        fails_cleanly(train_args(ro / "run"), "permission denied")
        fails_cleanly(train_args(tmp_path / "run", cache=ro / "cache"), "permission denied")
        argv = train_args(tmp_path / "run2")
        argv[argv.index("--corpus") + 1] = str(corpus)
        fails_cleanly(argv, "permission denied")
    finally:
        ro.chmod(0o755)
        corpus.chmod(0o644)


def test_eval_of_a_read_only_run_fails_before_computing(run_copy, fails_cleanly, monkeypatch):
    monkeypatch.setattr("probsae.evaluate", lambda *a, **k: pytest.fail("evaluated before checking the output"))
    real_touch = Path.touch

    def touch(self, *a, **kw):
        if self.parent == run_copy:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_touch(self, *a, **kw)

    monkeypatch.setattr(Path, "touch", touch)
    fails_cleanly(["eval", str(run_copy), "--no-downstream"], f"write into directory of the evaluation result {run_copy}",
                  "(permission denied)")


def test_eval_can_write_its_result_elsewhere(run_copy, tmp_path, capsys):
    assert main(["eval", str(run_copy), "--no-downstream", "--out", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["heldout"]["n_tokens"] > 0


# ---- file contents -----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix, content, needle", [
    (".jsonl", b'{"text": "fine"}\n{"text": "caf\xe9"}\n', ":2: not UTF-8 text (invalid byte 0xe9"),
    (".txt", b"fine text\n\ncaf\xe9 au lait\n", "is not UTF-8 text: invalid byte 0xe9 at byte 14 (line 3)"),
])
def test_invalid_utf8_in_a_corpus_is_an_error_for_every_format(tmp_path, train_args, fails_cleanly, suffix, content,
                                                                needle, reference):
    corpus = tmp_path / f"bad{suffix}"
    corpus.write_bytes(content * 30)
    argv = train_args(tmp_path / "run", cache=tmp_path / "cache")
    argv[argv.index("--corpus") + 1] = str(corpus)
    fails_cleanly(argv, f"bad{suffix}", needle)


@pytest.mark.parametrize("name, content, command, needle", [
    ("config.json", "[1, 2]", "eval", "config.json holds a list where an object was expected"),
    ("config.json", '{"format": "probsae-sae", "architecture": "topk", "config": {"d_in": 16, "d_sae": "x", "k": 2}}',
     "eval", "d_sae must be a positive integer"),
    ("run.json", b"\x89PNG\r\n\x1a\n\x00\xff", "eval", "run.json is not UTF-8 text"),
    ("run.json", '{"spec": [1]}', "eval", "field 'spec' holds a list"),
    ("log.jsonl", b"\x00\xff\xfe binary", "export", "log.jsonl is not UTF-8 text"),
    ("log.jsonl", b'{"event": "start"}\n{"step": 3, "loss": nan!!}\n{"step": 6}\n', "train", "log.jsonl line 2 is not valid JSON"),
])
def test_files_of_the_wrong_type(run_copy, tmp_path, train_args, fails_cleanly, name, content, command, needle):
    (run_copy / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    if name == "log.jsonl" and command == "export":
        (run_copy / "run.json").unlink()  # the log is then the only metadata source
    argv = {"eval": ["eval", str(run_copy), "--no-downstream"],
            "export": ["export", str(run_copy), "--format", "saelens", "--out", str(tmp_path / "e")],
            "train": train_args(run_copy)}[command]
    fails_cleanly(argv, needle)


def test_metrics_json_of_the_wrong_type_in_a_sweep(tmp_path, fails_cleanly):
    (tmp_path / "sweep" / "runs" / "a").mkdir(parents=True)
    (tmp_path / "sweep" / "runs" / "a" / "metrics.json").write_text("[1]")
    fails_cleanly(["report", str(tmp_path / "sweep")], "metrics.json holds a list where an object was expected")


def test_a_manifest_of_the_wrong_type(cache_copy, tmp_path, train_args, fails_cleanly):
    for man in cache_copy.glob("*-train-*/manifest.json"):
        m = json.loads(man.read_text())
        m["shards"] = "x"
        man.write_text(json.dumps(m))
    fails_cleanly(train_args(tmp_path / "run", cache=cache_copy), "manifest.json: field 'shards' holds a string")


@pytest.mark.parametrize("k", ['"abc"', "2.5", "null", "-1"])
def test_an_imported_cfg_with_a_bad_k(reference, tmp_path, fails_cleanly, k):
    exp = tmp_path / "exp"
    assert main(["export", str(reference), "--format", "saelens", "--out", str(exp)]) == 0
    cfg = json.loads((exp / "cfg.json").read_text())
    cfg.pop("activation_fn_kwargs", None)
    cfg["k"] = json.loads(k)
    (exp / "cfg.json").write_text(json.dumps(cfg))
    fails_cleanly(["import", str(exp), "--format", "saelens", "--out", str(tmp_path / "imp")], "k must be a positive integer")


# ---- full disk -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def file_size_limit(n_bytes: int):
    """Writes past ``n_bytes`` fail with EFBIG (RLIMIT_FSIZE: what a full disk looks like to one
    process; Python ignores SIGXFSZ). The soft limit is restored on exit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_full_disk_during_a_checkpoint_keeps_the_old_one(tmp_path, train_args, monkeypatch, capsys, reference):
    """The limit lets the small files through but not the checkpoint: exit 2 naming it and the
    cause, the step-4 checkpoint intact, no temporary file left."""
    from probsae.training.checkpoint import load_checkpoint
    from probsae.training.member import Member

    original = Member.step
    monkeypatch.setattr(Member, "step", lambda self, b, s, t: (_ for _ in ()).throw(KeyboardInterrupt) if s == 6
                        else original(self, b, s, t))
    run = tmp_path / "run"
    argv = train_args(run, "--expansion", "16")
    assert main(argv) == 130
    monkeypatch.setattr(Member, "step", original)
    assert load_checkpoint(run)["step"] == 4
    size = (run / "checkpoint.safetensors").stat().st_size
    capsys.readouterr()
    with file_size_limit(size // 2):
        rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err[-3000:]
    assert "cannot write" in err and "checkpoint.safetensors (file too large" in err
    assert load_checkpoint(run)["step"] == 4
    assert not [p for p in os.listdir(run) if "probsae-tmp" in p]
    assert main(argv) == 0  # with room again, the run finishes


def test_a_full_disk_is_called_a_full_disk(tmp_path, train_args, monkeypatch, fails_cleanly, reference):
    real = os.replace

    def full(src, dst, *a, **kw):
        if os.path.basename(dst) == "checkpoint.safetensors":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *a, **kw)

    monkeypatch.setattr("probsae.io.os.replace", full)
    fails_cleanly(train_args(tmp_path / "run"), "cannot write", "checkpoint.safetensors (disk full)")


# ---- oversized configs, library errors -----------------------------------------------------------------

def test_an_oversized_config_fails_before_allocating(run_copy, fails_cleanly, monkeypatch):
    import torch

    import probsae.saes.base as base

    real = base.orthogonal

    def guarded(rows, cols, gen):
        if rows * cols > 10**6 and torch.get_default_device().type != "meta":
            pytest.fail(f"allocated a {rows}x{cols} weight")
        return real(rows, cols, gen)

    monkeypatch.setattr(base, "orthogonal", guarded)
    cfg = json.loads((run_copy / "config.json").read_text())
    cfg["config"]["d_sae"] = 5_000_000
    (run_copy / "config.json").write_text(json.dumps(cfg))
    fails_cleanly(["eval", str(run_copy), "--no-downstream"], "'W_dec' has shape", "expected [5000000, 16]")


def test_evaluate_of_nothing_is_a_probsae_error():
    import torch

    sae = probsae.build_sae("topk", d_in=4, d_sae=8, k=2)
    with pytest.raises(ProbSAEError, match="no tokens were evaluated"):
        probsae.evaluate(sae, torch.zeros(0, 4))
    with pytest.raises(ProbSAEError):
        probsae.evaluate(sae, [])
