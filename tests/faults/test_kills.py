"""Issue 14, kill at each write: whichever file a kill interrupts, the old version (or none) is
left, never a torn one, and the rerun ends exactly where an uninterrupted run does."""

import json
import os
import signal
import subprocess
import sys

import pytest

from probsae.cli.main import main


class Killed(BaseException):
    pass


def kill_at(monkeypatch, name, nth=1):
    """The ``nth`` atomic write of a file called ``name`` dies just before its rename."""
    real, seen = os.replace, []

    def replace(src, dst, *a, **kw):
        if os.path.basename(dst) == name:
            seen.append(dst)
            if len(seen) == nth:
                raise Killed(name)
        return real(src, dst, *a, **kw)

    monkeypatch.setattr("probsae.io.os.replace", replace)


def results(run):
    """The held-out metrics and the last training record, without its wall-clock ``elapsed_s``."""
    m = json.loads((run / "metrics.json").read_text())
    return m["heldout"], {k: v for k, v in m["train_final"].items() if k != "elapsed_s"}


@pytest.mark.parametrize("name, nth, fresh_cache", [
    ("manifest.json", 2, True), ("shard_00000.safetensors", 1, True), ("run.json", 1, False),
    ("checkpoint.safetensors", 2, False), ("sae.safetensors", 1, False), ("config.json", 1, False),
    ("metrics.json", 1, False), ("training.png", 1, False),
])
def test_a_kill_at_any_write_leaves_no_torn_file(reference, tmp_path, train_args, monkeypatch, name, nth,
                                                 fresh_cache):
    run = tmp_path / "run"
    argv = train_args(run, cache=tmp_path / "cache" if fresh_cache else None)
    kill_at(monkeypatch, name, nth)
    with pytest.raises(Killed):
        main(argv)
    monkeypatch.undo()
    written = list(run.parent.rglob(name))
    for f in written:  # every copy on disk is a complete file (the kill hit before the rename)
        assert f.stat().st_size > 0
    assert not list(tmp_path.rglob("*probsae-tmp*"))
    assert main(argv) == 0
    assert results(run) == results(reference)


SCRIPT = """
import sys
import torch
import probsae
data = torch.randn(512, 16, generator=torch.Generator().manual_seed(0)) + 1
sae = probsae.build_sae("topk", d_in=16, d_sae=64, k=4, seed=3)
# deterministic: the resumed run must equal the reference bit for bit, CUDA included (atomic adds)
cfg = probsae.TrainConfig(steps=12, batch_size=32, checkpoint_every=4, log_every=3, progress=False, deterministic=True)
probsae.train(sae, data, cfg, run_dirs=[sys.argv[1]])
"""


CHILD = """
import os, signal
import probsae.io as io
real, seen = os.replace, []
def replace(src, dst, *a, **kw):
    if os.path.basename(dst) == "checkpoint.safetensors":
        seen.append(dst)
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *a, **kw)
io.os.replace = replace
""" + SCRIPT


def test_sigkill_during_a_checkpoint_write_then_resume(tmp_path):
    """A real SIGKILL in the middle of the second checkpoint's write: the temporary file stays
    behind; the next run removes it, resumes from the first checkpoint and ends bit-identical to
    an uninterrupted run."""
    from probsae.training.checkpoint import load_checkpoint

    run, ref = tmp_path / "run", tmp_path / "ref"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", CHILD, str(run)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert [p.name.split(".probsae-tmp-")[0] for p in run.glob(".*probsae-tmp*")] == [".checkpoint.safetensors"]
    assert load_checkpoint(run)["step"] == 4
    exec(compile(SCRIPT.replace("sys.argv[1]", repr(str(run))), "resume", "exec"), {})
    exec(compile(SCRIPT.replace("sys.argv[1]", repr(str(ref))), "reference", "exec"), {})
    assert not list(run.glob(".*probsae-tmp*"))
    assert (run / "sae.safetensors").read_bytes() == (ref / "sae.safetensors").read_bytes()
    assert (run / "log.jsonl").read_text().count('"step"') == (ref / "log.jsonl").read_text().count('"step"')
