"""probsae.runs.source: a group's data source, its steps and its row widths (read from the held-out
caches, not from an extra model forward)."""

from dataclasses import replace
from types import SimpleNamespace

from probsae.data.prepare import DataSpec
from probsae.runs.source import DataSource, cached_source, steps_for
from probsae.runs.spec import RunSpec
from probsae.training.config import TrainConfig


def cache(d_in: int, n_tokens: int = 100):
    return SimpleNamespace(d_in=d_in, n_tokens=n_tokens, manifest={})


def spec(**train) -> RunSpec:
    return RunSpec(architecture="topk", hparams={"k": 2}, data=DataSpec(model="m", hook="resid_pre.1", corpus="c"),
                   train=TrainConfig(batch_size=10, **train))


def test_widths_come_from_each_hook_points_heldout_cache():
    src = DataSource(train=object(), heldout={"resid_pre.1": cache(16), "resid_pre.2": cache(24)}, steps=5)
    assert src.width("resid_pre.1") == 16 and src.width("resid_pre.2") == 24
    assert src.held("resid_pre.2").d_in == 24
    assert src.stream is src.train  # no cached tokens: the batches come from the model


def test_a_source_of_one_hook_point_answers_for_any_spec():
    src = cached_source(spec(), cache(16, n_tokens=95), cache(16, n_tokens=30))
    assert src.width("another.name.of.it") == 16 and src.held(None).n_tokens == 30
    assert src.stream is None and src.n_train == 95 and src.hooks == ["resid_pre.1"]


def test_steps_from_the_config_else_epochs_of_the_cache_else_max_tokens():
    assert steps_for(spec(steps=7), 1000) == 7
    assert steps_for(replace(spec(), epochs=2.0), 95) == 19  # int(2 × 95) // 10
    assert steps_for(spec(), 5) == 1  # at least one step
    s = spec()
    s.data.max_tokens = 55
    assert steps_for(s, None) == 5
