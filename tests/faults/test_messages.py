"""Issue 14, misleading messages: each says what is wrong."""

import re

from probsae.cli.main import build_parser, main


def test_unreadable_weights_are_not_called_corrupt(run_copy, fails_cleanly, deny):
    deny("sae.safetensors")
    line = fails_cleanly(["eval", str(run_copy), "--no-downstream"], "cannot read", "sae.safetensors (permission denied)")
    assert "corrupt" not in line


def test_unreadable_checkpoint_is_not_called_corrupt(run_copy, train_args, fails_cleanly, deny):
    deny("checkpoint.safetensors")
    line = fails_cleanly(train_args(run_copy), "cannot read", "checkpoint.safetensors (permission denied)")
    assert "corrupt" not in line and "Delete" not in line


def test_an_unreadable_cache_shard_is_not_called_corrupt(cache_copy, tmp_path, train_args, fails_cleanly, deny):
    deny("shard_00000.safetensors")
    line = fails_cleanly(train_args(tmp_path / "run", cache=cache_copy), "cannot read",
                         "shard_00000.safetensors (permission denied)")
    assert "corrupt" not in line and "No such file" not in line


def test_an_empty_held_out_split_says_why(assets, tmp_path, train_args, fails_cleanly):
    small = tmp_path / "small.txt"
    small.write_text("\n\n".join((assets / "corpus.txt").read_text().split("\n\n")[:5]))
    argv = train_args(tmp_path / "run", cache=tmp_path / "cache")
    argv[argv.index("--corpus") + 1] = str(small)
    fails_cleanly(argv, "the holdout split of corpus", "fewer than 20 non-blank documents", "holdout_every")


def test_options_are_checked_before_any_extraction(tmp_path, train_args, fails_cleanly):
    argv = train_args(tmp_path / "run", "--steps", "0")
    argv[argv.index("--model") + 1] = str(tmp_path / "no-such-model")  # never reached
    fails_cleanly(argv, "steps must be a positive integer")
    argv = train_args(tmp_path / "run", "--batch-size", "0")
    fails_cleanly(argv, "batch_size must be an integer ≥ 1")


def test_stale_temporaries_of_a_killed_run_are_removed(run_copy, cache_copy, tmp_path, train_args):
    dead = ".checkpoint.safetensors.probsae-tmp-999999999-deadbeef"  # no such process
    (run_copy / dead).write_bytes(b"torn")
    assert main(train_args(run_copy, cache=cache_copy)) == 0
    assert not (run_copy / dead).exists()
    fresh = tmp_path / "fresh_cache"
    stale = fresh / next(p.name for p in cache_copy.iterdir() if "-train-" in p.name)
    stale.mkdir(parents=True)
    (stale / ".shard_00000.safetensors.probsae-tmp-999999999-deadbeef").write_bytes(b"torn")
    assert main(train_args(tmp_path / "run2", cache=fresh)) == 0
    assert not list(stale.glob(".*probsae-tmp*"))


def test_checkpoint_every_help_shows_the_commands_default():
    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    action = next(a for a in train._actions if "--checkpoint-every" in a.option_strings)
    assert action.default == 100
    entry = re.search(r"--checkpoint-every CHECKPOINT_EVERY\s+(.*?)\n  --", train.format_help(), re.S).group(1)
    assert "(default: 100)" in entry and "default: 0" not in entry



def test_export_and_import_remove_stale_temporaries(reference, tmp_path):
    exp, imp = tmp_path / "exp", tmp_path / "imp"
    stale = ".cfg.json.probsae-tmp-999999999-deadbeef"
    for d in (exp, imp):
        d.mkdir()
        (d / stale).write_text("torn")
    assert main(["export", str(reference), "--format", "saelens", "--out", str(exp)]) == 0
    assert main(["import", str(exp), "--format", "saelens", "--out", str(imp)]) == 0
    assert not (exp / stale).exists() and not (imp / stale).exists()
