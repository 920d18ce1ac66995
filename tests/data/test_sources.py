"""probsae.data.sources: the BatchSource Protocol, one adapter per kind of data, and the dispatch."""

import pytest
import torch

from probsae.data.sources import (BatchSource, CacheSource, IterableSource, ResumableSource, StreamSource,
                                  TensorSource, batch_source)
from probsae.errors import ConfigError, InputError


class _Cache:
    n_tokens = 10

    def __init__(self):
        self.x = torch.arange(20.0).reshape(10, 2)

    def iter_batches(self, batch_size, shuffle=True, seed=0, drop_last=False):
        for i in range(0, 10, batch_size):
            if not (drop_last and i + batch_size > 10):
                yield self.x[i : i + batch_size]


class _Stream:
    batch_size = 4

    def __init__(self):
        self.state = {"windows": 0}

    def stream_state(self):
        return dict(self.state)

    def iter_from(self, state):
        start = (state or {}).get("windows", 0)
        for w in range(start, 3):
            self.state = {"windows": w + 1}
            yield {"h": torch.full((4, 2), float(w))}

    def __iter__(self):
        return self.iter_from(None)


def test_each_kind_of_data_gets_its_adapter_and_each_adapter_is_a_batch_source():
    kinds = {TensorSource: torch.zeros(8, 2), CacheSource: _Cache(), StreamSource: _Stream(),
             IterableSource: [torch.zeros(4, 2)]}
    for cls, data in kinds.items():
        source = batch_source(data)
        assert type(source) is cls and isinstance(source, BatchSource)
        assert batch_source(source) is source  # an adapter is used as it is
    assert isinstance(batch_source(_Stream()), ResumableSource)
    assert not isinstance(batch_source(torch.zeros(8, 2)), ResumableSource)
    with pytest.raises(InputError, match="data must be a tensor, an activation cache or an iterable of batches, got int"):
        batch_source(3)


def test_tensor_source_shuffles_full_batches_for_training_and_keeps_order_for_evaluation():
    x = torch.arange(14.0).reshape(7, 2)
    source = TensorSource(x)
    train = list(source.epoch(0, 3, seed=1))
    assert [b.shape[0] for b in train] == [3, 3] and source.steps_per_pass(3) == 2
    assert train[0].tolist() == list(source.epoch(0, 3, seed=1))[0].tolist()
    assert torch.equal(torch.cat(list(source.in_order(3))), x)
    assert list(TensorSource(torch.zeros(2)).in_order(4))[0].shape == (1, 2)  # one row
    with pytest.raises(InputError, match="must be a \\(N, d_in\\) tensor"):
        TensorSource(torch.zeros(2)).check(1)
    with pytest.raises(InputError, match="fewer than batch_size=8"):
        source.check(8)


def test_cache_source_drops_the_short_batch_in_training_only():
    source = CacheSource(_Cache())
    assert [b.shape[0] for b in source.epoch(0, 4, 0)] == [4, 4]
    assert [b.shape[0] for b in source.in_order(4)] == [4, 4, 2]
    assert source.steps_per_pass(4) == 2


def test_a_one_shot_iterable_keeps_the_batch_peeked_at_and_gives_one_pass():
    batches = [torch.full((2, 2), float(i)) for i in range(3)]
    source = IterableSource(iter(batches))
    assert source.one_shot and torch.equal(source.first(2, 0), batches[0])
    assert [float(b[0, 0]) for b in source.epoch(0, 2, 0)] == [0.0, 1.0, 2.0]
    assert list(source.epoch(1, 2, 0)) == []
    with pytest.raises(ConfigError, match="steps must be set"):
        source.steps_per_pass(2)
    assert IterableSource(batches).steps_per_pass(2) == 3
    with pytest.raises(InputError, match="data yielded a str"):
        list(IterableSource(["x"]).epoch(0, 2, 0))


def test_stream_source_checks_its_batch_size_and_resumes_at_its_position():
    source = StreamSource(_Stream())
    with pytest.raises(ConfigError, match="yields batches of 4 tokens but batch_size is 8"):
        source.check(8)
    it = source.epoch(0, 4, 0)
    next(it)
    position = source.position()
    assert position == {"windows": 1}
    assert [float(b["h"][0, 0]) for b in source.resume(position)] == [1.0, 2.0]
    with pytest.raises(ConfigError, match="steps must be set"):
        source.steps_per_pass(4)
