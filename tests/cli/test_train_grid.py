"""`probsae train` comma lists: the sweep's grid expander and its member names (``topk-k=4``)."""

import json

import pytest

from probsae.cli.main import build_parser, main
from probsae.cli.train import specs_from_args
from probsae.experiments.presets import member_name

BASE = ["train", "--model", "m", "--hook", "resid_pre.1", "--corpus", "c.txt", "--no-progress"]


def named(*extra: str):
    return specs_from_args(build_parser().parse_args(BASE + list(extra)))


def test_architectures_and_k_expand_to_sweep_members_with_the_sweeps_names():
    runs = named("--arch", "topk,prob_topk", "--k", "8,16", "--seed", "3")
    assert [n for n, _ in runs] == ["topk-k=8", "topk-k=16", "prob_topk-k=8", "prob_topk-k=16"]
    for name, spec in runs:
        assert name == member_name(spec.architecture, {"k": spec.hparams["k"]})
        assert spec.hparams == {"k": spec.hparams["k"], "seed": 3}  # as given: run.json compares it on resume


def test_a_fixed_hyperparameter_is_in_the_names_as_in_a_sweep_and_hooks_lead():
    assert [n for n, _ in named("--arch", "prob_topk", "--k", "4,8", "--lambda-mag", "0.5")] == \
        ["prob_topk-k=4-lambda_mag=0.5", "prob_topk-k=8-lambda_mag=0.5"]
    runs = named("--arch", "topk", "--k", "4", "--hook", "resid_pre.1,resid_pre.2")
    assert [(n, s.data.hook) for n, s in runs] == [("resid_pre.1-topk-k=4", "resid_pre.1"),
                                                  ("resid_pre.2-topk-k=4", "resid_pre.2")]


def test_one_run_has_no_name_and_keeps_its_hyperparameters_as_given():
    assert [(n, s.hparams) for n, s in named("--arch", "prob_topk", "--k", "32", "--lambda-mag", "0.0001")] == \
        [("", {"k": 32, "lambda_mag": 0.0001})]


def test_an_unknown_architecture_in_a_list_is_argparses_invalid_choice(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(BASE + ["--arch", "topk,nope"])
    assert e.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_a_flag_of_one_architecture_is_refused_for_a_list_that_holds_another(capsys):
    assert main(BASE + ["--arch", "topk,relu", "--k", "4"]) == 2
    assert "--k do not apply to --arch relu" in capsys.readouterr().err


def test_two_architectures_train_on_one_cache_into_their_member_directories(assets, tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["train", "--arch", "topk,batchtopk", "--k", "2", "--expansion", "2", "--model", str(assets / "model"),
            "--hook", "resid_pre.2", "--corpus", str(assets / "corpus.txt"), "--context-length", "32",
            "--eval-tokens", "200", "--batch-size", "64", "--steps", "4", "--no-progress",
            "--cache-dir", str(assets / "cache"), "--out", str(out)]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["batchtopk-k=2", "topk-k=2"]
    for arch in ("topk", "batchtopk"):
        m = json.loads((out / f"{arch}-k=2" / "metrics.json").read_text())
        assert m["architecture"] == arch and m["name"] == f"{arch}-k=2" and m["train_final"]["step"] == 4
    printed = capsys.readouterr().out
    assert "2 SAEs on one activation stream" in printed and "batchtopk-k=2" in printed


def test_a_grid_an_earlier_probsae_named_k4_resumes_in_its_directories(tmp_path, capsys):
    from probsae.cli.train import resumable_names

    runs = named("--arch", "topk", "--k", "2,3,4", "--hook", "resid_pre.1,resid_pre.2")
    for old in ("resid_pre.1-k2", "resid_pre.2-k3"):  # started by an earlier probsae
        (tmp_path / old).mkdir()
        (tmp_path / old / "run.json").write_text("{}")
    (tmp_path / "resid_pre.2-topk-k=3").mkdir()  # the new name is taken: it wins
    assert [n for n, _ in resumable_names(tmp_path, runs)] == [
        "resid_pre.1-k2", "resid_pre.1-topk-k=3", "resid_pre.1-topk-k=4",
        "resid_pre.2-topk-k=2", "resid_pre.2-topk-k=3", "resid_pre.2-topk-k=4"]
    assert "a new grid names it resid_pre.1-topk-k=2" in capsys.readouterr().err
    assert resumable_names(tmp_path, named("--arch", "topk,batchtopk", "--k", "2,3")) == \
        named("--arch", "topk,batchtopk", "--k", "2,3")
