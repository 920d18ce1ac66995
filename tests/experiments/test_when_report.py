"""The multi-seed, multi-budget report: a tiny two-budget sweep with seeds, a gate fix, an init
swap and a β0 study, end to end through ``probsae sweep`` and ``probsae report``; plus the paired
statistics on hand-made numbers."""

from __future__ import annotations

import csv
import json
import math

import pytest

from probsae.cli.main import main
from probsae.experiments.presets import budget_configs, parse_config
from probsae.experiments.when import paired, variant_label, verdict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_paired_difference_and_verdict_by_hand():
    a = {0: {"fvu": 0.30}, 1: {"fvu": 0.32}, 2: {"fvu": 0.31}, 5: {"fvu": 9.0}}
    b = {0: {"fvu": 0.40}, 1: {"fvu": 0.41}, 2: {"fvu": 0.43}}
    p = paired(a, b, "fvu")
    assert p["n"] == 3  # seed 5 has no partner
    d = [-0.10, -0.09, -0.12]
    m = sum(d) / 3
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / 2)
    assert p["mean"] == pytest.approx(m)
    assert p["hi"] - p["mean"] == pytest.approx(4.303 * sd / math.sqrt(3))
    assert p["rel"] == pytest.approx(sum(x / y for x, y in zip(d, [0.40, 0.41, 0.43])) / 3)
    assert verdict(p, True, "A", "B") == "**A better**"
    flip = paired(b, a, "fvu")
    assert verdict(flip, True, "B", "A") == "**A better**"
    noisy = paired({0: {"x": 1.0}, 1: {"x": 3.0}}, {0: {"x": 2.0}, 1: {"x": 2.0}}, "x")
    assert noisy["lo"] < 0 < noisy["hi"] and verdict(noisy, True, "A", "B").startswith("not resolved")


def test_variant_label_ignores_pair_keys():
    assert variant_label("prob_topk", {"k": 8, "seed": 2}) == ""
    assert variant_label("prob_topk", {"k": 8, "score": "logit"}) == "score=logit"
    assert variant_label("topk", {"k": 4, "init": "orthogonal", "seed": 1}) == "init=orthogonal"
    assert variant_label("prob_topk", {"k": 8, "beta_start": 0.5}) == "beta_start=0.5"


def test_budgets_and_warmup_fraction():
    raw = {"name": "b", "data": {"model": "m", "hook": "h", "corpus": "c"},
           "train": {"tokens": 1000, "batch_size": 100, "warmup_fraction": 0.5},
           "sweep": {"budgets": [1000, 4000]}, "grid": [{"architecture": "topk", "k": 2}]}
    cfg = parse_config(raw)
    subs = budget_configs(cfg)
    assert [s for s, _ in subs] == ["tokens=1000", "tokens=4000"]
    kws = [c.train.to_dict() for _, c in subs]
    assert [(k["steps"], k["warmup_steps"]) for k in kws] == [(10, 5), (40, 20)]
    from probsae.errors import ConfigError

    with pytest.raises(ConfigError, match="warmup_fraction"):
        parse_config({**raw, "train": {"tokens": 10, "warmup_steps": 1, "warmup_fraction": 0.5}})
    with pytest.raises(ConfigError, match="budgets"):
        budget_configs(parse_config({**raw, "sweep": {"budgets": [0]}}))


@pytest.fixture()
def when_setup(tmp_path, tiny_data_toml):
    cfg = tmp_path / "when.toml"
    cfg.write_text(f"""
name = "when-tiny"
{tiny_data_toml()}[sae]
d_sae = 64
[train]
batch_size = 64
lr = 2e-3
warmup_fraction = 0.25
log_every = 10
dead_window_tokens = 1024
[sweep]
budgets = [640, 1280]
[[grid]]
study = "when"
architecture = ["topk", "prob_topk"]
k = [2, 4]
seed = [0, 1]
[[grid]]
study = "gate-fix"
architecture = "prob_topk"
k = [2, 4]
seed = [0, 1]
score = ["stable", "logit"]
[[grid]]
study = "init"
architecture = "topk"
k = 2
seed = [0, 1]
init = "orthogonal"
[[grid]]
study = "temperature"
architecture = "prob_topk"
k = 2
seed = [0, 1]
beta_start = [0.5]
""")
    return tmp_path, cfg


