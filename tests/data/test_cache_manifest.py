"""The typed cache manifest reads and writes exactly the JSON that build_cache has always written,
and CacheWriter appends shards."""

from __future__ import annotations

import json

import pytest
import torch

from probsae.data.cache import ActivationCache, CacheWriter
from probsae.data.cache_manifest import NORMALISATION_NOTE, PAIR_NOTE, CacheManifest, ShardEntry
from probsae.data.errors import CacheError

# A manifest as written before CacheManifest existed (one of /work/main/cache, shortened), with a
# format-1 shard (sha256, no crc32) and a key this version does not know.
WRITTEN = """{
  "format_version": 1,
  "model": "smollm2",
  "hook": "resid_pre.20",
  "d_model": 576,
  "dtype": "bfloat16",
  "n_tokens": 132359,
  "n_windows": 401,
  "shards": [
    {
      "file": "shard_00000.safetensors",
      "n_tokens": 100000,
      "bytes": 115200136,
      "crc32": "0ae410ed",
      "windows_end": 400
    },
    {
      "file": "shard_00001.safetensors",
      "n_tokens": 32359,
      "bytes": 37277704,
      "sha256": "ab12"
    }
  ],
  "complete": true,
  "meta": {
    "model": "smollm2",
    "hook": "resid_pre.20",
    "split": "holdout",
    "model_source": {
      "name": "smollm2"
    }
  },
  "normalisation": "raw activations at the hook point; no normalisation applied (input normalisation belongs to the SAE)",
  "probsae_version": "0.1.0",
  "created": "2026-12-07T01:40:07+0000",
  "updated": "2026-12-07T01:42:31+0000",
  "from_the_future": [1, 2]
}"""

NEW_KEYS = ["format_version", "model", "hook", "d_model", "dtype", "n_tokens", "n_windows", "shards", "complete",
            "meta", "normalisation", "probsae_version", "created", "updated"]


def test_an_existing_manifest_round_trips_exactly():
    raw = json.loads(WRITTEN)
    man = CacheManifest.from_dict(raw)
    assert man.shards[0] == ShardEntry("shard_00000.safetensors", 100000, 115200136, crc32="0ae410ed", windows_end=400)
    assert man.shards[1].sha256 == "ab12" and man.shards[1].crc32 is None and man.extra == {"from_the_future": [1, 2]}
    assert json.dumps(man.to_dict(), indent=2) == json.dumps(raw, indent=2)  # same keys, same order


def test_a_new_manifest_has_the_keys_in_the_written_order():
    man = CacheManifest.new({"model": "m", "hook": "h"}, "float32", "0.1.0")
    d = man.to_dict()
    assert list(d) == NEW_KEYS and d["d_model"] is None and d["updated"] is None and d["complete"] is False
    assert d["normalisation"] == NORMALISATION_NOTE
    pair = CacheManifest.new({"model": "m", "hook": "h", "target_hook": "t"}, "float32", "0.1.0").to_dict()
    assert list(pair) == NEW_KEYS + ["target_hook"] and pair["normalisation"] == NORMALISATION_NOTE + PAIR_NOTE


def test_cache_writer_appends_shards(tmp_path):
    w = CacheWriter.open(tmp_path / "c", {"model": "m", "hook": "h"}, "float32", shard_tokens=4, resume=True,
                         overwrite=False)
    w.add(torch.ones(3, 2), 1)
    assert not w.manifest.shards and w.d_model == 2
    w.add(torch.zeros(2, 2), 2)  # 5 rows >= 4: one shard
    assert [s.n_tokens for s in w.manifest.shards] == [5] and w.manifest.n_windows == 2
    with pytest.raises(CacheError, match="width 3 != d_model 2"):
        w.add(torch.ones(1, 3), 3)
    w.add(torch.ones(1, 2), 3)
    w.finish({"model": "m", "hook": "h"})
    cache = ActivationCache(tmp_path / "c")
    assert cache.n_tokens == 6 and len(cache.shards) == 2
    assert CacheManifest.read(tmp_path / "c").to_dict() == cache.manifest
