"""Issue 24, finding 18: a list-valued hyperparameter (Matryoshka's --prefix-fractions) is passed
whole, while a scalar one given as a comma list is still a sweep."""

import json

from probsae.cli.main import build_parser, main
from probsae.cli.train import specs_from_args


def _matryoshka(argv: list[str], *extra: str) -> list[str]:
    argv = list(argv)
    argv[argv.index("--arch") + 1] = "matryoshka_batchtopk"
    return argv + list(extra)


def test_prefix_fractions_is_one_run_with_the_whole_list(tmp_path, train_args):
    out = tmp_path / "m"
    argv = _matryoshka(train_args(out), "--prefix-fractions", "0.25,0.5,1")
    named = specs_from_args(build_parser().parse_args(argv))
    assert [(n, s.hparams["prefix_fractions"]) for n, s in named] == [("", (0.25, 0.5, 1.0))]
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["prefix_fractions"] == [0.25, 0.5, 1.0]
    assert not [p for p in out.iterdir() if p.is_dir()]  # not a sweep of one-value runs


def test_a_scalar_comma_list_beside_it_is_still_a_sweep(tmp_path, train_args):
    argv = _matryoshka(train_args(tmp_path / "m"), "--prefix-fractions", "0.25,1", "--k", "2,3")
    named = specs_from_args(build_parser().parse_args(argv))
    assert [(n, s.hparams["k"], s.hparams["prefix_fractions"]) for n, s in named] == \
        [("matryoshka_batchtopk-k=2-prefix_fractions=0.25,1", 2, (0.25, 1.0)),
         ("matryoshka_batchtopk-k=3-prefix_fractions=0.25,1", 3, (0.25, 1.0))]
    argv = _matryoshka(train_args(tmp_path / "m"), "--hparam", "prefix_fractions=[0.5, 1]")
    assert [s.hparams["prefix_fractions"] for _, s in specs_from_args(build_parser().parse_args(argv))] == [[0.5, 1]]


def test_help_says_the_list_is_one_value(capsys):
    try:
        main(["train", "--help"])
    except SystemExit:
        pass
    out = " ".join(capsys.readouterr().out.split())
    assert "--prefix-fractions PREFIX_FRACTIONS" in out
    assert "(a comma list is the one value, not a sweep)" in out
