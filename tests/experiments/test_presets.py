"""Grid expansion and preset loading."""

from __future__ import annotations

import pytest

from probsae.errors import ConfigError
from probsae.experiments.presets import (expand_block, expand_grid, list_presets, load_config, member_name,
                                         parse_config, train_config_kwargs)


def test_block_is_cartesian_product_of_axes_and_variants():
    ms = expand_block({"architecture": ["topk", "prob_topk"], "k": [4, 8], "study": "pareto"})
    assert [m.name for m in ms] == ["topk-k=4", "topk-k=8", "prob_topk-k=4", "prob_topk-k=8"]
    assert all(m.studies == ["pareto"] for m in ms)

    ms = expand_block({"architecture": "prob_topk", "k": [8, 16], "study": "ablation",
                       "variants": [{}, {"lambda_mag": 0.0}, {"layernorm": False}, {"gate": "sigmoid"}]})
    assert [m.name for m in ms] == [
        "prob_topk-k=8", "prob_topk-k=8-lambda_mag=0", "prob_topk-k=8-layernorm=false", "prob_topk-k=8-gate=sigmoid",
        "prob_topk-k=16", "prob_topk-k=16-lambda_mag=0", "prob_topk-k=16-layernorm=false", "prob_topk-k=16-gate=sigmoid"]
    assert ms[1].hparams == {"k": 8, "lambda_mag": 0.0}


def test_grid_dedupes_members_and_merges_studies():
    blocks = [
        {"architecture": "prob_topk", "k": [8, 16], "study": ["pareto", "alive"]},
        {"architecture": "prob_topk", "k": 8, "beta_start": [0.5, 5.0], "study": "temperature"},  # 5.0 = default
        {"architecture": "relu", "l1_coeff": [0.01, 0.1]},
    ]
    ms = expand_grid(blocks)
    names = [m.name for m in ms]
    assert names == ["prob_topk-k=8", "prob_topk-k=16", "prob_topk-k=8-beta_start=0.5",
                     "relu-l1_coeff=0.01", "relu-l1_coeff=0.1"]
    assert ms[0].studies == ["pareto", "alive", "temperature"]
    assert ms[3].studies == ["pareto"]  # default study


def test_integer_for_float_default_is_canonicalised():
    a = expand_block({"architecture": "prob_topk", "k": 8, "beta_start": 5})
    b = expand_block({"architecture": "prob_topk", "k": 8})
    assert a[0].name == b[0].name == "prob_topk-k=8"
    assert member_name("relu", {"l1_coeff": 0.05}) == "relu-l1_coeff=0.05"


def test_sequence_valued_hyperparameters_are_named_compactly():
    assert member_name("topk", {"k": 8, "widths": [0.25, 1.0]}) == "topk-k=8-widths=0.25,1"
    assert member_name("topk", {"k": 8, "widths": (0.5, True)}) == "topk-k=8-widths=0.5,true"


def test_a_flat_list_for_a_sequence_valued_hyperparameter_is_one_value():
    """Issue 24, finding 18 in a sweep config: `prefix_fractions = [0.25, 0.5, 1]` is Matryoshka's one
    setting (as `--prefix-fractions 0.25,0.5,1` on the CLI), not three members of one fraction each;
    a list of lists is an axis of several settings."""
    one = expand_block({"architecture": "matryoshka_batchtopk", "k": 4, "prefix_fractions": [0.25, 0.5, 1]})
    assert [m.hparams["prefix_fractions"] for m in one] == [(0.25, 0.5, 1.0)]
    two = expand_block({"architecture": "matryoshka_batchtopk", "k": [4, 8],
                        "prefix_fractions": [[0.5, 1], [0.25, 0.5, 1]]})
    assert sorted((m.hparams["k"], m.hparams["prefix_fractions"]) for m in two) == [
        (4, (0.25, 0.5, 1.0)), (4, (0.5, 1.0)), (8, (0.25, 0.5, 1.0)), (8, (0.5, 1.0))]


