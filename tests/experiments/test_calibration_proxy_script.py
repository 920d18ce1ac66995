"""scripts/calibration_proxy.py (claim (c) through the offline proxy) on a tiny two-seed sweep:
it runs end to end and writes a table whose per-run r values are the ones in calibration.json."""

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


def test_calibration_proxy_runs_on_a_sweep(tmp_path, tiny_data_toml, capsys):
    cfg = tmp_path / "cal.toml"
    cfg.write_text(f"""
name = "cal"
{tiny_data_toml()}
[sae]
d_sae = 48
[train]
steps = 40
batch_size = 64
lr = 3e-3
warmup_steps = 4
log_every = 20
[[grid]]
architecture = ["topk", "prob_topk"]
k = 4
seed = [0, 1]
""")
    sweep = tmp_path / "sweep"
    assert main(["sweep", str(cfg), "--out", str(sweep), "--no-progress", "--device", "cpu"]) == 0
    out = tmp_path / "calibration"
    assert _script().main([str(sweep), "--out", str(out), "--k", "4", "--n-latents", "6", "--n-windows", "96",
                           "--work", str(tmp_path / "work")]) == 0
    data = json.loads((out / "calibration.json").read_text())
    runs = data["runs"]
    assert sorted((r["architecture"], r["seed"]) for r in runs) == [("prob_topk", 0), ("prob_topk", 1),
                                                                    ("topk", 0), ("topk", 1)]
    table = (out / "calibration.md").read_text()
    assert "A proxy, not the paper's claim (c) measurement" in table
    for r in runs:
        assert r["label"] in table
        if r["pearson_r"] is not None:
            assert -1 <= r["pearson_r"] <= 1 and f"{r['pearson_r']:.3f}" in table
    assert (out / "figure5.png").read_bytes()[:4] == b"\x89PNG"
    # --replot redraws the figure from calibration.json alone
    (out / "figure5.png").unlink()
    assert _script().main(["--replot", "--out", str(out)]) == 0 and (out / "figure5.png").is_file()
