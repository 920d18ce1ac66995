"""Tests for probsae.data.cache: building, resuming, validating and reading activation caches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from probsae.data.cache import ActivationCache, build_cache
from probsae.data.errors import CacheError
from probsae.data.extract import ActivationStream
from probsae.data.models import ModelHandle

from probsae.data.tiny import TINY_DOCS as DOCS

META = {"model": "toy", "hook": "resid_pre.0", "corpus": "synthetic", "context_length": 4}


def _chunks(n_chunks: int = 10, rows: int = 7, d: int = 5, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, d, generator=g) for _ in range(n_chunks)]


def _build(path: Path, shard_tokens: int = 20, dtype: object = torch.float32) -> ActivationCache:
    return build_cache(_chunks(), path, META, shard_tokens=shard_tokens, dtype=dtype)


def test_build_and_read_roundtrip(tmp_path: Path) -> None:
    cache = _build(tmp_path / "c")
    ref = torch.cat(_chunks())
    assert (cache.n_tokens, cache.d_in, len(cache)) == (70, 5, 70)
    assert [s.n_tokens for s in cache.shards] == [21, 21, 21, 7]  # shards close at batch boundaries
    man = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert man["complete"] and man["model"] == "toy" and man["hook"] == "resid_pre.0"
    assert man["meta"]["corpus"] == "synthetic" and "no normalisation" in man["normalisation"]
    assert all(len(s["crc32"]) == 8 and s["bytes"] > 0 for s in man["shards"])
    ordered = torch.cat(list(cache.iter_batches(16, shuffle=False)))
    assert torch.equal(ordered, ref)
    assert cache.n_batches(16) == 5 == len(list(cache.iter_batches(16, shuffle=False)))
    from probsae.io import TMP_GLOB

    assert not list((tmp_path / "c").glob(TMP_GLOB)) and not list((tmp_path / "c").glob("*tmp*"))


def test_shuffled_batches(tmp_path: Path) -> None:
    cache = _build(tmp_path / "c")
    ref = torch.cat(_chunks())
    a = list(cache.iter_batches(16, shuffle=True, seed=3, buffer_shards=2))
    b = list(cache.iter_batches(16, shuffle=True, seed=3, buffer_shards=2))
    c = list(cache.iter_batches(16, shuffle=True, seed=4, buffer_shards=2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(torch.cat(a), torch.cat(c))
    assert [x.shape[0] for x in a] == [16, 16, 16, 16, 6]
    got = torch.cat(a)
    assert not torch.equal(got, ref)
    # a permutation of the stored rows: every row appears exactly once
    assert torch.equal(got[got[:, 0].argsort()], ref[ref[:, 0].argsort()])
    two = list(cache.iter_batches(16, shuffle=True, epochs=2, drop_last=True))
    assert len(two) == cache.n_batches(16, epochs=2, drop_last=True) == 8


@pytest.mark.parametrize("dtype,name", [(torch.float16, "float16"), ("bfloat16", "bfloat16")])
def test_half_storage(tmp_path: Path, dtype: object, name: str) -> None:
    cache = _build(tmp_path / "c", dtype=dtype)
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["dtype"] == name
    x = next(cache.iter_batches(70, shuffle=False))
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, torch.cat(_chunks()), rtol=1e-2, atol=1e-2)
    assert next(cache.iter_batches(8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_validation_errors(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="does not exist"):
        ActivationCache(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CacheError, match="no manifest.json"):
        ActivationCache(tmp_path / "empty")
    root = tmp_path / "c"
    _build(root)
    with pytest.raises(CacheError, match="holds model 'toy', but 'gpt2' was requested"):
        ActivationCache(root, model="gpt2")
    with pytest.raises(CacheError, match="holds hook"):
        ActivationCache(root, hook="resid_pre.8")
    with pytest.raises(CacheError, match="holds d_model 5"):
        ActivationCache(root, d_model=768)
    ActivationCache(root, model="toy", hook="resid_pre.0", d_model=5, verify=True)


def test_corrupt_cache(tmp_path: Path) -> None:
    root = tmp_path / "c"
    _build(root)
    shard = root / "shard_00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"  # same size, different content
    shard.write_bytes(bytes(data))
    cache = ActivationCache(root)  # size still matches: the checksum is checked when the shard is read
    with pytest.raises(CacheError, match="shard_00001.safetensors is corrupt: its CRC-32"):
        list(cache.iter_batches(8, shuffle=False))
    unchecked = ActivationCache(root, verify=False)
    assert len(list(unchecked.iter_batches(8, shuffle=False))) == 9
    shard.write_bytes(bytes(data[:-10]))
    with pytest.raises(CacheError, match="truncated or replaced"):
        ActivationCache(root)
    shard.unlink()
    with pytest.raises(CacheError, match="shard_00001.safetensors is missing"):
        ActivationCache(root)
    (root / "manifest.json").write_text("{oops")
    with pytest.raises(CacheError, match="corrupt"):
        ActivationCache(root)


def test_shape_mismatch_detected(tmp_path: Path) -> None:
    root = tmp_path / "c"
    _build(root)
    man = json.loads((root / "manifest.json").read_text())
    man["shards"][0]["n_tokens"] = 20
    (root / "manifest.json").write_text(json.dumps(man))
    cache = ActivationCache(root)
    with pytest.raises(CacheError, match=r"has shape \(21, 5\), manifest says \(20, 5\)"):
        list(cache.iter_batches(8, shuffle=False))


def test_existing_cache_needs_resume_or_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "c"
    _build(root)
    with pytest.raises(CacheError, match="already holds a cache"):
        build_cache(_chunks(), root, META, resume=False)
    with pytest.raises(CacheError, match="meta 'model' is 'toy' on disk"):
        build_cache(_chunks(), root, {**META, "model": "other"})
    c = build_cache(_chunks(seed=1), root, META, shard_tokens=1000, overwrite=True)
    assert len(c.shards) == 1 and torch.equal(next(c.iter_batches(70, shuffle=False)),
                                              torch.cat(_chunks(seed=1)))


def test_split_disjoint(tmp_path: Path) -> None:
    cache = _build(tmp_path / "c", shard_tokens=7)  # 10 shards of 7
    train, hold = cache.split(0.2)
    assert (len(train.shards), len(hold.shards)) == (8, 2)
    assert train.n_tokens + hold.n_tokens == cache.n_tokens
    assert {s.file for s in train.shards}.isdisjoint({s.file for s in hold.shards})
    assert torch.equal(torch.cat(list(hold.iter_batches(7, shuffle=False))), torch.cat(_chunks()[8:]))
    with pytest.raises(CacheError, match="at least 2"):
        _build(tmp_path / "one", shard_tokens=10**6).split(0.1)


class _Killed(RuntimeError):
    pass


def _killing(batches: Iterator, after: int) -> Iterator:
    for i, b in enumerate(batches):
        if i == after:
            raise _Killed
        yield b


def test_resume_after_kill(tmp_path: Path, tiny_gpt2: ModelHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = {"model": "tiny-gpt2", "hook": "resid_pre.1", "corpus": "docs", "context_length": 6}

    def stream() -> ActivationStream:
        return ActivationStream.from_corpus(tiny_gpt2, "resid_pre.1", list(DOCS) * 3, context_length=6,
                                            batch_size=2)

    ref = build_cache(stream(), tmp_path / "ref", meta, shard_tokens=12)
    ref_rows = torch.cat(list(ref.iter_batches(10**6, shuffle=False)))
    assert len(ref.shards) >= 4

    s = stream()
    orig = s.batches
    monkeypatch.setattr(s, "batches", lambda **kw: _killing(orig(**kw), after=5))
    with pytest.raises(_Killed):
        build_cache(s, tmp_path / "c", meta, shard_tokens=12)
    with pytest.raises(CacheError, match="incomplete"):
        ActivationCache(tmp_path / "c")
    partial = ActivationCache(tmp_path / "c", allow_incomplete=True)
    assert 0 < len(partial.shards) < len(ref.shards)

    seen: list[int] = []
    s2 = stream()
    orig2 = s2.batches
    monkeypatch.setattr(s2, "batches", lambda **kw: (seen.append(kw["skip_windows"]), orig2(**kw))[1])
    done = build_cache(s2, tmp_path / "c", meta, shard_tokens=12)
    assert seen and seen[0] == partial.manifest["n_windows"] > 0  # restarted after the last shard
    assert done.n_tokens == ref.n_tokens
    torch.testing.assert_close(torch.cat(list(done.iter_batches(10**6, shuffle=False))), ref_rows)
    # resuming a complete cache is a no-op
    again = build_cache(stream(), tmp_path / "c", meta, shard_tokens=12)
    assert again.n_tokens == ref.n_tokens


def test_max_tokens_budget(tmp_path: Path, tiny_gpt2: ModelHandle) -> None:
    s = ActivationStream.from_corpus(tiny_gpt2, "resid_pre.0", list(DOCS) * 3, context_length=6,
                                     batch_size=2, max_tokens=25)
    c = build_cache(s, tmp_path / "c", {"model": "m", "hook": "resid_pre.0"}, shard_tokens=10)
    assert c.n_tokens == 25


def test_cache_identity_covers_every_field_but_the_listed_ones(tmp_path: Path) -> None:
    from probsae.data.cache import CACHE_KEY_EXCLUDE, cache_dir_name, cache_identity
    from probsae.data.prepare import DataSpec

    corpus = tmp_path / "c.txt"
    corpus.write_text("one document\n\nanother one\n")
    spec = DataSpec(model="m", corpus=str(corpus)).to_dict()
    name = cache_dir_name(cache_identity(spec, "train"))
    assert CACHE_KEY_EXCLUDE == {"device", "extract_batch_size", "shard_tokens"}
    for k in CACHE_KEY_EXCLUDE:
        assert cache_dir_name(cache_identity({**spec, k: "other"}, "train")) == name
    assert cache_dir_name(cache_identity({**spec, "eval_tokens": 7}, "train")) == name  # the other split's budget
    assert cache_dir_name(cache_identity({**spec, "eval_tokens": 7}, "holdout")) != \
        cache_dir_name(cache_identity(spec, "holdout"))
    for k, v in [("holdout_every", 2), ("text_field", "body"), ("context_length", 9), ("max_tokens", 5),
                 ("exclude_special", False), ("dtype", "float16"), ("model_dtype", "bfloat16")]:  # also new fields
        assert cache_dir_name(cache_identity({**spec, k: v}, "train")) != name, k
    assert cache_dir_name(cache_identity(spec, "holdout")) != name
    corpus.write_text("one document\n\nanother one!\n")
    assert cache_dir_name(cache_identity(spec, "train")) != name, "the corpus content is part of the key"


def test_prepared_cache_is_keyed_by_the_dtype_the_model_ran_in(tmp_path: Path, tiny_gpt2: ModelHandle,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``model_dtype="auto"`` enters the cache identity resolved (float32 on the CPU), never as
    'auto': an explicit float32 reuses that cache, a bf16 spec names another one."""
    from dataclasses import replace

    from probsae.data import prepare
    from probsae.data.prepare import DataSpec, prepare_caches

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(list(DOCS) * 4))
    spec = DataSpec(model="m", hook="resid_pre.1", corpus=str(corpus), context_length=8, eval_tokens=40,
                    holdout_every=2)
    (held,) = prepare_caches(spec, tmp_path / "cache", progress=False, parts=("holdout",), handle=tiny_gpt2)
    assert held.manifest["meta"]["model_dtype"] == "float32"
    assert held.path.name == spec.slug("holdout", "cpu")
    monkeypatch.setattr(prepare, "activation_stream", lambda *a, **k: pytest.fail("extracted again"))
    (again,) = prepare_caches(replace(spec, model_dtype="float32"), tmp_path / "cache", progress=False,
                              parts=("holdout",), handle=tiny_gpt2)
    assert again.path == held.path
    assert replace(spec, model_dtype="bfloat16").slug("holdout", "cpu") != held.path.name
