"""BenchSettings refuses what no probe can use."""

import pytest

from probsae.bench.settings import BenchSettings
from probsae.errors import ConfigError


@pytest.mark.parametrize("bad", [{"ks": ()}, {"ks": (1, 0)}, {"n_train": 1}, {"n_test": 0}, {"batch_size": 0},
                                 {"probe_context": -4}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        BenchSettings(**bad)


def test_defaults_follow_saebench_plus_k20():
    s = BenchSettings()
    assert s.ks == (1, 2, 5, 20) and s.probe_context == 128 and s.metrics[0] == "sparse_probing"