@pytest.mark.parametrize("block, msg", [
    ({"architecture": "nope", "k": 4}, "unknown architecture"),
    ({"architecture": "topk", "lambda_mag": 0.0}, "unknown hyperparameter"),
    ({"architecture": "topk", "k": []}, "empty list"),
    ({"k": 4}, "no 'architecture'"),
    ({"architecture": "prob_topk", "gate": "relu"}, "gate"),
])
def test_bad_blocks_are_config_errors(block, msg):
    with pytest.raises(ConfigError, match=msg):
        expand_block(block)


def test_parse_config_rejects_unknown_keys():
    base = {"data": {"cache": "x"}, "grid": [{"architecture": "topk", "k": 4}]}
    parse_config(base)
    with pytest.raises(ConfigError, match="unknown \\[train\\]"):
        parse_config({**base, "train": {"stepz": 3}})
    with pytest.raises(ConfigError, match="unknown top-level"):
        parse_config({**base, "grdi": []})
    with pytest.raises(ConfigError, match="needs 'model'"):
        parse_config({"data": {"hook": "resid_pre.1"}, "grid": base["grid"]})
    with pytest.raises(ConfigError, match="both 'tokens' and 'steps'"):
        parse_config({**base, "train": {"tokens": 10, "steps": 3}})


def test_tokens_become_steps():
    assert train_config_kwargs({"tokens": 1000, "batch_size": 64})["steps"] == 16
    assert train_config_kwargs({"tokens": 1024, "batch_size": 64, "adam_betas": [0.9, 0.99]}) == {
        "steps": 16, "batch_size": 64, "adam_betas": (0.9, 0.99)}


def test_presets_load_with_the_papers_grids():
    assert {"minilm-cpu", "paper-gpt2", "paper-qwen3"} <= set(list_presets())
    g = load_config("paper-gpt2")
    names = {m.name for m in g.members()}
    assert {f"topk-k={k}" for k in (4, 8, 16, 24, 32)} <= names
    assert {f"prob_topk-k={k}" for k in (4, 8, 16, 24, 32)} <= names
    assert {f"relu-l1_coeff={v:g}" for v in (5, 8, 10, 15, 20, 40)} <= names
    assert {f"gated-l1_coeff={v:g}" for v in (0.05, 0.06, 0.09, 0.1)} <= names
    assert {"prob_topk-k=8-lambda_mag=0", "prob_topk-k=16-layernorm=false", "prob_topk-k=32-gate=sigmoid",
            "prob_topk-k=8-beta_start=0.5", "prob_topk-k=32-beta_start=10"} <= names
    assert g.data.model == "gpt2" and g.data.hook == "resid_pre.8" and g.data.corpus == "hf:openwebtext"
    kw = g.train.to_dict()
    assert kw["batch_size"] == 8192 and kw["lr"] == 5e-4 and kw["warmup_steps"] == 20_000
    assert kw["steps"] * 8192 >= 307_000_000 and g.sae.expansion == 16

    q = load_config("paper-qwen3")
    assert q.data.model == "Qwen/Qwen3-0.6B" and q.data.hook == "resid_pre.26"
    assert {m.hparams.get("k") for m in q.members() if m.architecture == "topk"} == {8, 16, 32, 64}

    m = load_config("minilm-cpu")
    assert m.data.model == "minilm" and m.data.corpus == "pydoc"
    mem = m.members()
    assert {4, 8, 16, 32} <= {x.hparams["k"] for x in mem if x.architecture == "topk"}
    assert {4, 8, 16, 32} <= {x.hparams["k"] for x in mem if x.architecture == "prob_topk"}
    studies = {s for x in mem for s in x.studies}
    assert {"pareto", "ablation", "temperature"} <= studies
    assert any(x.architecture == "relu" for x in mem) and any(x.architecture == "gated" for x in mem)


