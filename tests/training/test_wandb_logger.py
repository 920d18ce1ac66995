"""Optional W&B logging: a fake ``wandb`` module records what train() sends; the real package is
not needed (an offline run with it is in docs/DISTRIBUTED.md)."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

import probsae
from probsae.training import wandb_logger


class FakeRun:
    def __init__(self, **kwargs):
        self.kwargs, self.logged, self.finished, self.id = kwargs, [], False, "fake123"

    def log(self, data, step=None):
        self.logged.append((step, dict(data)))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    runs: list[FakeRun] = []
    mod = types.SimpleNamespace(init=lambda **kw: runs.append(FakeRun(**kw)) or runs[-1])
    monkeypatch.setattr(wandb_logger, "_import_wandb", lambda: mod)
    return runs


def _cfg(**kw):
    base = dict(steps=6, batch_size=32, log_every=2, progress=False, wandb_project="proj", wandb_mode="offline",
                wandb_run_name="r1")
    return probsae.TrainConfig(**{**base, **kw})


def test_single_sae_logs_step_records_and_resumes_the_same_run(fake_wandb, tmp_path):
    x = torch.randn(256, 8)
    sae = probsae.build_sae("topk", d_in=8, d_sae=32, k=2)
    probsae.train(sae, x, _cfg(), run_dirs=[tmp_path / "run"])
    (run,) = fake_wandb
    assert run.kwargs["project"] == "proj" and run.kwargs["mode"] == "offline" and run.kwargs["name"] == "r1"
    assert run.kwargs["config"]["train"]["steps"] == 6 and "run" in run.kwargs["config"]["saes"]
    assert [s for s, _ in run.logged] == [2, 4, 6] and run.finished
    assert {"loss", "explained_variance", "l0", "alive", "lr"} <= set(run.logged[-1][1])
    # the JSONL log is still written, with the same numbers
    recs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert recs[-1]["loss"] == pytest.approx(run.logged[-1][1]["loss"])
    assert (tmp_path / "run" / "wandb_run_id").read_text() == "fake123"
    probsae.train(sae, x, _cfg(), run_dirs=[tmp_path / "run"])  # finished run: resumes the W&B run id
    assert fake_wandb[-1].kwargs["id"] == "fake123" and fake_wandb[-1].kwargs["resume"] == "allow"


def test_sweep_members_log_under_their_names(fake_wandb, tmp_path):
    saes = [probsae.build_sae("topk", d_in=8, d_sae=32, k=k) for k in (2, 4)]
    probsae.train(saes, torch.randn(256, 8), _cfg(), run_dirs=[tmp_path / "k2", tmp_path / "k4"])
    (run,) = fake_wandb
    keys = set().union(*(d for step, d in run.logged if step == 6))  # wandb merges logs of one step
    assert "k2/loss" in keys and "k4/loss" in keys and "loss" not in keys


def test_missing_wandb_is_a_clear_error_before_training(monkeypatch):
    def boom():
        raise ImportError("No module named 'wandb'")

    monkeypatch.setattr(wandb_logger, "_import_wandb", boom)
    sae = probsae.build_sae("topk", d_in=8, d_sae=32, k=2)
    with pytest.raises(probsae.ConfigError, match=r"pip install 'probsae\[wandb\]'"):
        probsae.train(sae, torch.randn(64, 8), _cfg())


def test_no_project_means_no_wandb(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # importing it would fail
    sae = probsae.build_sae("topk", d_in=8, d_sae=32, k=2)
    probsae.train(sae, torch.randn(64, 8), probsae.TrainConfig(steps=2, batch_size=32, progress=False))


def test_wandb_mode_is_validated():
    with pytest.raises(probsae.ConfigError, match="wandb_mode"):
        probsae.TrainConfig(wandb_mode="sometimes").validate()
