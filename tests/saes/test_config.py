"""Configs hold hyperparameters only: the sizes are the constructor's, checked once at build."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

import probsae
from probsae.errors import ConfigError
from probsae.saes import get_class
from probsae.saes.registry import build_config


@pytest.mark.parametrize("arch", probsae.ARCHITECTURES)
def test_configs_hold_no_sizes(arch):
    names = {f.name for f in fields(get_class(arch).config_class)}
    assert not names & {"d_in", "d_sae", "seed"}
    assert set(probsae.hyperparameters(arch)) == names | {"seed"}  # seed: the run's, which a grid may vary


def test_the_constructor_takes_the_sizes_and_leaves_its_config_alone():
    cfg = build_config("prob_topk", k=4)
    sae = get_class("prob_topk")(cfg, 8, 64)
    assert (sae.d_in, sae.d_sae) == (8, 64) and sae.W_dec.shape == (64, 8)
    assert cfg.init == "auto" and sae.cfg.init == "orthogonal" and sae.cfg is not cfg
    other = get_class("prob_topk")(cfg, 16, 32)  # one config, two sizes
    assert other.W_dec.shape == (32, 16) and cfg.init == "auto"


def test_size_checks_are_made_at_build():
    cfg = build_config("topk", k=16)  # valid without sizes
    with pytest.raises(ConfigError, match="k=16 is larger than d_sae=8"):
        get_class("topk")(cfg, 4, 8)
    with pytest.raises(ConfigError, match="d_in must be a positive integer"):
        probsae.build_sae("relu", d_in=0, d_sae=8)
    with pytest.raises(ConfigError, match="coincide"):
        get_class("matryoshka_batchtopk")(build_config("matryoshka_batchtopk", k=1,
                                                       prefix_fractions=(0.5, 0.6, 1.0)), 4, 4)


def test_config_json_records_the_sizes_in_the_config_object(tmp_path):
    sae = probsae.build_sae("topk", d_in=8, d_sae=32, k=4, seed=3)
    sae.save(tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())["config"]
    assert list(cfg) == ["d_in", "d_sae", "normalize", "seed", "init", "k", "aux_k", "aux_coeff"]
    assert (cfg["d_in"], cfg["d_sae"], cfg["seed"], cfg["init"]) == (8, 32, 3, "unit")
    back = probsae.load_sae(tmp_path / "s")
    assert (back.d_in, back.d_sae, back.seed, back.cfg.init) == (8, 32, 3, "unit")


def test_the_seed_is_the_constructors():
    cfg = build_config("topk", k=2)
    a, b = get_class("topk")(cfg, 8, 16, seed=3), probsae.build_sae("topk", d_in=8, d_sae=16, k=2, seed=3)
    assert a.seed == b.seed == 3 and a.W_dec.equal(b.W_dec)
    assert not a.W_dec.equal(get_class("topk")(cfg, 8, 16).W_dec)  # the default seed, 0
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        build_config("topk", seed=3)  # not a hyperparameter of the architecture
    with pytest.raises(ConfigError, match="seed must be an integer"):
        probsae.build_sae("topk", d_in=8, d_sae=16, k=2, seed=2.5)


def test_a_config_is_validated_when_constructed_and_remembers_what_was_given():
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        get_class("topk").config_class(k=0)
    cfg = build_config("prob_topk", k=8, lambda_mag=1e-4)  # lambda_mag given at its default
    assert cfg.given() == {"k": 8, "lambda_mag": 1e-4} and str(cfg) == "{'k': 8, 'lambda_mag': 0.0001}"
    assert get_class("topk").config_class(k=4).given() == {"k": 4}  # constructed directly: the non-defaults
