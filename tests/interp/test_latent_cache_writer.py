"""The latent-cache writer's pieces on synthetic encoded batches: per-latent totals and chunks
partitioned by latent group."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from probsae.interp.encode import EncodedBatch
from probsae.interp.latent_cache_writer import _ChunkWriter, _Totals


def batch(first: int, window, pos, latent, act) -> EncodedBatch:
    n = 2
    ids = torch.arange(n * 3).reshape(n, 3)
    return EncodedBatch(ids, torch.ones(n, 3, dtype=torch.long), torch.ones(n, 3, dtype=torch.bool), first,
                        torch.tensor(window), torch.tensor(pos), torch.tensor(latent), torch.tensor(act))


def test_totals_count_tokens_windows_and_act():
    t = _Totals(4)
    t.add(batch(0, [0, 0, 1], [0, 1, 0], [1, 1, 3], [0.5, -2.0, 1.0]))
    assert t.token_counts.tolist() == [0, 2, 0, 1] and t.window_counts.tolist() == [0, 1, 0, 1]
    assert t.max_act.tolist() == [0.0, 2.0, 0.0, 1.0] and t.sum_act.tolist() == [0.0, 2.5, 0.0, 1.0]
    assert t.n_tokens == 6


def test_chunks_hold_windows_and_group_partitioned_triplets(tmp_path):
    w = _ChunkWriter(tmp_path, d_sae=4, window_len=4, group_size=2, chunk_windows=4, outputs=())
    w.add(batch(0, [0, 1], [0, 2], [3, 0], [1.0, 2.0]))
    assert not w.chunks  # 2 windows < 4
    w.add(batch(2, [2, 3], [1, 1], [1, 2], [3.0, 4.0]))
    assert w.chunks == [{"file": "chunk_00000.safetensors", "first_window": 0, "n_windows": 4}]
    t = load_file(str(tmp_path / "chunk_00000.safetensors"))
    assert t["tokens"].shape == (4, 4) and t["tokens"][:, 3].tolist() == [-1] * 4  # padded to window_len
    assert t["g0000/latent"].tolist() == [0, 1] and t["g0000/window"].tolist() == [1, 2]
    assert t["g0001/latent"].tolist() == [3, 2] and t["g0001/act"].tolist() == [1.0, 4.0]


def test_sae_fingerprint_is_exact_and_independent_of_the_thread_count():
    """It hashed weight sums, whose float reduction order follows torch's thread count: the same
    SmolLM2 SAE hashed differently under OMP_NUM_THREADS=1, so its latent cache was not reused."""
    import probsae
    from probsae.interp.latent_cache_writer import sae_fingerprint

    torch.manual_seed(0)
    sae = probsae.build_sae("topk", d_in=576, d_sae=9216, k=4)   # SmolLM2's size: the sums did differ here
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = sae_fingerprint(sae)
        torch.set_num_threads(max(n, 2))
        assert sae_fingerprint(sae) == one
    finally:
        torch.set_num_threads(n)
    with torch.no_grad():   # one weight moved by one ulp: a different SAE
        w = sae.W_dec if hasattr(sae, "W_dec") else next(sae.parameters())
        w.view(-1)[7] = torch.nextafter(w.view(-1)[7], torch.tensor(float("inf")))
    assert sae_fingerprint(sae) != one


def test_a_cache_recorded_with_the_legacy_fingerprint_is_still_reused(tiny_setup, tmp_path):
    import json

    from probsae.interp.latent_cache_writer import _legacy_fingerprint, build_latent_cache, find_profile

    handle, docs, sae = tiny_setup
    c1 = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=20)
    m = json.loads((c1.path / "manifest.json").read_text())
    m["sae_fingerprint"] = _legacy_fingerprint(sae)      # as written before 2026-12-07
    (c1.path / "manifest.json").write_text(json.dumps(m))
    mtime = (c1.path / "stats.safetensors").stat().st_mtime_ns
    c2 = build_latent_cache(sae, handle, "resid_post.1", docs, tmp_path / "c", n_windows=20)
    assert (c2.path / "stats.safetensors").stat().st_mtime_ns == mtime          # reused, not rebuilt
    assert find_profile(tmp_path, sae, cache_dir=c1.path) is not None
    m["sae_fingerprint"] = "0" * 16                                              # another SAE's cache
    (c1.path / "manifest.json").write_text(json.dumps(m))
    assert find_profile(tmp_path, sae, cache_dir=c1.path) is None
