"""scripts/calibration_proxy.py (claim (c) through the offline proxy) on a tiny two-seed sweep:
it runs end to end and writes a table whose per-run r values are the ones in calibration.json, with
one comparison against TopK per requested ProbTopK variant."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from probsae.cli.main import main

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "calibration_proxy.py"


def _script():
    spec = importlib.util.spec_from_file_location("calibration_proxy", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tiny_sweep(tmp_path, tiny_data_toml) -> Path:
    """TopK and ProbTopK at K = 4 over two seeds, plus ProbTopK score=logit: a finished tiny sweep."""
    cfg = tmp_path / "cal.toml"
    cfg.write_text(f"""
name = "cal"
{tiny_data_toml()}
[sae]
d_sae = 48
[train]
steps = 30
batch_size = 64
lr = 3e-3
warmup_steps = 4
log_every = 15
[[grid]]
architecture = ["topk", "prob_topk"]
k = 4
seed = [0, 1]
[[grid]]
architecture = "prob_topk"
k = 4
seed = [0, 1]
score = "logit"
""")
    sweep = tmp_path / "sweep"
    assert main(["sweep", str(cfg), "--out", str(sweep), "--no-progress", "--device", "cpu"]) == 0
    return sweep


def test_calibration_proxy_runs_on_a_sweep(tmp_path, tiny_data_toml, capsys):
    sweep = _tiny_sweep(tmp_path, tiny_data_toml)
    out = tmp_path / "calibration"
    assert _script().main([str(sweep), "--out", str(out), "--k", "4", "--n-latents", "6", "--n-windows", "96",
                           "--work", str(tmp_path / "work")]) == 0
    data = json.loads((out / "calibration.json").read_text())
    runs = data["runs"]
    # the default variant only, unless asked: the score=logit members are left out
    assert sorted((r["architecture"], r["variant"], r["seed"]) for r in runs) == [
        ("prob_topk", "", 0), ("prob_topk", "", 1), ("topk", "", 0), ("topk", "", 1)]
    table = (out / "calibration.md").read_text()
    assert "A proxy, not the paper's claim (c) measurement" in table
    assert "against TopK" not in table  # one comparison: no sub-headings
    for r in runs:
        assert r["label"] in table
        if r["pearson_r"] is not None:
            assert -1 <= r["pearson_r"] <= 1 and f"{r['pearson_r']:.3f}" in table
    assert (out / "figure5.png").read_bytes()[:4] == b"\x89PNG"
    # --replot redraws the figure from calibration.json alone
    (out / "figure5.png").unlink()
    assert _script().main(["--replot", "--out", str(out)]) == 0 and (out / "figure5.png").is_file()


def test_calibration_proxy_compares_each_requested_variant_with_topk(tmp_path, tiny_data_toml):
    sweep = _tiny_sweep(tmp_path, tiny_data_toml)
    out = tmp_path / "calibration"
    script = _script()
    assert script.main([str(sweep), "--out", str(out), "--k", "4", "--n-latents", "4", "--n-windows", "64",
                        "--variants", "", "score=logit", "--work", str(tmp_path / "work")]) == 0
    runs = json.loads((out / "calibration.json").read_text())["runs"]
    assert sorted((r["architecture"], r["variant"]) for r in runs) == [
        ("prob_topk", ""), ("prob_topk", ""), ("prob_topk", "score=logit"), ("prob_topk", "score=logit"),
        ("topk", ""), ("topk", "")]
    table = (out / "calibration.md").read_text()
    assert "### ProbTopK against TopK" in table and "### ProbTopK score=logit against TopK" in table
    assert "ProbTopK score=logit K=4 seed=1" in table
    # each comparison has its own row: a Δ r for the logit variant against TopK over the two seeds
    section = table.split("### ProbTopK score=logit against TopK")[1].split("##")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    r_of = {(r["variant"], r["architecture"], r["seed"]): r["pearson_r"] for r in runs}
    pairs = sum(r_of[("score=logit", "prob_topk", s)] is not None and r_of[("", "topk", s)] is not None
                for s in (0, 1))
    assert len(rows) == 1 and rows[0].split("|")[6].strip() == str(pairs)


def test_the_figure_keeps_one_seed_when_every_run_would_crowd_it():
    script = _script()
    runs = [{"seed": s, "k": k, "architecture": a} for s in (0, 1, 2) for k in (4, 8, 16) for a in ("topk", "prob_topk")]
    assert len(script.figure_rows(runs[:12])) == 12
    kept = script.figure_rows(runs)
    assert len(kept) == 6 and {r["seed"] for r in kept} == {0}


def test_the_figure_draws_only_the_largest_budget_and_says_which():
    script = _script()
    runs = [{"seed": s, "k": k, "architecture": a, "budget": b}
            for b in (300, 3000) for s in (0, 1) for k in (4, 8) for a in ("topk", "prob_topk")]
    kept = script.figure_rows(runs)
    assert len(kept) == 8 and {r["budget"] for r in kept} == {3000}
    assert script.figure_title(runs).endswith("3,000 tokens")
    assert "tokens" not in script.figure_title(kept)
