"""The bench's comparison table shows each metric's headline number, or why it was not run."""

from probsae.bench.report import table


def test_table_shows_absorption_and_autointerp_numbers_or_the_status():
    base = {"architecture": "alpha", "config": {"k": 8}}
    docs = {"a": {**base, "metrics": {"absorption": {"mean_absorption_fraction_score": 0.0439},
                                      "autointerp": {"mean_score": 0.61}}},
            "b": {**base, "metrics": {"absorption": {"status": "not run", "reason": "encoder"},
                                      "autointerp": {"status": "not run", "reason": "no judge"}}}}
    rows = {l.split(" | ")[0].strip("| "): l for l in table(docs).splitlines()[2:]}
    assert rows["a"].endswith("| 0.044 | 0.610 |") and rows["b"].endswith("| not run | not run |")
