"""Shared pieces of the fault-injection tests: a tiny random-weight GPT-2 on disk, a corpus, one
activation-cache root for the whole session, a finished reference run, and helpers that run the
command line and check that a failure is one clear line (exit 2, no traceback)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from probsae.cli.main import main
from probsae.data.tiny import TINY_DOCS, tiny_model

STEPS = 8


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fault_assets")
    handle = tiny_model("gpt2", n_layers=2, d_model=16, max_positions=32)
    handle.model.save_pretrained(root / "model")
    handle.tokenizer.save_pretrained(root / "model")
    docs = [" ".join([TINY_DOCS[i % 5], TINY_DOCS[(i * 3 + 1) % 5]]) for i in range(60)]
    (root / "corpus.txt").write_text("\n\n".join(docs))
    return root


def _train_args(assets: Path, out: Path, *extra: str, cache: Path | None = None) -> list[str]:
    # --deterministic true: these tests compare a killed-and-rerun run with the reference run bit
    # for bit. On CUDA the atomic adds of the sparse backward (Triton scatter) and cuBLAS round
    # differently from run to run without it (docs/DEVICES.md); on the CPU it changes nothing.
    return ["train", "--deterministic", "true", "--arch", "topk", "--k", "2", "--expansion", "4", "--model", str(assets / "model"),
            "--hook", "resid_pre.1", "--corpus", str(assets / "corpus.txt"), "--context-length", "16",
            "--eval-tokens", "64", "--batch-size", "32", "--steps", str(STEPS), "--lr", "3e-3",
            "--log-every", "3", "--checkpoint-every", "4", "--no-progress", "--seed", "1",
            "--cache-dir", str(cache or assets / "cache"), "--out", str(out), *extra]


@pytest.fixture(scope="session")
def reference(assets, tmp_path_factory) -> Path:
    """A finished run directory (never modified: tests work on copies)."""
    run = tmp_path_factory.mktemp("fault_reference") / "run"
    assert main(_train_args(assets, run)) == 0
    return run


@pytest.fixture
def train_args(assets):
    """``train_args(out, *extra, cache=None)``: the argv of a tiny ``probsae train`` into ``out``."""
    return lambda out, *extra, cache=None: _train_args(assets, out, *extra, cache=cache)


@pytest.fixture
def run_copy(reference, tmp_path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(reference, dest)
    return dest


def _fails_cleanly(capsys, argv: list[str], *needles: str) -> str:
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, f"exit {rc}, stderr: {err[-2000:]}"
    assert "Traceback" not in err
    line = [ln for ln in err.splitlines() if ": error: " in ln]
    assert line, err[-2000:]
    for n in needles:
        assert n in line[-1], f"{n!r} not in {line[-1]!r}"
    return line[-1]


@pytest.fixture
def fails_cleanly(capsys):
    """``fails_cleanly(argv, *needles)``: ``probsae argv`` must exit 2 with a one-line error (no
    traceback) holding every needle; returns that line."""
    return lambda argv, *needles: _fails_cleanly(capsys, argv, *needles)


@pytest.fixture
def deny(monkeypatch):
    """``deny(name, code=EACCES)``: opening a file, or creating a directory, whose path contains
    ``name`` fails with ``code`` — permission problems that also hold for root (whom chmod does
    not stop)."""
    real_open, real_mkdir = open, os.mkdir

    def install(name: str, code: int = errno.EACCES) -> None:
        def guard(real):
            def guarded(path, *a, **kw):
                if name in str(path):
                    raise OSError(code, os.strerror(code), str(path))
                return real(path, *a, **kw)
            return guarded

        monkeypatch.setattr("builtins.open", guard(real_open))
        monkeypatch.setattr("io.open", guard(real_open))  # what pathlib opens files with
        monkeypatch.setattr(os, "mkdir", guard(real_mkdir))

    return install


@pytest.fixture
def cache_copy(reference, assets, tmp_path) -> Path:
    """A copy of the session's activation caches (complete: the reference run filled them)."""
    dest = tmp_path / "cache"
    shutil.copytree(assets / "cache", dest)
    return dest
