import json

import numpy as np
import pytest

from probsae.interp import (assign_buckets, classification_metrics, mean_ci, parse_explanation,
                            parse_predictions, pearson, plot_calibration, roc_auc, sample_latent,
                            summarize_run, table_markdown)
from probsae.interp.latent_cache import LatentRecord


def _record(n=100, W=8, seed=0):
    rng = np.random.default_rng(seed)
    acts = np.zeros((n, W), np.float32)
    acts[np.arange(n), rng.integers(0, W, n)] = rng.gamma(2.0, 1.0, n)
    return LatentRecord(7, np.arange(0, 2 * n, 2), acts, acts.max(1))


def test_buckets_are_equal_count_percentiles():
    x = np.random.default_rng(1).random(103)
    b = assign_buckets(x, 5)
    assert sorted(np.bincount(b).tolist()) == [20, 20, 21, 21, 21]
    for i in range(4):   # every window of a lower bucket is weaker than every one of a higher bucket
        assert x[b == i].max() <= x[b == i + 1].min()


def test_sample_latent_disjoint_seeded():
    rec = _record()
    nonact = np.arange(1, 200, 2)          # odd ids: never activating
    s = sample_latent(rec, nonact, n_explain=5, n_test=4, seed=3)
    assert len(s.buckets) == 5
    seen_na = set()
    for b in s.buckets:
        ex = {e.window for e in b.explain}
        te = {e.window for e in b.test}
        assert len(ex) == 5 and len(te) == 4 and not ex & te
        assert all(e.bucket == b.bucket and e.activating for e in b.explain + b.test)
        lo, hi = b.act_range
        assert all(lo <= e.max_act <= hi for e in b.explain + b.test)
        na = {e.window for e in b.nonactivating}
        assert len(na) == 4 and not na & seen_na and all(w % 2 == 1 for w in na)
        seen_na |= na
    s2 = sample_latent(rec, nonact, n_explain=5, n_test=4, seed=3)
    assert [[e.window for e in b.explain] for b in s.buckets] == [[e.window for e in b.explain] for b in s2.buckets]
    # small buckets are split, never overlap; a 1-window bucket is skipped
    small = sample_latent(_record(n=7), nonact, n_explain=5, n_test=4)
    for b in small.buckets:
        assert b.explain and b.test and not {e.window for e in b.explain} & {e.window for e in b.test}
    assert small.skipped


def test_metrics_and_parsers():
    m = classification_metrics([1, 1, 0, 0, 1], [True, False, False, False, True])
    assert m["balanced_accuracy"] == pytest.approx(0.5 * (1 + 2 / 3))
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(0.8)
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.5)
    assert roc_auc([1, 2], [1, 1]) is None
    assert parse_predictions("Sure: [1, 0, 1, 0, 0]", 5) == [1, 0, 1, 0, 0]
    assert parse_predictions("[true, false]", 2) == [1, 0]
    assert parse_predictions("[1, 0]", 5) is None
    assert parse_predictions("[1, 2, 0]", 3) is None
    assert parse_predictions("no list", 2) is None
    assert parse_explanation("thinking...\n**Explanation:** \"the word cat\"") == "the word cat"
    assert parse_explanation("just prose") is None
    assert parse_explanation('EXPLANATION: the token "cat"') == 'the token "cat"'


def test_table_and_plot(tmp_path):
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and hi - m == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)
    assert pearson([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    scores = [{"latent": l, "bucket": b, "score": 0.5 + 0.08 * b + rng.normal(0, 0.05),
               "scorer": "detection", "explanation_source": "llm"} for l in range(30) for b in range(5)]
    scores.append({"latent": 99, "bucket": 0, "score": None, "scorer": "detection", "explanation_source": "llm"})
    row = summarize_run("prob_topk k=8", scores)
    assert row["n_latents"] == 31 and row["n_unscored"] == 1 and row["pearson_r"] > 0.8
    assert [b["n"] for b in row["buckets"]] == [30] * 5
    md = table_markdown([row, {**row, "label": "topk k=8"}])
    assert "| prob_topk k=8 |" in md and "0-20%" in md and "80-100%" in md and "Correlation" in md
    json.dumps(row)
    png = plot_calibration([row], tmp_path / "f5.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



def test_resolve_run_reads_sweep_and_train_outputs(tmp_path):
    import probsae
    from probsae.errors import ConfigError
    from probsae.interp import resolve_run

    run = tmp_path / "prob_topk_k8"
    probsae.build_sae("prob_topk", d_in=8, d_sae=16, k=2).save(run)
    info = resolve_run(run)
    assert (info.model, info.hook, info.corpus, info.label) == (None, None, None, "prob_topk_k8")
    (run / "log.jsonl").write_text(json.dumps({"event": "start", "train_config": {
        "extra": {"model": "gpt2", "hook": "resid_post.8", "corpus": "pydoc"}}}) + "\n")
    info = resolve_run(run)
    assert (info.model, info.hook, info.corpus, info.architecture) == ("gpt2", "resid_post.8", "pydoc", "prob_topk")
    (run / "metrics.json").write_text(json.dumps({"model": "minilm", "hook": "resid_post.3", "corpus": "x.txt"}))
    assert resolve_run(run, hook="resid_pre.2").hook == "resid_pre.2"
    assert resolve_run(run).model == "minilm"
    with pytest.raises(ConfigError):
        resolve_run(tmp_path / "nothing")
