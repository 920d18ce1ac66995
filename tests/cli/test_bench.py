"""`probsae bench` end to end on two tiny runs of one random-weight GPT-2 hook point."""

import json

import pytest

from probsae.bench import tasks as bench_tasks
from probsae.cli.main import main


def train(assets, out, arch):
    return main(["train", "--arch", arch, "--k", "4", "--expansion", "2", "--model", str(assets / "model"),
                 "--hook", "resid_pre.2", "--corpus", str(assets / "corpus.txt"), "--context-length", "32",
                 "--eval-tokens", "400", "--batch-size", "64", "--steps", "12", "--lr", "3e-3", "--warmup-steps", "2",
                 "--no-progress", "--cache-dir", str(assets / "cache"), "--out", str(out), "--downstream-tokens", "256"])


def toy_task(n_train, n_test, seed):
    """Two classes of texts made of disjoint words of the tiny vocabulary: separable from the pooled
    activations."""
    words = {"prose": "the of and is", "code": "def class return import"}
    pools = {c: [" ".join(w.split()[(i * j + j) % 4] for j in range(12)) for i in range(40)] for c, w in words.items()}
    return bench_tasks.split_classes("toy", "disjoint words", pools, n_train, n_test, seed)


@pytest.fixture(scope="module")
def runs(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_runs")
    for arch in ("topk", "prob_topk"):
        assert train(assets, root / arch, arch) == 0
    return root


def test_bench_writes_results_sharing_one_extraction(assets, runs, tmp_path, monkeypatch):
    import probsae.data.hooks as hooks

    monkeypatch.setitem(bench_tasks.TASKS, "toy", toy_task)
    calls = []
    real = hooks.capture
    monkeypatch.setattr(hooks, "capture", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = tmp_path / "bench"
    assert main(["bench", str(runs / "topk"), str(runs / "prob_topk"), "--out", str(out), "--tasks", "toy",
                 "--n-train", "10", "--n-test", "6", "--ks", "1,2", "--batch-size", "8", "--no-progress",
                 "--downstream-tokens", "256"]) == 0
    assert len(calls) == 4, "32 texts in batches of 8: one forward per batch for both SAEs"
    for arch in ("topk", "prob_topk"):
        doc = json.loads((out / arch / "bench.json").read_text())
        assert doc["format"] == "probsae-bench" and doc["architecture"] == arch and doc["command"].startswith("probsae ")
        core = doc["metrics"]["core"]
        assert core["heldout"] == json.loads((runs / arch / "metrics.json").read_text())["heldout"]
        h = core["density"]
        assert sum(h["counts"]) + h["dead"] == doc["config"]["d_sae"] and h["dead"] == core["heldout"]["dead"]
        assert core["downstream"]["ci"]["ce_recovered"] is not None
        sp = doc["metrics"]["sparse_probing"]
        toy = sp["tasks"]["toy"]
        assert toy["dense"]["mean"] >= 0.9, "disjoint words are separable by a dense probe"
        assert set(toy["sae_top_k"]) == {"1", "2"} and all(0 <= v["mean"] <= 1 for v in toy["sae_top_k"].values())
        assert sp["mean"]["sae_top_k"]["2"] == toy["sae_top_k"]["2"]["mean"]
        assert doc["metrics"]["absorption"]["status"] == "not run"
        assert doc["metrics"]["autointerp"]["status"] == "not run"
    table = (out / "bench.md").read_text()
    assert "| topk |" in table and "| prob_topk |" in table and "not run" in table
    assert (out / "sparse_probing.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_refuses_unknown_task_and_metric(runs, tmp_path, capsys):
    assert main(["bench", str(runs / "topk"), "--out", str(tmp_path / "b"), "--tasks", "nope"]) == 2
    assert "unknown probing task" in capsys.readouterr().err
    assert main(["bench", str(runs / "topk"), "--out", str(tmp_path / "b"), "--metrics", "nope"]) == 2
    assert "unknown metric" in capsys.readouterr().err


def test_a_stopped_bench_resumes_with_the_metrics_it_finished(runs, tmp_path, monkeypatch):
    """bench.json is written after every metric; a rerun with the same measuring settings keeps
    those results (the metric is not run again), other settings recompute them."""
    import probsae.bench.runner as runner

    monkeypatch.setitem(bench_tasks.TASKS, "toy", toy_task)
    real, calls = runner._metrics, []

    def counting():
        return {name: (lambda ctx, f=f, name=name: calls.append(name) or f(ctx)) for name, f in real().items()}

    monkeypatch.setattr(runner, "_metrics", counting)
    out = tmp_path / "bench"
    argv = ["bench", str(runs / "topk"), "--out", str(out), "--tasks", "toy", "--n-train", "10", "--n-test", "6",
            "--ks", "1", "--no-progress", "--downstream-tokens", "256"]
    assert main([*argv, "--metrics", "sparse_probing"]) == 0
    first = json.loads((out / "topk" / "bench.json").read_text())
    assert calls == ["sparse_probing"] and first["complete"]
    assert main([*argv, "--metrics", "sparse_probing,core"]) == 0             # adds core, keeps probing
    assert calls == ["sparse_probing", "core"]
    doc = json.loads((out / "topk" / "bench.json").read_text())
    assert doc["metrics"]["sparse_probing"] == first["metrics"]["sparse_probing"] and "heldout" in doc["metrics"]["core"]
    assert main([*argv, "--metrics", "sparse_probing,core", "--downstream-tokens", "128"]) == 0
    assert calls == ["sparse_probing", "core", "core"]                        # CE/KL tokens: only core again
    assert main([*argv, "--metrics", "sparse_probing", "--seed", "1"]) == 0   # another sample: measured again
    assert calls == ["sparse_probing", "core", "core", "sparse_probing"]


def test_absorption_without_a_word_list(runs, tmp_path, monkeypatch, capsys):
    """No default word list (wamerican not installed): the metric says so and the rest runs; a
    --words file that does not exist is the user's error, said at once."""
    import probsae.bench.first_letter as fl

    monkeypatch.setattr(fl, "DEFAULT_WORDS", tmp_path / "no-words")
    out = tmp_path / "bench"
    argv = ["bench", str(runs / "topk"), "--out", str(out), "--metrics", "absorption", "--no-progress"]
    assert main(argv) == 0
    r = json.loads((out / "topk" / "bench.json").read_text())["metrics"]["absorption"]
    assert r["status"] == "not run" and "apt-get install wamerican" in r["reason"]
    assert main([*argv, "--words", str(tmp_path / "mine.txt")]) == 2
    err = capsys.readouterr().err
    assert "mine.txt" in err and "Traceback" not in err


def test_autointerp_scores_with_the_configured_judge_and_writes_only_under_out(runs, tmp_path, monkeypatch):
    """--autointerp-llm env: the existing detection scoring through the PROBSAE_LLM_* endpoint (here a
    real HTTP server on 127.0.0.1 playing a model); caches and results go under --out, never into the run."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("fake_llm", Path(__file__).parents[1] / "interp" / "fake_llm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    srv = mod.FakeLLM(slow_s=0.0, malformed_mod=10**9).start()
    try:
        monkeypatch.setenv("PROBSAE_LLM_BASE_URL", srv.base_url)
        monkeypatch.setenv("PROBSAE_LLM_MODEL", "fake")
        out = tmp_path / "bench"
        before = sorted(p.name for p in (runs / "topk").iterdir())
        assert main(["bench", str(runs / "topk"), "--out", str(out), "--metrics", "autointerp", "--autointerp-llm",
                     "env", "--autointerp-latents", "2", "--no-progress"]) == 0
    finally:
        srv.stop()
    r = json.loads((out / "topk" / "bench.json").read_text())["metrics"]["autointerp"]
    assert r["scorer"] == "detection" and r["n_latents"] == 2 and r["n_scored"] > 0
    assert all(b["n"] > 0 for b in r["buckets"]) and 0 <= r["mean_score"] <= 1
    assert srv.n_requests > 0 and (out / "autointerp" / "topk" / "results" / "scores.jsonl").is_file()
    assert sorted(p.name for p in (runs / "topk").iterdir()) == before          # the run is untouched
    assert main(["bench", str(runs / "topk"), "--out", str(tmp_path / "b2"), "--autointerp-llm", "remote"]) == 2
