"""The reports built from per-section renderers give exactly the Markdown the one-piece renderers
gave: a single-seed sweep and a two-seed sweep (written by hand, as ``probsae sweep`` writes them)
are rendered and compared with golden files that the earlier code wrote (only the "Generated"
time line differs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from probsae.experiments.report import _md_invocations, _with_notes, make_report
from probsae.experiments.when import make_when_report

GOLDEN = Path(__file__).parent / "golden"
D_SAE = 64


def _run(root: Path, arch: str, hparams: dict, fvu: float, alive: int) -> None:
    d = root / "runs" / (arch + "-" + ",".join(f"{a}={b}" for a, b in hparams.items()))
    d.mkdir(parents=True)
    k = hparams.get("k", 4)
    metrics = {"format": "probsae-metrics", "format_version": 1, "name": d.name, "architecture": arch,
               "hparams": hparams, "d_in": 16, "d_sae": D_SAE,
               "heldout": {"mse": fvu * 0.9, "fvu": fvu, "explained_variance": 1 - fvu, "l0": float(k),
                           "alive": alive, "dead": D_SAE - alive, "n_tokens": 512},
               "train_final": {"step": 10, "tokens": 51_200, "alive": alive}, "steps": 10, "batch_size": 5120,
               "tokens_seen": 51_200, "studies": ["pareto", "alive"]}
    (d / "metrics.json").write_text(json.dumps(metrics))
    tc = {"lr": 1e-3, "batch_size": 5120, "steps": 10, "dead_window_tokens": 32_768}
    recs = [{"event": "start", "architecture": arch, "train_config": tc, "total_steps": 10}]
    recs += [{"step": s, "tokens": s * 5120, "loss": 0.5, "mse": fvu, "explained_variance": 1 - fvu,
              "alive": alive + s, "dead": 0} for s in (5, 10)]
    (d / "log.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")


def sweep_dir(root: Path, seeds: tuple[int, ...]) -> Path:
    (root / "runs").mkdir(parents=True)
    info = {"name": "golden", "command": "probsae sweep golden.toml", "description": "A hand-made sweep.",
            "invocations": [{"command": "probsae sweep golden.toml", "finished_at": "2026-01-02T03:04:05",
                             "wall_seconds": 90, "to_run": 4}, {"command": "probsae sweep old.toml", "wall_seconds": 30}],
            "data": {"model": "tiny", "hook": "resid_pre.1", "d_in": 16, "corpus": "c", "train_cache_tokens": 40_000,
                     "eval_tokens": 512},
            "train_config": {"lr": 1e-3, "lr_schedule": "cosine", "warmup_steps": 1, "batch_size": 5120,
                             "steps": 10, "grad_clip": 1.0, "dead_window_tokens": 32_768}}
    (root / "sweep.json").write_text(json.dumps(info))
    for seed in seeds:
        extra = {"seed": seed} if seed else {}
        for i, (arch, hp) in enumerate([("topk", {"k": 2}), ("topk", {"k": 8}), ("prob_topk", {"k": 2}),
                                        ("prob_topk", {"k": 8}), ("prob_topk", {"k": 2, "beta_start": 0.5}),
                                        ("prob_topk", {"k": 2, "lambda_mag": 0.0}), ("topk", {"k": 2, "aux_k": 8})]):
            _run(root, arch, {**hp, **extra}, 0.5 + 0.01 * i + 0.003 * seed, 30 + i + seed)
    return root


def _normalised(md: str) -> str:
    return re.sub(r"(?m)^Generated .*$", "Generated (time).", md)


@pytest.mark.parametrize("kind", ["single", "when"])
def test_reports_equal_the_golden_markdown(tmp_path, kind):
    notes = tmp_path / "notes.md"
    notes.write_text("Hand notes.\n")
    if kind == "single":
        sweep = sweep_dir(tmp_path / "sweep", (0,))
        md = make_report(sweep, tmp_path / "rep", command="probsae report SWEEP", notes=notes).read_text()
    else:
        sweep = sweep_dir(tmp_path / "sweep", (0, 1, 2))
        md = make_when_report(sweep, tmp_path / "rep", command="probsae report SWEEP", notes=notes).read_text()
    md = md.replace(str(tmp_path), "TMP")
    assert _normalised(md) == (GOLDEN / f"report_{kind}.md").read_text()


def test_invocations_and_notes_sections(tmp_path):
    invs = [{"command": "a", "finished_at": "2026-01-01T00:10:00", "wall_seconds": 600, "to_run": 2},
            {"command": "b", "wall_seconds": 60}]
    L = _md_invocations(invs)
    assert L[0].startswith("Completed sweep invocations (1; wall-clock span 10.0 min")
    assert "- `a` — finished 2026-01-01T00:10:00, 10.0 min, 2 members trained" in L
    assert "- `b` — 1.0 min, ? members trained" in L and _md_invocations([]) == []
    notes = tmp_path / "n.md"
    notes.write_text(" N \n")
    assert _with_notes("# T\n\n## Pareto frontier\nx", notes) == "# T\n\n## Notes\n\nN\n\n## Pareto frontier\nx"
    assert _with_notes("# T", None) == "# T"
