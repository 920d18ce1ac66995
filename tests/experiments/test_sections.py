"""The typed sections of a sweep config (issue 25): [data] as DataSpec + SweepCaches, [sae] as
SharedSAE, [train] as TrainConfig, [sweep] as SweepSettings; validated at load, errors naming the
file, the section and the key; one default per setting."""

from __future__ import annotations

import dataclasses

import pytest

from probsae.data.prepare import DataSpec
from probsae.errors import ConfigError
from probsae.experiments.presets import parse_config
from probsae.experiments.sections import SharedSAE, SweepCaches, SweepSettings
from probsae.fielddocs import field_docs
from probsae.runs.spec import RunSpec
from probsae.training.config import TrainConfig

DATA = {"model": "minilm", "hook": "resid_pre.2", "corpus": "pydoc"}
GRID = [{"architecture": "topk", "k": 2}]


def test_sections_are_typed():
    cfg = parse_config({"data": {**DATA, "cache_dir": "c"}, "sae": {"d_sae": 12, "seed": 3},
                        "train": {"tokens": 1000, "batch_size": 100}, "sweep": {"eval_batch_size": 64}, "grid": GRID})
    assert cfg.data == DataSpec(**DATA) and cfg.caches == SweepCaches(cache_dir="c")
    assert cfg.sae == SharedSAE(d_sae=12, seed=3) and cfg.sae.shared() == {"seed": 3}
    assert isinstance(cfg.train, TrainConfig) and cfg.train.steps == 10
    assert cfg.sweep == SweepSettings(eval_batch_size=64)
    assert cfg.to_dict()["data"] == {**DATA, "cache_dir": "c"}  # sweep.json records the config as written
    assert cfg.members()[0].cache_dir == "c" and cfg.corpus == "pydoc"
    over = parse_config({"data": {"cache": "x", "corpus": "pydoc"}, "grid": GRID})
    assert over.data is None and over.caches.cache == "x" and over.corpus == "pydoc"


def test_every_setting_has_one_default():
    cfg = parse_config({"data": DATA, "grid": GRID})
    assert cfg.train == TrainConfig() and cfg.caches.cache_dir == RunSpec.cache_dir
    assert cfg.sae.expansion == RunSpec.expansion and cfg.sweep == SweepSettings()
    assert parse_config({"data": DATA, "sae": {"expansion": 4.0}, "grid": GRID}).members()[0].expansion == 4
    (m,) = cfg.members()
    assert m.train.checkpoint_every == TrainConfig.checkpoint_every and m.train.log_every == TrainConfig.log_every


def test_sweep_checkpoint_every_is_the_members_unless_train_sets_it():
    assert parse_config({"data": DATA, "sweep": {"checkpoint_every": 7}, "grid": GRID}).train.checkpoint_every == 7
    both = parse_config({"data": DATA, "train": {"checkpoint_every": 3}, "sweep": {"checkpoint_every": 7}, "grid": GRID})
    assert both.train.checkpoint_every == 3 and both.members()[0].train.checkpoint_every == 3


@pytest.mark.parametrize("section, value, msg", [
    ("sweep", {"eval_batch_size": 0}, r"where\.toml: \[sweep\] eval_batch_size must be"),
    ("sweep", {"budgets": [0]}, r"where\.toml: \[sweep\] budgets must be"),
    ("sweep", {"downstream_members_per_pass": "4"}, r"\[sweep\] downstream_members_per_pass"),
    ("sweep", {"checkpoint_every": -1}, r"\[sweep\] checkpoint_every"),
    ("sae", {"expansion": 0}, r"where\.toml: \[sae\] expansion"),
    ("sae", {"seed": 1.5}, r"\[sae\] seed"),
    ("data", {"cache": 3}, r"where\.toml: \[data\] cache must be a path"),
    ("sweep", {"max_members": 2}, r"where\.toml: unknown \[sweep\] key\(s\) \['max_members'\]"),
])
def test_bad_values_name_the_file_section_and_key(section, value, msg):
    raw = {"data": dict(DATA), "grid": GRID}
    raw[section] = {**raw.get(section, {}), **value}
    with pytest.raises(ConfigError, match=msg):
        parse_config(raw, source="where.toml")


@pytest.mark.parametrize("cls", [SweepCaches, SharedSAE, SweepSettings])
def test_every_field_is_documented(cls):
    docs = field_docs(cls)
    assert all(docs.get(f.name) for f in dataclasses.fields(cls)), cls


def test_an_sae_seed_out_of_the_64_bit_range_is_refused_at_load():
    import pytest

    from probsae.errors import ConfigError
    from probsae.experiments.sections import SharedSAE

    with pytest.raises(ConfigError, match="seed must be an integer \\(64-bit\\)"):
        SharedSAE(seed=1 << 70).validate()
