"""metrics.json: one schema and one writer for ``probsae train`` and sweep members; the reader
brings older sweep files to it and refuses corrupt ones."""

import json
from dataclasses import fields

import pytest
import torch

import probsae
from probsae.experiments.presets import SweepMember, parse_config
from probsae.runs.results import FORMAT, METRICS_FILE, RunMetrics, read_metrics, read_runs, record_run
from probsae.runs.spec import RunSpec


def test_record_run_writes_every_field_of_the_schema(tmp_path):
    x = torch.randn(512, 8)
    cfg = probsae.TrainConfig(steps=6, batch_size=64, log_every=3, progress=False)
    sae = probsae.build_sae("topk", d_in=8, d_sae=16, k=2)
    run = tmp_path / "run"
    probsae.train(sae, x, cfg, run_dirs=[run])
    m = record_run(run, "run", "topk", {"k": 2}, sae, x[:128], cfg, data={"model": "m", "hook": "h"},
                   seconds={"train": 1.5}, studies=["pareto"], extra={"pass_members": 1})
    on_disk = json.loads((run / METRICS_FILE).read_text())
    assert on_disk == m and m["format"] == FORMAT
    assert set(on_disk) == {"format", "format_version"} | {f.name for f in fields(RunMetrics)}
    assert m["heldout"] == probsae.evaluate(sae, x[:128], batch_size=4096)
    assert m["train_final"]["step"] == 6 and m["tokens_seen"] == 6 * 64 == m["train_final"]["tokens"]
    assert (m["model"], m["hook"], m["corpus"]) == ("m", "h", None)
    assert m["seconds"]["train"] == 1.5 and m["seconds"]["eval"] >= 0
    assert read_runs(tmp_path) == [(run, m)]


def test_reader_brings_an_older_sweep_file_to_the_schema(tmp_path):
    run = tmp_path / "topk-k=2"
    run.mkdir()
    old_eval = {"mse": 0.1, "fvu": 0.2, "explained_variance": 0.8, "l0": 2.0, "alive": 4, "dead": 0}
    (run / METRICS_FILE).write_text(json.dumps({"architecture": "topk", "hparams": {"k": 2}, "eval": old_eval}))
    m = read_metrics(run / METRICS_FILE)
    assert m["heldout"] == old_eval and "eval" not in m and m["name"] == "topk-k=2"
    (run / METRICS_FILE).write_text("{torn")  # written atomically, so a torn file is corrupt: an error naming it
    with pytest.raises(probsae.ConfigError, match="metrics.json is not valid JSON"):
        read_runs(tmp_path)


def test_a_sweep_member_is_a_run_spec_and_d_sae_has_one_home():
    cfg = parse_config({"data": {"model": "minilm", "hook": "resid_pre.2", "corpus": "pydoc", "context_length": 64},
                        "sae": {"expansion": 3, "normalize": "scalar", "seed": 4},
                        "train": {"tokens": 1000, "batch_size": 100, "lr": 1e-3},
                        "grid": [{"architecture": "topk", "k": [2, 3]}, {"architecture": "relu", "seed": 5}]})
    members = cfg.members()
    assert all(isinstance(m, SweepMember) and isinstance(m, RunSpec) for m in members)
    topk, relu = members[0], members[2]
    assert topk.name == "topk-k=2" and topk.hparams == {"k": 2} and relu.name == "relu-seed=5"
    assert topk.data.hook == "resid_pre.2" and topk.data.context_length == 64
    assert topk.train.steps == 10 and topk.train.lr == 1e-3
    assert topk.d_sae_for(8) == 24 and RunSpec(d_sae=7).d_sae_for(8) == 7
    sae = topk.build_sae(8)
    assert (sae.d_sae, sae.cfg.k, sae.cfg.normalize, sae.seed) == (24, 2, "scalar", 4)
    assert relu.build_sae(8).seed == 5, "the grid's hyperparameters override the shared [sae] settings"
    assert topk.summary() == {"name": "topk-k=2", "architecture": "topk", "hparams": {"k": 2},
                              "studies": ["pareto"], "group": 0}


def test_a_sweep_over_existing_caches_has_no_data_spec():
    cfg = parse_config({"data": {"cache": "somewhere"}, "grid": [{"architecture": "topk", "k": 2}]})
    (m,) = cfg.members()
    assert m.data == RunSpec().data  # unused: the caches are named in [data]
    with pytest.raises(probsae.ConfigError):
        parse_config({"data": {"cache": "x"}, "sae": {"width": 3}, "grid": [{"architecture": "topk"}]})


def test_a_run_spec_with_sequence_hyperparameters_equals_itself_read_back(tmp_path):
    from probsae.runs.spec import differences, read_spec, write_spec

    spec = RunSpec(architecture="matryoshka_batchtopk", hparams={"k": 4, "prefix_fractions": (0.25, 1.0)})
    write_spec(tmp_path, spec, None)
    assert differences(read_spec(tmp_path).comparable(), spec.comparable()) == []  # a resume is not refused
