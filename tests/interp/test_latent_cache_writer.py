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
