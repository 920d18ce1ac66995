"""``probsae sweep`` of transcoders: ``[data] target_hook`` pairs block 1's MLP input and output of a
tiny random GPT-2; two members (skip connection off / on) are trained, evaluated against the
target and listed by ``probsae report``."""

from __future__ import annotations

import json

import pytest
import torch

from probsae import load_sae
from probsae.cli.main import main
from probsae.data import ActivationCache


def test_a_transcoder_sweep_measures_fvu_against_the_target(tmp_path, tiny_corpus_model, tiny_data_toml, capsys):
    calls = tiny_corpus_model[1]
    cfg = tmp_path / "tc.toml"
    cfg.write_text(f"""
name = "tc"
{tiny_data_toml("mlp_in.1", 'target_hook = "mlp_out.1"')}
[sae]
d_sae = 64
[train]
steps = 150
batch_size = 64
lr = 3e-3
warmup_steps = 10
log_every = 50
[[grid]]
architecture = "transcoder"
k = 4
skip = [false, true]
""")
    out = tmp_path / "sweep"
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    assert calls == ["tiny-gpt2"]
    info = json.loads((out / "sweep.json").read_text())
    names = [m["name"] for m in info["members"]]
    assert len(names) == 2
    held = ActivationCache(info["data"]["eval_cache"])
    assert held.d_in == 32 and held.manifest["meta"]["target_hook"] == "mlp_out.1"  # [input | target], 2 × 16
    rows = torch.cat(list(held.iter_batches(4096, shuffle=False)))
    x, y = rows[:, :16], rows[:, 16:]

    fvus = {}
    for name in names:
        rd = out / "runs" / name
        m = json.loads((rd / "metrics.json").read_text())
        sae = load_sae(rd, device="cpu")
        assert (sae.metadata.hook_name, sae.metadata.target_hook_name) == ("mlp_in.1", "mlp_out.1")
        assert sae.cfg.skip == m["hparams"].get("skip", False) == name.endswith("skip=true")
        # the FVU by hand, of the prediction from the input alone against the target, both on the
        # working scale (the input's normalisation and the target scale)
        with torch.no_grad():
            pred = sae(x).recon  # input rows alone: the prediction does not see y
            _, stats = sae.normalizer(x)
            y_n, p_n = (sae.normalizer.apply(v, stats) * sae.target_scale for v in (y, pred))
        fvu = float((y_n - p_n).pow(2).sum() / (y_n - y_n.mean(0)).pow(2).sum())
        assert m["heldout"]["fvu"] == pytest.approx(fvu, rel=1e-4), name
        assert m["heldout"]["n_tokens"] == x.shape[0] and m["heldout"]["l0"] <= 4 + 1e-9
        fvus[sae.cfg.skip] = fvu
    # both learned to predict the MLP's output (150 steps, d = 16, K = 4); the skip term carries its
    # linear part, so the skip member does much better
    assert fvus[True] < 0.4 and fvus[False] < 0.9 and fvus[True] < fvus[False], fvus  # measured 0.224, 0.723

    rep = tmp_path / "report"
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(rep)]) == 0
    md = (rep / "report.md").read_text()
    for name in names:
        m = json.loads((out / "runs" / name / "metrics.json").read_text())
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        assert float([c.strip() for c in row.strip("|").split("|")][5]) == pytest.approx(m["heldout"]["fvu"], abs=6e-5)
    print(fvus)
