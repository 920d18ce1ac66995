import pytest
import numpy as np
import torch
import torch.nn.functional as F

from probsae.data import capture, token_windows
from probsae.interp import LatentCache, build_latent_cache


def _direct_codes(handle, sae, docs, n_windows):
    """Codes computed directly (no cache): list of (window, pos, latent, value)."""
    out = {}
    w0 = 0
    for wb in token_windows(docs, handle.tokenizer, 32, batch_size=8, max_length=handle.max_length):
        with torch.inference_mode():
            x = capture(handle, "resid_post.1", wb.input_ids, wb.attention_mask)
            for b in range(len(wb)):
                if w0 + b >= n_windows:
                    return out
                keep = wb.token_mask[b]
                codes = sae.encode(x[b][keep])
                pos = keep.nonzero().squeeze(1)
                for r, l in zip(*(codes != 0).nonzero(as_tuple=True)):
                    out[(w0 + b, int(pos[r]), int(l))] = float(codes[r, l])
        w0 += len(wb)
    return out


def test_cache_matches_direct_encoding(tiny_setup, tmp_path):
    handle, docs, sae = tiny_setup
    cache = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=60,
                               chunk_windows=16, group_size=16, n_nonactivating=8)
    assert cache.n_windows == 60 and len(cache.manifest["chunks"]) == 4
    direct = _direct_codes(handle, sae, docs, 60)
    recs = cache.records(range(sae.d_sae))
    n = 0
    for l, rec in recs.items():
        for i, w in enumerate(rec.windows):
            for p in np.flatnonzero(rec.acts[i]):
                assert abs(rec.acts[i, p] - abs(direct[(int(w), int(p), l)])) < 1e-4
                n += 1
    assert n == len(direct) > 0
    st = cache.stats()
    assert st.token_counts.sum() == len(direct)
    assert all(st.window_counts[l] == len(recs[l]) for l in recs)
    # prob_topk's pre-gate score LayerNorm(a), at firing tokens only, equal to the SAE's own
    rec = max(recs.values(), key=len)
    g = rec.extras["gate_logits"]
    assert np.isfinite(g[rec.acts > 0]).all() and np.isnan(g[rec.acts == 0]).all()
    w, p = int(rec.windows[0]), int(np.flatnonzero(rec.acts[0])[0])
    wb = next(token_windows(docs, handle.tokenizer, 32, batch_size=w + 1, max_length=handle.max_length))
    with torch.inference_mode():
        x = capture(handle, "resid_post.1", wb.input_ids[w:w + 1], wb.attention_mask[w:w + 1])[0, p]
        x_n, _ = sae.normalizer(x[None])
        want = F.layer_norm(sae.pre_acts(x_n), (sae.d_sae,), sae.ln_weight, sae.ln_bias)[0, rec.latent]
    assert abs(float(g[0, p]) - float(want)) < 2e-2 * max(1.0, abs(float(want)))   # stored as float16
    # non-activating sample: windows where the latent never fires
    for l in list(recs)[:10]:
        na = cache.nonactivating(l)
        assert len(set(na.tolist()) & set(recs[l].windows.tolist())) == 0
    # window text round-trips through the stored tokenizer
    ids, keep = cache.tokens([3])
    assert cache.text(3) == handle.tokenizer.decode([int(t) for t, k in zip(ids[0], keep[0]) if k]).strip()


def test_cache_is_reused_and_reopens(tiny_setup, tmp_path):
    handle, docs, sae = tiny_setup
    c1 = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=20)
    mtime = (tmp_path / "c" / "chunk_00000.safetensors").stat().st_mtime_ns
    c2 = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=20)
    assert (tmp_path / "c" / "chunk_00000.safetensors").stat().st_mtime_ns == mtime
    assert LatentCache(tmp_path / "c").manifest == c2.manifest == c1.manifest


def test_planted_positional_dense_and_start_latents_are_flagged(tmp_path, planted_cache):
    p = planted_cache(tmp_path / "c").profile()
    assert p.flags(0) == ["positional"] and p.flags(1) == ["dense"]
    assert p.flags(2) == [] and p.flags(3) == ["window-start"]
    lo, hi, share = p.band
    # the narrowest band with ≥ 80 % of the mass: 41–45 holds (1.1+…+1.5)/(1.0+…+1.5) = 6.5/7.5
    assert p.bin_positions(int(lo[0]))[0] == 41 and p.bin_positions(int(hi[0]))[1] == 45
    assert share[0] == pytest.approx(6.5 / 7.5, rel=1e-5) and share[2] < 0.8
    assert p.flagged.tolist() == [True, True, False, True]
    assert p.pos_mass[0, 40:46].sum() == pytest.approx(p.pos_mass[0].sum())
    assert p.density[1] == 1.0 and p.max_act[2] == 21.0 and p.top_tokens[2, 0] == (19 * 64 + 1 + 57 % 63) % 50


