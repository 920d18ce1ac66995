"""One --progress/--no-progress flag on every command; --no-progress silences everything,
including transformers' bars; train shows one line per SAE of a sweep pass."""

import argparse

import pytest

import torch

import probsae
from probsae import progress
from probsae.cli.main import build_parser, main


def test_every_command_has_the_same_boolean_flag():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) >= {"train", "eval", "cache", "sweep", "report", "autointerp", "dashboard", "export", "import"}
    for name, p in sub.choices.items():
        flags = [a for a in p._actions if "--progress" in a.option_strings]
        assert len(flags) == 1 and isinstance(flags[0], argparse.BooleanOptionalAction), name
        assert "--no-progress" in flags[0].option_strings and flags[0].default is None
        assert not [a for a in p._actions if a is not flags[0] and "progress" in a.dest], name   # no second flag


def test_no_progress_silences_transformers_and_our_bars(monkeypatch, capsys):
    from transformers.utils import logging as tlog

    seen = {}

    def fake_run(args):
        seen["transformers"] = tlog.is_progress_bar_enabled()
        seen["ours"] = progress.enabled()
        with progress.bar(total=3, desc="work") as b:
            b.update(3)
        progress.say("status line")
        return 0

    import probsae.cli.report as report_cmd
    monkeypatch.setattr(report_cmd, "run", fake_run)
    assert main(["report", "x", "--no-progress"]) == 0
    assert seen == {"transformers": False, "ours": False} and capsys.readouterr().err == ""
    assert main(["report", "x", "--progress"]) == 0
    err = capsys.readouterr().err
    assert seen == {"transformers": True, "ours": True} and "work" in err and "[probsae] status line" in err
    assert main(["report", "x"]) == 0                  # default off a terminal (pytest's stderr): status lines
    err = capsys.readouterr().err
    assert seen == {"transformers": False, "ours": True}
    assert "[probsae] work: 3/3 it (100 %)" in err and "done in" in err and "\r" not in err
    assert tlog.is_progress_bar_enabled() and progress._STATE is None     # restored after the command


def test_sweep_pass_shows_each_member_on_its_own_line(tmp_path, capsys):
    x = torch.randn(512, 8)
    saes = [probsae.build_sae("topk", d_in=8, d_sae=16, k=k) for k in (2, 4)]
    with progress.configured(True):
        probsae.train(saes, x, probsae.TrainConfig(steps=8, batch_size=64, log_every=4),
                      run_dirs=[tmp_path / "topk-k=2", tmp_path / "topk-k=4"])
    err = capsys.readouterr().err
    assert "train 2 SAEs" in err
    lines = {name: [l for l in err.replace("\r", "\n").splitlines() if l.strip().startswith(name)]
             for name in ("topk-k=2", "topk-k=4")}
    assert lines["topk-k=2"] and lines["topk-k=4"]
    assert "L0 2.0" in lines["topk-k=2"][-1] and "L0 4.0" in lines["topk-k=4"][-1]   # each its own numbers
    assert "alive 16 (last " in lines["topk-k=2"][-1]


def test_log_bar_prints_a_status_line_every_interval_and_at_the_end():
    lines, now = [], [0.0]
    b = progress.LogBar(total=4_000_000, desc="train", unit="tok", every=60, clock=lambda: now[0], write=lines.append)
    b.update(100_000)
    assert lines == []                                  # nothing before the interval
    now[0] = 61.0
    b.set_postfix_str("loss 0.1")
    b.update(1_000_000)
    assert len(lines) == 1
    assert lines[0].startswith("[probsae] train: 1.1M/4M tok (28 %), 18,033 tok/s, ") and "left" in lines[0]
    assert lines[0].endswith("loss 0.1")
    now[0] = 90.0
    b.update(10)
    assert len(lines) == 1                              # still within the interval
    b.close()
    b.close()
    assert len(lines) == 2 and "done in 2 min" in lines[1]


def test_status_lines_in_a_log_and_tqdm_on_request(monkeypatch):
    monkeypatch.setattr(progress, "terminal", lambda: False)
    with progress.configured(None):
        assert isinstance(progress.bar(total=3, desc="x"), progress.LogBar)
    with progress.configured(True):
        assert not isinstance(progress.bar(total=3, desc="x"), progress.LogBar)
    with progress.configured(False):
        assert isinstance(progress.bar(total=3, desc="x"), progress._Silent)
        assert not isinstance(progress.bar(total=3, desc="x"), progress.LogBar)


def test_a_log_bar_left_by_an_exception_says_stopped_not_done():
    lines = []
    with pytest.raises(KeyboardInterrupt):
        with progress.LogBar(total=10, desc="CE/KL", unit="tok", every=60, write=lines.append) as b:
            b.update(3)
            raise KeyboardInterrupt
    assert len(lines) == 1 and "stopped after" in lines[0] and "done" not in lines[0]
