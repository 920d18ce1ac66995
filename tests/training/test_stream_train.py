"""``probsae.train`` on a model stream: one forward feeding several SAEs at several hook points,
and a streaming run killed with SIGKILL that resumes from its checkpoint.

This file is also the worker of the kill test (``python test_stream_train.py OUT DEVICE``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import probsae
from probsae.data.extract import ActivationStream
from probsae.data.stream import ModelStream
from probsae.data.tiny import TINY_DOCS, tiny_model
from probsae.training.checkpoint import CHECKPOINT_FILE, load_checkpoint

DOCS = [" ".join(TINY_DOCS[(i * 3 + j) % 5] for j in range(4)) for i in range(120)]
BATCH = 32


def stream(device, hooks, seed=0, buffer_batches=4):
    h = tiny_model("gpt2", n_layers=3, d_model=32)
    h.model.to(device)
    act = ActivationStream.from_corpus(h, hooks, DOCS, context_length=16, batch_size=4)
    return ModelStream(act, BATCH, buffer_tokens=buffer_batches * BATCH, seed=seed)


def cfg(device, **kw):
    base = dict(steps=40, batch_size=BATCH, lr=3e-3, warmup_steps=2, progress=False, log_every=5,
                device=str(device), deterministic=True)
    return probsae.TrainConfig(**{**base, **kw})


def saes():
    return [probsae.build_sae("topk", d_in=32, d_sae=64, k=2, seed=1),
            probsae.build_sae("topk", d_in=32, d_sae=64, k=4, seed=2),
            probsae.build_sae("prob_topk", d_in=32, d_sae=64, k=4, seed=3)]


def test_several_saes_on_one_stream_equal_each_trained_alone(device):
    # deterministic=True: exact on CUDA too (see TrainConfig.deterministic); CPU is exact anyway.
    hooks = ["resid_pre.1", "resid_pre.1", "resid_pre.2"]
    together = saes()
    probsae.train(together[:2], stream(device, ["resid_pre.1", "resid_pre.2"]), cfg(device), hooks=hooks[:2])
    for i in range(2):  # topk draws no noise: alone it sees the same batches and must end the same
        alone = saes()[i]
        probsae.train(alone, stream(device, [hooks[i]]), cfg(device))
        for (k, a), b in zip(alone.state_dict().items(), together[i].state_dict().values()):
            assert torch.equal(a, b), f"SAE {i}: {k} differs from the one trained on the shared stream"
    # prob_topk draws its gate noise from the global generator: alone it is still exact
    alone = saes()[2]
    probsae.train(alone, stream(device, ["resid_pre.2"]), cfg(device))
    shared = saes()[2]
    probsae.train(shared, stream(device, ["resid_pre.1", "resid_pre.2"]), cfg(device), hooks="resid_pre.2")
    assert torch.equal(alone.W_dec, shared.W_dec)


def test_dict_batches_need_a_hook_per_sae(device):
    s = stream(device, ["resid_pre.1", "resid_pre.2"])
    with pytest.raises(probsae.ConfigError, match="pass hooks="):
        probsae.train(saes()[0], s, cfg(device, steps=2))
    with pytest.raises(probsae.ConfigError, match="resid_pre.7"):
        probsae.train(saes()[0], s, cfg(device, steps=2), hooks="resid_pre.7")
    with pytest.raises(probsae.ConfigError, match="2 hooks for 3 SAEs"):
        probsae.train(saes(), s, cfg(device, steps=2), hooks=["resid_pre.1", "resid_pre.2"])
    with pytest.raises(probsae.ConfigError, match="batches of 32 tokens"):
        probsae.train(saes()[0], s, cfg(device, steps=2, batch_size=16), hooks="resid_pre.1")


def test_streaming_run_resumes_from_its_recorded_position(device, tmp_path, monkeypatch):
    run = tmp_path / "run"
    c = cfg(device, steps=40, checkpoint_every=20)
    original = ModelStream.iter_from
    calls = []

    def spy(self, state):
        calls.append(state)
        return original(self, state)

    monkeypatch.setattr(ModelStream, "iter_from", spy)
    # a small buffer (each token waits 2 batches on average): after 20 steps the restart position
    # has moved well past the first windows
    probsae.train(saes()[1], stream(device, ["resid_pre.1"], buffer_batches=2), cfg(device, steps=20, checkpoint_every=20),
                  run_dirs=[run])
    state = load_checkpoint(run)
    assert state["step"] == 20 and state["extra"]["stream"]["windows"] > 10
    calls.clear()
    hist = probsae.train(saes()[1], stream(device, ["resid_pre.1"], buffer_batches=2), c, run_dirs=[run])
    assert calls == [state["extra"]["stream"]], "the resumed run restarts the stream where the checkpoint says"
    assert [r["step"] for r in hist.steps] == [5, 10, 15, 20, 25, 30, 35, 40]


# ------------------------------------------------------------------------------------------------
# kill -9 in the middle of a streaming run, then resume
# ------------------------------------------------------------------------------------------------
KILL_STEPS = 250


def _worker(out: Path, device: str) -> None:
    torch.set_num_threads(1)
    sae = probsae.build_sae("topk", d_in=32, d_sae=64, k=4, seed=2)
    probsae.train(sae, stream(torch.device(device), ["resid_pre.1"]),
                  cfg(device, steps=KILL_STEPS, checkpoint_every=5, log_every=5), run_dirs=[out / "run"])


def test_killed_streaming_run_keeps_a_valid_checkpoint_and_finishes(device, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, __file__, str(tmp_path), str(device)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run / CHECKPOINT_FILE).exists():
            if p.poll() is not None or time.time() > deadline:
                pytest.fail(f"the worker ended before its first checkpoint: {p.communicate()[1][-3000:]}")
            time.sleep(0.02)
        time.sleep(0.2)  # let it run on, mid-step or mid-checkpoint
        assert p.poll() is None, "the worker finished before it could be killed: raise KILL_STEPS"
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()
    killed = load_checkpoint(run)  # never torn: written atomically, checksummed
    assert 0 < killed["step"] < KILL_STEPS and "windows" in killed["extra"]["stream"]
    sae = probsae.build_sae("topk", d_in=32, d_sae=64, k=4, seed=2)
    hist = probsae.train(sae, stream(device, ["resid_pre.1"]),
                         cfg(device, steps=KILL_STEPS, checkpoint_every=5, log_every=5), run_dirs=[run])
    final = load_checkpoint(run)
    assert final["step"] == KILL_STEPS and hist.final["step"] == KILL_STEPS
    steps = [r["step"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "step" in r]
    assert steps == sorted(set(steps)) and steps[-1] == KILL_STEPS, "each step logged once, in order"
    assert hist.final["tokens"] == KILL_STEPS * BATCH
    loaded = probsae.load_sae(run)
    assert torch.equal(loaded.W_dec, sae.W_dec.cpu()) and torch.isfinite(loaded.W_dec).all()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2])