def test_when_sweep_then_report(when_setup):
    tmp, cfg = when_setup
    out = tmp / "sweep"
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    for b, steps in ((640, 10), (1280, 20)):
        info = json.loads((out / f"tokens={b}" / "sweep.json").read_text())
        assert info["train_config"]["steps"] == steps and info["train_config"]["warmup_steps"] == steps // 4
        assert len(list((out / f"tokens={b}" / "runs").glob("*/metrics.json"))) == 8 + 8 + 2 + 2
    rep = tmp / "rep"
    assert main(["report", str(out), "--out", str(rep)]) == 0
    md = (rep / "report.md").read_text()
    for section in ("(a) Reconstruction", "(b) Alive latents", "gate-saturation fixes", "Initialisation",
                    "Gate temperature", "Every run"):
        assert section in md
    for png in ("fvu_budget.png", "gap_budget.png", "fvu_k.png", "alive.png", "temperature.png"):
        assert (rep / png).read_bytes()[:8] == PNG_MAGIC
    assert "![paired differences against budget](gap_budget.png)" in md
    rows = list(csv.DictReader((rep / "runs.csv").open()))
    assert len(rows) == 40 and {r["budget"] for r in rows} == {"640", "1280"}
    # the headline cell is the paired difference of the runs' own metrics
    fvu = {(r["budget"], r["architecture"], r["variant"], r["k"], r["seed"]): float(r["fvu"]) for r in rows}
    d = [fvu[("1280", "prob_topk", "", "4", s)] - fvu[("1280", "topk", "", "4", s)] for s in ("0", "1")]
    line = next(l for l in md.splitlines() if l.startswith("| 1.28k | 4 |"))
    assert f"{sum(d) / 2:+.4f}" in line and "| 2 |" in line


def test_one_budget_report_has_no_budget_figure(tmp_path, tiny_data_toml):
    """A seed-only sweep (one budget) gets the K figure and a sentence instead of a one-column FVU
    against budget figure; a stale fvu_budget.png from an earlier report is removed."""
    cfg = tmp_path / "one.toml"
    cfg.write_text(f"""
name = "one-budget"
{tiny_data_toml()}[sae]
d_sae = 32
[train]
steps = 6
batch_size = 64
warmup_steps = 2
log_every = 3
[[grid]]
architecture = ["topk", "prob_topk"]
k = [2, 4]
seed = [0, 1]
""")
    out, rep = tmp_path / "sweep", tmp_path / "rep"
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    rep.mkdir()  # an earlier report of a multi-budget sweep
    (rep / "report.md").write_text(f"# old\n\nMade by: `probsae report {out} --out {rep}`\n")
    (rep / "fvu_budget.png").write_bytes(PNG_MAGIC)
    (rep / "gap_budget.png").write_bytes(PNG_MAGIC)
    assert main(["report", str(out), "--out", str(rep)]) == 0
    md = (rep / "report.md").read_text()
    assert not (rep / "fvu_budget.png").exists() and "fvu_budget.png" not in md
    assert not (rep / "gap_budget.png").exists() and "gap_budget.png" not in md
    assert "One training budget" in md and "![FVU against K](fvu_k.png)" in md
    assert (rep / "fvu_k.png").read_bytes()[:8] == PNG_MAGIC


def test_report_of_a_causal_lm_gives_ce_kl_verdicts_auxk_tables_and_the_downstream_pareto(
        tmp_path, tiny_data_toml, monkeypatch, capsys):
    import probsae.data.models as models_mod

    monkeypatch.setattr(models_mod, "is_causal_model", lambda name: True)
    cfg = tmp_path / "lm.toml"
    cfg.write_text(f"""
name = "lm-tiny"
{tiny_data_toml()}[sae]
d_sae = 48
[train]
steps = 30
batch_size = 64
lr = 2e-3
warmup_steps = 5
dead_window_tokens = 640
[sweep]
downstream_tokens = 64
[[grid]]
study = "when"
architecture = ["topk", "prob_topk"]
k = [2, 4]
seed = [0, 1]
[[grid]]
study = "auxk"
architecture = "topk"
k = [2, 4]
seed = [0, 1]
aux_k = 8
""")
    out = tmp_path / "sweep"
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "rep"), "--no-progress"]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## (c) The language model with the SAE spliced in" in text
    assert "### CE loss recovered (higher is better)" in text and "### KL(clean ‖ SAE)" in text
    assert "TopK (aux_k=8)" in text and "against TopK (aux_k=8)" in text
    assert (tmp_path / "rep" / "downstream_pareto.png").read_bytes()[:8] == PNG_MAGIC
    rows = list(csv.DictReader((tmp_path / "rep" / "runs.csv").open()))
    assert len(rows) == 12 and all(float(r["ce_recovered"]) == float(r["ce_recovered"]) for r in rows)
    first = json.loads(next((out / "runs").glob("*/metrics.json")).read_text())["downstream"]
    assert first["n_tokens"] >= 64 and first["ci"]["kl"] is not None
