"""Issue 24, finding 22 (help and docs): the --hook help lists every hook kind, every option of
every subcommand has help, train's hyperparameter flags are grouped by the architectures they
apply to, the README's "What next" uses the run main.sh makes, and ``probsae --help`` does not
import torch."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from probsae.cli.main import SUBCOMMANDS, build_parser
from probsae.data.hooks import LAYER_KINDS
from probsae.saes.registry import architectures, get_class

ROOT = Path(__file__).resolve().parents[2]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_hook_help_lists_every_hook_kind():
    train = _subparsers(build_parser())["train"]
    help_text = next(a.help for a in train._actions if "--hook" in a.option_strings)
    for kind in LAYER_KINDS:
        assert f"{kind}.L" in help_text, (kind, help_text)
    assert "module:<dotted.name>" in help_text


def test_every_option_of_every_subcommand_has_help():
    missing = []
    for name, p in _subparsers(build_parser()).items():
        for a in p._actions:
            if a.option_strings and not (a.help or "").strip():
                missing.append(f"{name} {a.option_strings[-1]}")
    assert not missing, missing


def test_train_hyperparameters_are_grouped_by_the_architectures_they_apply_to():
    owners: dict[str, set[str]] = {}
    for arch in architectures():
        for f in fields(get_class(arch).config_class):
            owners.setdefault(f.name, set()).add(arch)
    train = _subparsers(build_parser())["train"]
    checked = 0
    for group in train._action_groups:
        for a in group._group_actions:
            if not a.dest.startswith("hp_") or a.dest == "hp_hparam":
                continue
            archs = owners[a.dest[3:]]
            title = group.title or ""
            if archs == set(architectures()):
                assert title == "SAE options (every architecture)", (a.dest, title)
            else:
                named = set(re.fullmatch(r"hyperparameters of (.+) only", title).group(1).split(", "))
                assert named == archs, (a.dest, title)
            checked += 1
    assert checked >= 20
    text = train.format_help()
    assert "hyperparameters of prob_topk only:" in text and "hyperparameters of relu, gated only:" in text


def test_readme_what_next_uses_the_run_main_sh_makes():
    main_sh = (ROOT / "scripts" / "main.sh").read_text()
    made = re.search(r"--out (runs/\S+)", main_sh).group(1)
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## What next", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    used = re.findall(r"probsae (?:eval|dashboard|autointerp|export) (runs/\S+)", block)
    assert len(used) == 4 and set(used) == {made}, used


def test_top_level_help_does_not_import_torch():
    code = ("import sys\nfrom probsae.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "COMMAND" in out.stdout and "train" in out.stdout
    assert out.stdout.strip().endswith("TORCH False"), out.stdout[-300:]