def test_cpu_budget_preset_at_3m_is_the_cpu_grid_member_for_member():
    """offline-en-cpu-budgets' 3M budget must train exactly offline-en-cpu's core grid (same data, SAE
    and training settings, same members), so runs of either preset at 3M are interchangeable."""
    from probsae.experiments.presets import budget_configs

    cpu, budgets = load_config("offline-en-cpu"), load_config("offline-en-cpu-budgets")
    subs = dict(budget_configs(budgets))
    assert list(subs) == ["tokens=300000", "tokens=1000000", "tokens=3000000"]
    at3m = subs["tokens=3000000"]
    assert at3m.data == cpu.data and at3m.sae == cpu.sae
    assert at3m.train.to_dict() == cpu.train.to_dict()
    assert at3m.sweep == cpu.sweep
    core = [m for m in cpu.members() if "when" in m.studies]
    assert at3m.members() == core and len(core) == 24
    small = subs["tokens=300000"].train.to_dict()
    assert small["steps"] == 74 and small["warmup_steps"] == 37


def test_every_preset_loads_to_the_members_and_settings_recorded_from_the_dict_loader():
    """Issue 25: typed sections change no preset. Every preset (each budget of one with budgets)
    has the members, member specs, sweep.json ``config`` and training config that the dict-based
    loader gave (recorded from it in preset_members.json). The one difference: a member's
    ``train.checkpoint_every`` is now the interval it trains with ([sweep] checkpoint_every), where
    the dict loader left the library's default in the member and applied the sweep's at run time; and
    a member's ``train.seed`` is its grid seed (one seed per run, issue 25), where the dict loader left
    the [train] seed there and tied the SAE's seed to the grid's by hand."""
    import json
    from pathlib import Path

    from probsae.experiments.presets import budget_configs
    from probsae.io import strict_json

    expected = json.loads((Path(__file__).parent / "preset_members.json").read_text())
    got = {f"{name} {sub}".strip(): c for name in list_presets() for sub, c in budget_configs(load_config(name))}
    assert sorted(got) == sorted(expected)
    for key, cfg in got.items():
        exp = expected[key]
        config = strict_json(cfg.to_dict())
        assert Path(config.pop("source")).name == Path(exp["config"].pop("source")).name
        assert config == exp["config"], key
        assert strict_json(cfg.train.to_dict()) == exp["train_config"], key
        members = cfg.members()
        assert [[m.name, m.architecture, strict_json(m.hparams), m.studies, m.group] for m in members] == exp["members"]
        for m in members:
            spec = m.to_dict()
            seed = {"seed": m.sae_hparams().get("seed", 0)}  # the run's one seed: the member's (its SAE's init seed too)
            assert spec.pop("data") == exp["data"] and spec.pop("train") == {**exp["train_config"], **seed}, (key, m.name)
            assert {k: v for k, v in spec.items() if k not in ("architecture", "hparams", "studies", "group")} \
                == exp["member_common"], (key, m.name)


def test_presets_are_package_data_found_through_importlib_resources():
    """Issue 25: the presets ship inside the package (probsae/presets/*.toml, pyproject package-data),
    so a wheel install finds them; they have no second copy in the repository."""
    import tomllib
    from importlib import resources
    from pathlib import Path

    from probsae.experiments import presets

    root = Path(__file__).resolve().parents[2]
    shipped = resources.files("probsae") / "presets"
    assert presets.CONFIG_DIR == shipped
    names = {p.name[:-len(".toml")] for p in shipped.iterdir() if p.name.endswith(".toml")}
    assert {"minilm-cpu", "paper-gpt2", "smollm2-cpu"} <= names <= set(list_presets())
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "presets/*.toml" in package_data["probsae"]
    assert not list(root.glob("configs/*.toml"))


def test_presets_resolve_from_a_zipped_install(tmp_path, monkeypatch):
    """Package data need not be files on disk (a zip import): names resolve through Traversable."""
    import zipfile

    from probsae.experiments import presets

    text = (presets.CONFIG_DIR / "minilm-cpu.toml").read_text()
    with zipfile.ZipFile(tmp_path / "site.zip", "w") as z:
        z.writestr("probsae/presets/zipped.toml", text.replace('name = "minilm-cpu"', 'name = "zipped"'))
    monkeypatch.setattr(presets, "CONFIG_DIR", zipfile.Path(tmp_path / "site.zip", "probsae/presets/"))
    monkeypatch.delenv("PROBSAE_CONFIGS", raising=False)
    assert list_presets() == ["zipped"]
    cfg = load_config("zipped")
    assert cfg.name == "zipped" and len(cfg.members()) == 24
