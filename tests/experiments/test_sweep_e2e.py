"""End to end: ``probsae sweep`` (extraction from a tiny random GPT-2 over a text file, two
architectures × two K) then ``probsae report``; checks the files and numbers they wrote."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from probsae import evaluate, load_sae
from probsae.cli.main import main
from probsae.data import ActivationCache

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def sweep_setup(tmp_path, tiny_corpus_model, tiny_data_toml):
    calls = tiny_corpus_model[1]
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(f"""
name = "tiny"
description = "test sweep"
{tiny_data_toml(extra="extract_batch_size = 8")}
[sae]
d_sae = 48
[train]
steps = 120
batch_size = 64
lr = 2e-3
warmup_steps = 20
log_every = 20
dead_window_tokens = 1024
[sweep]
checkpoint_every = 50
[[grid]]
study = ["pareto", "alive"]
architecture = ["topk", "prob_topk"]
k = [2, 4]
""")
    return tmp_path, cfg, calls


def test_sweep_then_report(sweep_setup, capsys, device):
    tmp, cfg, calls = sweep_setup
    out = tmp / "sweep"
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert calls == ["tiny-gpt2"]  # the model is loaded once, for one extraction
    names = ["topk-k=2", "topk-k=4", "prob_topk-k=2", "prob_topk-k=4"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(names)

    info = json.loads((out / "sweep.json").read_text())
    eval_cache = ActivationCache(info["data"]["eval_cache"])
    train_cache = ActivationCache(info["data"]["train_cache"])
    assert eval_cache.manifest["meta"]["split"] == "holdout" and train_cache.n_tokens > 1000
    assert train_cache.path.parent == eval_cache.path.parent == tmp / "cache"
    assert [m["name"] for m in info["members"]] == names
    assert info["data"]["eval_tokens"] == eval_cache.n_tokens

    for name in names:
        rd = out / "runs" / name
        for f in ("config.json", "sae.safetensors", "log.jsonl", "checkpoint.safetensors", "metrics.json"):
            assert (rd / f).is_file(), f"{name}/{f}"
        m = json.loads((rd / "metrics.json").read_text())
        # on the device the sweep trained and evaluated on (the test device: 'auto'); the same SAE
        # and data on another device give other numbers (on CUDA the TopK family's encoder picks its
        # latents with a bf16 matmul, see TrainConfig.precision), the same device the same ones
        sae = load_sae(rd, device=str(device))
        again = evaluate(sae, eval_cache)
        for key in ("mse", "fvu", "l0", "alive", "n_tokens"):
            assert m["heldout"][key] == pytest.approx(again[key], rel=1e-6), key
        k = m["hparams"]["k"]
        assert 0 < m["heldout"]["l0"] <= k + 1e-9
        assert 0 < m["heldout"]["fvu"] < 1.0  # it learned something
        # 120 steps of 64 tokens; the cache's epoch boundary may give one short batch
        assert 120 * 64 - 64 < m["tokens_seen"] <= 120 * 64 and m["steps"] == 120
        log = [json.loads(line) for line in (rd / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log if "step" in r and not r.get("event")] == [20, 40, 60, 80, 100, 120]
    assert len((out / "results.jsonl").read_text().splitlines()) == 4

    # A finished sweep is skipped member by member: nothing retrains.
    mtimes = {n: (out / "runs" / n / "metrics.json").stat().st_mtime_ns for n in names}
    capsys.readouterr()
    assert main(["sweep", str(cfg), "--out", str(out), "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["to_run"] == 0 and plan["finished"] == 4
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert calls == ["tiny-gpt2"]  # caches reused, no second extraction
    assert {n: (out / "runs" / n / "metrics.json").stat().st_mtime_ns for n in names} == mtimes

    # Report.
    rep = tmp / "report"
    assert main(["report", str(out), "--out", str(rep)]) == 0
    md = (rep / "report.md").read_text()
    assert f"probsae report {out} --out {rep}" in md
    assert "Sweep started by: `probsae sweep" in md
    for name in names:
        m = json.loads((out / "runs" / name / "metrics.json").read_text())
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[3]) == pytest.approx(m["heldout"]["l0"], abs=0.006)
        assert float(cells[4]) == pytest.approx(m["heldout"]["mse"], abs=6e-5)
        assert float(cells[5]) == pytest.approx(m["heldout"]["fvu"], abs=6e-5)
        assert int(cells[7].replace(",", "")) == m["heldout"]["alive"]
    assert "## Probabilistic TopK vs TopK" in md and "K = 2: held-out FVU Probabilistic TopK " in md and "**" not in md.split("## Probabilistic TopK vs TopK")[1].split("\n## ")[0]
    with (rep / "metrics.csv").open() as f:
        assert {r["name"] for r in csv.DictReader(f)} == set(names)
    import matplotlib.image as mpimg

    for png in ("pareto.png", "alive.png", "training.png"):
        p = rep / png
        assert p.read_bytes()[:8] == PNG_MAGIC, png
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_partial_sweep_resumes_only_what_is_left(sweep_setup, capsys):
    tmp, cfg, calls = sweep_setup
    out = tmp / "sweep"
    assert main(["sweep", str(cfg), "--out", str(out), "--only", "topk-k=2", "--no-progress",
                 "--set", "train.steps=40"]) == 0
    assert [p.name for p in (out / "runs").iterdir()] == ["topk-k=2"]
    # a member trained but killed before evaluation: evaluated without retraining, on the training
    # device like a member evaluated right after training (so to the same numbers)
    heldout = json.loads((out / "runs" / "topk-k=2" / "metrics.json").read_text())["heldout"]
    (out / "runs" / "topk-k=2" / "metrics.json").unlink()
    log_before = (out / "runs" / "topk-k=2" / "log.jsonl").read_text()
    # a member killed before its first checkpoint left a log: it restarts with a fresh log
    stale = out / "runs" / "prob_topk-k=4"
    stale.mkdir()
    (stale / "log.jsonl").write_text('{"event": "start"}\n{"step": 20, "loss": 1.0}\n')
    capsys.readouterr()
    assert main(["sweep", str(cfg), "--out", str(out), "--set", "train.steps=40", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["to_run"] == 4
    assert main(["sweep", str(cfg), "--out", str(out), "--set", "train.steps=40", "--no-progress",
                 "--max-members-per-pass", "2"]) == 0
    assert (out / "runs" / "topk-k=2" / "log.jsonl").read_text() == log_before
    assert json.loads((out / "runs" / "topk-k=2" / "metrics.json").read_text())["heldout"] == pytest.approx(heldout, rel=1e-6)
    assert len(list((out / "runs").glob("*/metrics.json"))) == 4
    log = [json.loads(line) for line in (stale / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log if r.get("event")] == ["start"]
    assert [r["step"] for r in log if "step" in r] == [20, 40] and log[1]["loss"] != 1.0
    assert calls == ["tiny-gpt2"]


def test_report_without_runs_is_an_error(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_existing_cache_and_ablation_report(tmp_path):
    """A sweep over an existing cache (no model), with ablation and temperature members."""
    from probsae.data import build_cache

    g = torch.Generator().manual_seed(0)
    basis = torch.randn(24, 12, generator=g)

    def chunk(n):
        codes = torch.rand(n, 24, generator=g) * (torch.rand(n, 24, generator=g) < 0.15)
        return codes @ basis + 0.05 * torch.randn(n, 12, generator=g)

    build_cache([chunk(512) for _ in range(4)], tmp_path / "c", {"model": "synthetic", "hook": "x"}, shard_tokens=512)
    cfg = tmp_path / "abl.toml"
    cfg.write_text(f"""
