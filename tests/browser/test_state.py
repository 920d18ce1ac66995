"""Browser (browser/state.py) without the server: search covers every alive latent, encode ranks
and marks latents with the cache's profile, steering's unit is the latent's max activation."""

import pytest

from probsae.errors import ConfigError
from probsae.interp.steering import steered_generate


def test_search_covers_every_alive_latent(gpt2_browser):
    b = gpt2_browser
    alive = int((b.profile.window_counts > 0).sum())
    assert len(b.index) == alive > 40
    assert [row[0] for row in b.search(str(b.index[-1][0]))][:1] == [b.index[-1][0]]   # by id
    assert b.search("") == [] and b.search("   ") == []
    tokens = {w for row in b.index for w in row[4].split()}
    for w in sorted(tokens)[:5]:
        expect = {row[0] for row in b.index if w.lower() in f"{row[4]} {row[5]}".lower()}
        assert {row[0] for row in b.search(w)} == expect


def test_encode_ranks_relative_to_the_max_and_marks_flags(gpt2_browser):
    b = gpt2_browser
    enc = b.encode("the function returns a value and the module imports the class")
    rels = [t[3] for t in enc.top]
    assert rels == sorted(rels, reverse=True) and all(0 < r <= 1 for r in rels)
    assert all(t[4] == b.profile.flags(t[0]) for t in enc.top)
    assert all(0 <= t.rel <= 1 for t in enc.tokens)
    with pytest.raises(ConfigError, match="too long"):
        b.encode("x" * 10_000)
    with pytest.raises(ConfigError, match="out of range"):
        b.encode("the", latent=10 ** 6)


def test_steering_strength_is_in_units_of_the_latents_max_activation(gpt2_browser):
    b = gpt2_browser
    l = int(b.index[0][0])
    out, m = b.steer(l, 3.0, "the function returns", 4)
    assert m == pytest.approx(float(b.profile.max_act[l])) and out.value == pytest.approx(3.0 * m)
    ref = steered_generate(b.run.model, b.run.hook, b.run.sae, l, 3.0 * m, "the function returns", 4)
    assert ref.steered_ids == out.steered_ids and ref.baseline_ids == out.baseline_ids
    assert b.steer(l, 3.0, "the function returns", 4)[0] is out          # kept, not generated again
    with pytest.raises(ConfigError, match="max_new_tokens"):
        b.steer(l, 1.0, "the", 0)
    with pytest.raises(ConfigError, match="finite"):
        b.steer(l, float("nan"), "the", 4)


def test_the_dashboard_reuses_the_browsers_cache_and_shows_the_same_latent_data(gpt2_browser, tmp_path, capsys):
    import json

    from probsae.cli.main import main

    b = gpt2_browser
    manifest = b.cache.path / "manifest.json"
    before = manifest.stat().st_mtime_ns
    l = int(b.index[1][0])
    assert main(["dashboard", str(b.run.path), "--n-windows", "60", "--window-len", "48", "--batch-size", "16",
                 "--latents", str(l), "--out", str(tmp_path / "dash"), "--no-progress"]) == 0
    assert manifest.stat().st_mtime_ns == before            # the same cache, not built again
    shown = json.loads((tmp_path / "dash" / "data.json").read_text())["latents"]
    assert shown == [json.loads(json.dumps(b.latent(l)))]   # one home for a latent's page data
