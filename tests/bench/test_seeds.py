"""Bench results across seeds: groups by config apart from the seed, means with t-intervals, and
differences paired by seed against the first group of each K."""

import pytest

from probsae.bench.seeds import groups, seed_tables


def doc(arch, k, seed, fvu, probe1, aux_k=0, absorption=None):
    m = {"core": {"heldout": {"fvu": fvu, "alive": 100 + seed}},
         "sparse_probing": {"mean": {"sae_top_k": {"1": probe1}}}}
    if absorption is not None:
        m["absorption"] = {"mean_absorption_fraction_score": absorption}
    return {"architecture": arch, "config": {"k": k, "aux_k": aux_k, "seed": seed}, "metrics": m}


def test_groups_means_and_seed_paired_differences():
    docs = {}
    for s, (fa, fb) in enumerate([(0.30, 0.33), (0.31, 0.35), (0.29, 0.33)]):
        docs[f"a{s}"] = doc("alpha", 8, s, fa, 0.70 + 0.01 * s)
        docs[f"b{s}"] = doc("beta", 8, s, fb, 0.80 + 0.01 * s, absorption=0.1)
        docs[f"c{s}"] = doc("alpha", 8, s, fa, 0.5, aux_k=64)          # same architecture, another config
    g = groups(docs)
    assert list(g) == ["alpha k=8", "beta k=8", "alpha k=8 aux_k=64"] and all(len(v) == 3 for v in g.values())
    assert g["beta k=8"][1]["fvu"] == 0.35 and g["alpha k=8"][2]["probe_1"] == pytest.approx(0.72)
    md = seed_tables(docs)
    assert "| alpha k=8 | 3 | 0.3 [0.2752, 0.3248]" in md          # mean 0.30, t(2) interval
    # Δ FVU beta − alpha per seed: 0.03, 0.04, 0.04 → mean 0.03667, the interval excludes 0: alpha better
    row = next(l for l in md.splitlines() if l.startswith("| beta k=8 − alpha k=8 | FVU"))
    assert "+0.03667" in row and "**alpha k=8 better**" in row
    row = next(l for l in md.splitlines() if l.startswith("| beta k=8 − alpha k=8 | probe k=1"))
    assert "+0.1 [+0.1, +0.1]" in row and "beta k=8 higher" in row
    assert "absorption" in md.splitlines()[4]                          # a column once any run has it


def test_no_seed_table_without_repeated_seeds():
    assert seed_tables({"a": doc("alpha", 8, 0, 0.3, 0.7), "b": doc("beta", 8, 0, 0.3, 0.7)}) == ""