name = "abl"
[data]
cache = "{tmp_path / 'c'}"
[sae]
d_sae = 32
[train]
steps = 30
batch_size = 64
log_every = 10
[[grid]]
study = "ablation"
architecture = "prob_topk"
k = 4
variants = [{{}}, {{lambda_mag = 0.0}}, {{layernorm = false}}, {{gate = "sigmoid"}}]
[[grid]]
study = "ablation"
architecture = "topk"
k = 4
[[grid]]
study = "temperature"
architecture = "prob_topk"
k = 4
beta_start = [0.5, 5.0]
[[grid]]
architecture = "relu"
l1_coeff = 0.01
""")
    out = tmp_path / "s"
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert len(list((out / "runs").glob("*/metrics.json"))) == 7
    assert main(["report", str(out)]) == 0
    rep = out / "report"
    for png in ("pareto.png", "ablation.png", "temperature.png"):
        assert (rep / png).read_bytes()[:8] == PNG_MAGIC
    md = (rep / "report.md").read_text()
    for v in ("w/o magnitude", "w/o LayerNorm", "sigmoid gate", "| 4 | TopK |", "| 0.5 | 4 |"):
        assert v in md


def test_sweep_measures_ce_kl_of_every_member_on_shared_tokens(sweep_setup, monkeypatch):
    import probsae.data.models as models_mod

    tmp, cfg, calls = sweep_setup
    monkeypatch.setattr(models_mod, "is_causal_model", lambda name: True)
    cfg.write_text(cfg.read_text().replace("[sweep]\n", "[sweep]\ndownstream_tokens = 100\ndownstream_members_per_pass = 3\n"))
    out = tmp / "sweep"
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress", "--set", "train.steps=30"]) == 0
    ds = {p.parent.name: json.loads(p.read_text())["downstream"] for p in (out / "runs").glob("*/metrics.json")}
    assert len(ds) == 4 and all(d is not None for d in ds.values())
    assert len({d["n_tokens"] for d in ds.values()}) == 1 and next(iter(ds.values()))["n_tokens"] >= 100
    assert len({d["ce_clean"] for d in ds.values()}) == 1          # one clean pass, the same tokens
    assert len({round(d["ce_sae"], 6) for d in ds.values()}) == 4  # each member its own splice
    assert calls == ["tiny-gpt2", "tiny-gpt2"]                     # extraction, then CE/KL (two passes of ≤ 3)
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress", "--set", "train.steps=30"]) == 0
    assert calls == ["tiny-gpt2", "tiny-gpt2"]                     # nothing left to measure: no model load
