"""RunSpec: the run's hyperparameters are a typed config, validated once; the run has one seed."""

from __future__ import annotations

import json

import pytest

from probsae.errors import ConfigError
from probsae.runs.spec import RunSpec, read_spec, write_spec
from probsae.saes import get_class
from probsae.training.config import TrainConfig

#: The spec of a run.json written before the run had one seed (``probsae train --arch prob_topk --k 2
#: --seed 3 --steps 4 ...``; trimmed): the SAE's seed was a hyperparameter, tied by hand to train.seed.
OLD_SPEC = {"architecture": "prob_topk", "hparams": {"k": 2, "seed": 3}, "expansion": 4, "d_sae": None,
            "train": {"steps": 4, "batch_size": 32, "seed": 3}}


def _old_run(tmp_path, spec=OLD_SPEC):
    (tmp_path / "run.json").write_text(json.dumps({"format": "probsae-run", "spec": spec, "command": "probsae train"}))
    return read_spec(tmp_path)


def test_hparams_are_the_architectures_typed_config():
    spec = RunSpec(architecture="topk", hparams={"k": 4})
    assert isinstance(spec.hparams, get_class("topk").config_class) and spec.hparams.k == 4
    assert spec.to_dict()["hparams"] == {"k": 4}  # run.json: the hyperparameters given, not every field
    assert RunSpec(architecture="relu").hparams == get_class("relu").config_class()


def test_hparams_are_validated_once_when_parsed_and_sizes_at_build(monkeypatch):
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        RunSpec(architecture="topk", hparams={"k": 0})
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        RunSpec(architecture="topk", hparams={"l1_coeff": 1.0})
    cls = get_class("topk").config_class
    calls = []
    monkeypatch.setattr(cls, "validate", lambda self: calls.append(self))
    spec = RunSpec(architecture="topk", hparams={"k": 64}, d_sae=8)
    with pytest.raises(ConfigError, match="k=64 is larger than d_sae=8"):
        spec.validate()  # a given d_sae is checked before any extraction, without placeholder sizes
    assert len(calls) == 1  # no second validation of the hyperparameters
    with pytest.raises(ConfigError, match="k=64 is larger than d_sae=8"):
        spec.build_sae(4)
    assert len(calls) == 1
    RunSpec(architecture="topk", hparams={"k": 64}, expansion=1).validate()  # d_sae = d_in: known at build only


def test_the_run_seed_is_the_sae_seed():
    spec = RunSpec(architecture="topk", hparams={"k": 2}, train=TrainConfig(seed=7))
    sae = spec.build_sae(8)
    assert sae.seed == 7 and "seed" not in json.dumps(sae.cfg.given())
    assert spec.hparams_dict() == {"k": 2, "seed": 7}  # as run.json and metrics.json have always shown it
    assert RunSpec(architecture="topk", hparams={"k": 2}).hparams_dict() == {"k": 2}


def test_an_old_run_json_reads_as_the_same_run_with_the_same_seed(tmp_path):
    old = _old_run(tmp_path)
    assert old.train.seed == 3 and old.hparams.given() == {"k": 2} and old.build_sae(8).seed == 3
    now = RunSpec(architecture="prob_topk", hparams={"k": 2}, expansion=4, train=TrainConfig(steps=4, batch_size=32, seed=3))
    assert old == now and old.comparable() == now.comparable()  # a resume is not refused
    (tmp_path / "again").mkdir()
    write_spec(tmp_path / "again", now, "probsae train")
    again = json.loads((tmp_path / "again" / "run.json").read_text())["spec"]
    assert again["hparams"] == OLD_SPEC["hparams"] and again["train"]["seed"] == 3


def test_an_old_run_json_with_an_untied_seed_takes_the_sae_seed(tmp_path):
    """A library-made spec could give the SAE a seed apart from the data's: the SAE's initial
    weights stay those it was trained from."""
    old = _old_run(tmp_path, {**OLD_SPEC, "hparams": {"k": 2, "seed": 5}, "train": {"seed": 0}})
    assert old.train.seed == 5 and old.build_sae(8).seed == 5


def test_hparams_of_another_architecture_are_refused():
    with pytest.raises(ConfigError, match="hparams must be a mapping or a TopKSAEConfig"):
        RunSpec(architecture="topk", hparams=get_class("relu").config_class())


def test_a_seed_out_of_the_64_bit_range_is_refused_before_any_extraction():
    with pytest.raises(ConfigError, match="seed must be an integer \\(64-bit\\)"):
        RunSpec(architecture="topk", hparams={"k": 4}, train=TrainConfig(seed=1 << 70)).validate()