def test_a_cache_without_positions_file_gets_them_from_the_triplets(tmp_path, planted_cache):
    """Caches written before positions.safetensors: the profile is computed on first read and saved."""
    cache = planted_cache(tmp_path / "c")
    assert not (cache.path / "positions.safetensors").exists()   # as an old cache
    first = cache.profile()
    assert (cache.path / "positions.safetensors").is_file()
    again = LatentCache(cache.path).profile()
    assert np.array_equal(first.pos_mass, again.pos_mass) and again.flags(0) == ["positional"]


def test_build_writes_the_profile_and_a_rebuild_replaces_it(tiny_setup, tmp_path):
    handle, docs, sae = tiny_setup
    cache = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=20, window_len=32,
                               n_nonactivating=4)
    assert (cache.path / "positions.safetensors").is_file()
    p = cache.profile()
    assert p.pos_mass.shape == (sae.d_sae, 32)
    assert np.allclose(p.pos_mass.sum(axis=1), cache.stats().sum_act, rtol=1e-4)
    (cache.path / "positions.safetensors").write_bytes(b"stale")
    build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=20, window_len=32,
                       n_nonactivating=4, overwrite=True)
    assert np.array_equal(LatentCache(cache.path).profile().pos_mass, p.pos_mass)


def test_a_read_only_old_cache_still_gets_its_profile(tmp_path, planted_cache, monkeypatch):
    import probsae.io
    from probsae.errors import FileIOError

    def refuse(dest, write):
        raise FileIOError(f"{dest}: read-only file system")

    cache = planted_cache(tmp_path / "c")
    monkeypatch.setattr(probsae.io, "atomic_write", refuse)
    assert cache.profile().flags(1) == ["dense"] and not (cache.path / "positions.safetensors").exists()


def _fake_clock(step: float):
    """A clock that advances ``step`` seconds per call (the first batch takes ``step``)."""
    t = [0.0]

    def clock():
        t[0] += step
        return t[0]
    return clock


def test_cost_line_is_said_after_the_first_batch_before_the_rest(tiny_setup, tmp_path, monkeypatch):
    import probsae.progress

    handle, docs, sae = tiny_setup
    said = []
    monkeypatch.setattr(probsae.progress, "say", lambda m: said.append((m, len(list((tmp_path / "c").glob("chunk_*"))))))
    cache = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=40, batch_size=8,
                               chunk_windows=8, clock=_fake_clock(1.0))
    # first batch: 8 windows × 32 tokens in 1 s of the fake clock → 256 tokens/s, 40 × 32 tokens → 5 s
    assert said == [("latent cache: 40 windows × 32 tokens = 1,280 tokens; measured 256 tokens/s on the first "
                     "batch → about 0.1 min", 0)]
    assert cache.n_windows == 40 and cache.manifest["estimate"] == {
        "tokens_per_s": 256.0, "estimated_s": 5.0, "capped_from": None, "time_budget_s": None}
    assert cache.manifest["n_tokens"] > 0


def test_a_default_window_count_is_capped_to_the_budget_an_explicit_one_is_not(tiny_setup, tmp_path):
    handle, docs, sae = tiny_setup
    kw = dict(n_windows=40, batch_size=8, chunk_windows=8, clock=_fake_clock(1.0))
    capped = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", time_budget_s=2.0, **kw)
    # 2 s × 256 tokens/s / 32 tokens = 16 windows (two whole batches)
    assert capped.n_windows == 16 and capped.manifest["n_windows_requested"] == 40
    assert capped.manifest["estimate"]["capped_from"] == 40 and capped.manifest["estimate"]["time_budget_s"] == 2.0
    again = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", time_budget_s=2.0, **kw)
    assert again.manifest == capped.manifest  # the capped default is reused by the same default
    explicit = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", **kw)
    assert explicit.n_windows == 40 and explicit.manifest["estimate"]["capped_from"] is None
