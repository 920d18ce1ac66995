"""cli/options: flags from dataclass fields, comma lists through public argparse API only, and one
default per setting (issue 25): a flag left out means the dataclass's default."""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from probsae.cli.main import build_parser
from probsae.cli.options import add_dataclass_options, comma_list, list_valued
from probsae.data.prepare import DataSpec
from probsae.runs.spec import RunSpec
from probsae.training.config import TrainConfig

SRC = Path(__file__).resolve().parents[2] / "src" / "probsae" / "cli"


@dataclass
class _Toy:
    k: int = 4
    """Selected latents."""
    fractions: tuple[float, ...] = (1.0,)
    """Prefix fractions."""


def test_comma_lists_sweep_a_scalar_and_are_the_one_value_of_a_list_field():
    p = argparse.ArgumentParser()
    added = add_dataclass_options(p, _Toy, comma_lists=True, whole=list_valued(_Toy))
    assert added == ["k", "fractions"]
    assert p.parse_args(["--k", "4,8"]).k == [4, 8] and p.parse_args(["--k", "4"]).k == 4
    assert p.parse_args(["--fractions", "0.5,1"]).fractions == (0.5, 1.0)
    text = " ".join(p.format_help().split())
    assert "(a comma list is the one value, not a sweep)" in text and "[library default: 4]" in text
    assert comma_list(int)("3, 5") == [3, 5] and comma_list(int).__name__ == "int"
    plain = argparse.ArgumentParser()
    add_dataclass_options(plain, _Toy)
    assert plain.parse_args(["--k", "8"]).k == 8 and plain.parse_args([]).k is None


def test_the_cli_uses_no_private_argparse_api():
    """``_group_actions``/``_actions`` were patched to make comma-list flags; now add_dataclass_options
    builds them (a formatter subclass overriding _get_help_string is argparse's documented extension)."""
    for path in SRC.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"\._(group_)?actions\b", text), path.name


def _defaults(cls) -> dict:
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(cls)}


def _subparser(name: str) -> argparse.ArgumentParser:
    return build_parser(only=name)._subparsers._group_actions[0].choices[name]  # the test may look inside


def test_train_and_cache_flags_default_to_their_dataclass_defaults():
    """A flag backed by a dataclass field (TrainConfig, DataSpec, RunSpec) defaults to None ("not
    given": the field's default) or to that same default, so no setting has a second default."""
    homes = {"train_": _defaults(TrainConfig), "data_": _defaults(DataSpec), "": _defaults(RunSpec)}
    homes[""]["arch"] = homes[""]["architecture"]
    checked = 0
    for name in ("train", "cache", "sweep"):
        for a in _subparser(name)._actions:
            for prefix, defaults in homes.items():
                field = a.dest[len(prefix):] if a.dest.startswith(prefix) else None
                if field in defaults:
                    assert a.default is None or a.default == defaults[field], (name, a.dest, a.default)
                    checked += 1
                    break
    assert checked >= 40


def test_train_without_flags_runs_the_default_run_spec():
    from probsae.cli.train import interrupted, specs_from_args

    args = build_parser(only="train").parse_args(["train"])
    ((name, spec),) = specs_from_args(args)
    assert name == "" and spec == RunSpec()
    assert spec.train.checkpoint_every == TrainConfig.checkpoint_every > 0  # a killed run resumes
    assert f"one every {TrainConfig.checkpoint_every} steps" in interrupted(args)
