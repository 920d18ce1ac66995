"""probsae.runs.runner: the one path of train and sweep (session, SAEs, training, records)."""

from types import SimpleNamespace

import pytest
import torch

from probsae.data.prepare import DataSpec
from probsae.errors import RunInUseError
from probsae.runs import results as results_mod
from probsae.runs.runner import build_saes, record_group, session, throughput, train_group
from probsae.runs.source import DataSource
from probsae.runs.spec import RunSpec, data_metadata
from probsae.training.config import TrainConfig


def specs(*ks: int) -> list[RunSpec]:
    return [RunSpec(architecture="topk", hparams={"k": k}, d_sae=16, data=DataSpec(model="m", hook="h", corpus="c"),
                    train=TrainConfig(batch_size=8, steps=3, progress=False, log_every=1)) for k in ks]


def source(x: torch.Tensor) -> DataSource:
    return DataSource(train=x, heldout={"h": SimpleNamespace(d_in=x.shape[1])}, steps=3, n_train=len(x))


def test_the_session_locks_every_run_directory_until_it_ends(tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    with session(specs(2)[0].train, dirs, "probsae train") as ctx:
        assert ctx.is_main
        with pytest.raises(RunInUseError):
            with session(specs(2)[0].train, [dirs[1]], "probsae sweep"):
                pass
    with session(specs(2)[0].train, dirs, "probsae train"):  # released: a later call takes them
        pass


def test_saes_are_built_for_the_sources_width_and_trained_together(tmp_path):
    ss = specs(2, 3)
    x = torch.randn(64, 8)
    saes = build_saes(ss, source(x), lambda s: data_metadata(s.data, k=s.hparams["k"]))
    assert [(s.cfg.d_in, s.cfg.d_sae, s.cfg.k, s.metadata.extra) for s in saes] == [(8, 16, 2, {"k": 2}),
                                                                                    (8, 16, 3, {"k": 3})]
    dirs = [tmp_path / "k2", tmp_path / "k3"]
    trained = train_group(ss, saes, dirs, source(x), ss[0].train)
    assert trained.saes is saes and len(trained.histories) == 2 and trained.seconds > 0
    assert all((d / "log.jsonl").is_file() for d in dirs)


def test_records_take_a_callable_per_run(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(results_mod, "record_run", lambda *a, **kw: calls.append((a, kw)) or {"name": a[1]})
    ss, held = specs(2, 3), SimpleNamespace(d_in=8)
    src = DataSource(train=None, heldout={"h": held}, steps=1, n_train=1)
    out = record_group(ss, ["x", "y"], [tmp_path / "x", tmp_path / "y"], ["s2", "s3"], src, "cfg",
                       studies=lambda i: [f"study{i}"], batch_size=7)
    assert out == [{"name": "x"}, {"name": "y"}]
    (a, kw), _ = calls
    assert a == (tmp_path / "x", "x", "topk", {"k": 2}, "s2", held, "cfg")
    assert kw == {"studies": ["study0"], "batch_size": 7}


def test_throughput_adds_the_model_forward_when_streaming():
    cached = throughput(source(torch.zeros(4, 2)), 1000, 2.0)
    assert cached == {"train_tokens": 1000, "train_seconds": 2.0, "train_tokens_per_s": 500.0}
    stream = SimpleNamespace(forward_seconds=0.5, tokens_in=2000)
    streamed = throughput(DataSource(train=stream, heldout={}, steps=1), 1000, 2.0)
    assert streamed["extracted_tokens"] == 2000 and streamed["extract_tokens_per_s"] == 4000.0
