"""Writing a latent cache: ``build_latent_cache`` encodes token windows with an SAE and writes the
files that ``LatentCache`` (latent_cache.py, where the format is described) reads."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..io import atomic_write, atomic_write_json
from .cost import Estimate, estimate
from .encode import EncodedBatch, token_outputs
from .latent_cache import FORMAT, LOGITS, MANIFEST, NONACT, POSITIONS, STATS, VERSION, LatentCache, gate_beta_end
from .logit_effects import logit_effects, stale_logit_note


def _save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata))


def _settings(sae, hp, n_windows: int, window_len: int, n_nonactivating: int, seed: int,
              exclude_special: bool) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "n_windows_requested": int(n_windows),
            "window_len": int(window_len), "exclude_special": bool(exclude_special), "hook": str(hp), "d_sae": int(sae.d_sae),
            "architecture": sae.architecture, "n_nonactivating": int(n_nonactivating), "seed": int(seed),
            "sae_fingerprint": sae_fingerprint(sae)}


class _Totals:
    """Per-latent totals over every encoded token: firing tokens and windows, max and sum of |act|."""

    def __init__(self, d_sae: int):
        self.d_sae = d_sae
        self.token_counts = torch.zeros(d_sae, dtype=torch.long)
        self.window_counts = torch.zeros(d_sae, dtype=torch.long)
        self.max_act = torch.zeros(d_sae)
        self.sum_act = torch.zeros(d_sae, dtype=torch.float64)
        self.n_tokens = 0

    def add(self, b: EncodedBatch) -> None:
        d = self.d_sae
        av = b.act.abs()
        self.n_tokens += b.n_tokens
        self.token_counts += torch.bincount(b.latent, minlength=d)
        self.sum_act += torch.bincount(b.latent, weights=av.double(), minlength=d)
        self.max_act = torch.maximum(self.max_act, torch.zeros(d).scatter_reduce(0, b.latent, av, "amax"))
        pairs = torch.unique(b.window * d + b.latent)
        self.window_counts += torch.bincount(pairs % d, minlength=d)

    def save(self, path: Path) -> None:
        _save({"token_counts": self.token_counts, "window_counts": self.window_counts,
               "max_act": self.max_act, "sum_act": self.sum_act}, path)


class _ChunkWriter:
    """Buffers encoded batches and writes one chunk file per ``chunk_windows`` windows, its
    triplets partitioned by latent group (see the module docstring)."""

    def __init__(self, out: Path, d_sae: int, window_len: int, group_size: int, chunk_windows: int,
                 outputs: tuple[str, ...]):
        self.out, self.d_sae, self.W = out, d_sae, window_len
        self.group_size, self.chunk_windows, self.outputs = group_size, chunk_windows, outputs
        self.n_groups = (d_sae + group_size - 1) // group_size
        self.chunks: list[dict[str, Any]] = []
        self.done = 0
        self._buf: list[EncodedBatch] = []
        self._first = 0

    def add(self, b: EncodedBatch) -> None:
        self._buf.append(b)
        self.done += len(b)
        if self.done - self._first >= self.chunk_windows:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        tokens, keep = [], []
        for b in self._buf:
            T = b.input_ids.shape[1]
            tok = torch.full((len(b), self.W), -1, dtype=torch.int32)
            tok[:, :T] = torch.where(b.attention_mask.bool(), b.input_ids, torch.full_like(b.input_ids, -1)).to(torch.int32)
            kp = torch.zeros((len(b), self.W), dtype=torch.bool)
            kp[:, :T] = b.keep
            tokens.append(tok)
            keep.append(kp)
        cols = {"window": (torch.int64, [b.window for b in self._buf]), "pos": (torch.int16, [b.pos for b in self._buf]),
                "latent": (torch.int32, [b.latent for b in self._buf]), "act": (torch.float32, [b.act for b in self._buf])}
        cols.update({name: (torch.float16, [b.extras[name] for b in self._buf]) for name in self.outputs})
        cat = {k: torch.cat(ts) for k, (_, ts) in cols.items()}
        # stable sort by group keeps (window, pos) order inside each group
        order = torch.argsort(cat["latent"] // self.group_size, stable=True)
        sizes = torch.bincount(cat["latent"] // self.group_size, minlength=self.n_groups).tolist()
        tensors: dict[str, torch.Tensor] = {"tokens": torch.cat(tokens), "keep": torch.cat(keep)}
        for k, (dtype, _) in cols.items():
            for gi, part in enumerate(cat[k][order].split(sizes)):
                tensors[f"g{gi:04d}/{k}"] = part.to(dtype)
        name = f"chunk_{len(self.chunks):05d}.safetensors"
        _save(tensors, self.out / name)
        self.chunks.append({"file": name, "first_window": self._first, "n_windows": self.done - self._first})
        self._buf, self._first = [], self.done


def build_latent_cache(sae, handle, hook, docs: Iterable[str], out_dir: str | os.PathLike, *,
                       n_windows: int = 4096, window_len: int = 32, batch_size: int = 16,
                       chunk_windows: int = 1024, group_size: int = 1024, n_nonactivating: int = 64,
                       seed: int = 0, meta: dict[str, Any] | None = None, progress: bool = False,
                       overwrite: bool = False, n_logits: int = 10, exclude_special: bool = True,
                       time_budget_s: float | None = None, clock=time.monotonic) -> "LatentCache":
    """Encode ``n_windows`` windows of ``window_len`` tokens and write a latent cache to ``out_dir``.

    Three stages: :func:`~probsae.interp.encode.encode_windows` (model → hook → sparse codes and
    the architecture's declared extra outputs), per-latent totals, and a chunk writer. Then the stats, the tokenizer, the
    logit effects (causal LMs), the non-activating samples and the per-latent position
    histograms (``LatentCache.profile``).

    Args:
        sae: a trained :class:`~probsae.SAE` (its ``d_in`` must match the hook's width).
        handle: a :class:`~probsae.data.ModelHandle`; ``hook`` a hook point (``resid_post.3``...).
        docs: documents (e.g. ``load_corpus("pydoc")``), packed into windows by
            :func:`probsae.data.token_windows` (special tokens are kept in the window but never encoded).
        window_len: tokens per window; the dashboard uses the run's training context length.
        n_nonactivating: per latent, how many windows where it never fires to sample and store.
        exclude_special: never encode BOS/CLS/SEP/EOS/PAD positions (as training did by default).
        meta: extra metadata recorded in the manifest (model name, corpus spec, run dir...).
        time_budget_s: ``n_windows`` is a default: cap it so the time estimated from the first
            batch's speed stays under this many seconds (``cost.TIME_BUDGET_S``); None keeps it.
            The estimate is printed (``progress.say``) after the first batch either way, and
            recorded in the manifest (``estimate``) next to ``n_windows``/``n_tokens``.
        clock: seconds (``time.monotonic``; tests pass a fake one).
    An existing complete cache with the same settings is reused unless ``overwrite``.
    """
    from ..data.hooks import HookPoint

    out = Path(out_dir)
    hp = HookPoint.parse(hook)
    settings = _settings(sae, hp, n_windows, window_len, n_nonactivating, seed, exclude_special)
    if (out / MANIFEST).is_file() and not overwrite:
        cache = LatentCache(out)
        capped = (cache.manifest.get("estimate") or {}).get("capped_from") is not None
        same = all(cache.manifest.get(k) == v for k, v in settings.items() if k != "sae_fingerprint") \
            and fingerprint_matches(cache.manifest.get("sae_fingerprint"), sae, settings["sae_fingerprint"])
        if same and cache.manifest.get("complete") \
                and not (capped and time_budget_s is None):   # an explicit count is never a capped cache
            return _refresh_logits(out, cache, sae, handle, n_logits) if stale_logit_note(cache.manifest) else cache
    _check_inputs(sae, handle, hp, window_len)
    _clear(out)
    sae = sae.eval()
    t0 = time.time()
    totals, writer, est = _encode_into(out, sae, handle, hp, docs, n_windows, window_len, batch_size, chunk_windows,
                                       group_size, exclude_special, progress, time_budget_s, clock)
    totals.save(out / STATS)
    effects, logit_note = _side_files(out, sae, handle, n_logits)
    manifest = {**settings, "n_windows": writer.done, "n_tokens": totals.n_tokens, "group_size": group_size,
                "chunk_windows": chunk_windows, "token_outputs": list(writer.outputs), "model": handle.name,
                "is_causal": bool(getattr(handle, "is_causal", False)), "logit_effects": effects is not None,
                "logit_note": logit_note, "gate_beta_end": gate_beta_end(sae), "chunks": writer.chunks,
                "seconds": round(time.time() - t0, 2), "estimate": est.to_json(), "meta": meta or {},
                "special_ids": sorted(int(i) for i in handle.special_ids), "complete": False}
    atomic_write_json(out / MANIFEST, manifest)
    write_nonactivating(LatentCache(out), n_nonactivating, seed)
    LatentCache(out).profile()   # writes positions.safetensors (position histograms, flags' inputs)
    manifest["complete"] = True
    atomic_write_json(out / MANIFEST, manifest)
    return LatentCache(out)


def _check_inputs(sae, handle, hp, window_len: int) -> None:
    if window_len < 2:
        raise InputError(f"window_len must be ≥ 2, got {window_len}")
    if sae.d_in != handle.d_model and hp.kind != "module":
        raise InputError(f"SAE d_in={sae.d_in} does not match model {handle.name!r} width {handle.d_model}")
    hp.validate(handle)


def _clear(out: Path) -> None:
    """Create ``out`` and remove the chunks and manifest of an earlier cache there."""
    out.mkdir(parents=True, exist_ok=True)
    for p in out.glob("chunk_*.safetensors"):
        p.unlink()
    for p in (out / MANIFEST, out / POSITIONS):
        if p.exists():
            p.unlink()


def _encode_into(out: Path, sae, handle, hp, docs: Iterable[str], n_windows: int, window_len: int, batch_size: int,
                 chunk_windows: int, group_size: int, exclude_special: bool, progress: bool,
                 time_budget_s: float | None = None, clock=time.monotonic) -> tuple[_Totals, _ChunkWriter, Estimate]:
    """Encode up to ``n_windows`` windows of ``docs`` into chunk files in ``out``; the per-latent
    totals, the chunk writer (its chunks listed) and the cost estimate made after the first batch
    (which may cap ``n_windows``, see :func:`build_latent_cache`). No window at all is an InputError."""
    from ..data.corpus import token_windows
    from ..progress import bar as progress_bar
    from ..progress import say
    from .encode import encode_windows

    totals = _Totals(sae.d_sae)
    writer = _ChunkWriter(out, sae.d_sae, window_len, group_size, chunk_windows, token_outputs(sae))
    windows = token_windows(docs, handle.tokenizer, window_len, batch_size=batch_size,
                            max_length=handle.max_length, exclude_special=exclude_special, drop_last=False)
    est, stop, t0 = None, n_windows, clock()
    with progress_bar(total=n_windows, unit="win", desc="latent cache", requested=progress) as bar:
        for eb in encode_windows(sae, handle, hp, windows, max_windows=n_windows):
            if est is None:
                est = estimate("latent cache", n_windows, window_len, len(eb), clock() - t0, time_budget_s, batch_size)
                say(est.line())
                stop = bar.total = est.n_windows
            totals.add(eb)
            writer.add(eb)
            bar.update(len(eb))
            if writer.done >= stop:
                break
    writer.flush()
    if writer.done == 0 or est is None:
        raise InputError("the corpus produced no token windows")
    return totals, writer, est


def _side_files(out: Path, sae, handle, n_logits: int) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The tokenizer (so examples decode without the model) and the logit effects (causal LMs);
    returns ``logit_effects``'s (effects or None, note)."""
    try:
        handle.tokenizer.save_pretrained(str(out / "tokenizer"))
    except Exception:  # noqa: BLE001 - decoding then needs the model name
        pass
    effects, logit_note = logit_effects(sae, handle, n_logits)
    if effects is not None:
        _save(effects, out / LOGITS)
    return effects, logit_note


def _refresh_logits(out: Path, cache: LatentCache, sae, handle, n_logits: int) -> LatentCache:
    """A cache written before the final norm was folded into the unembedding: its logit effects
    (and their note) rewritten, the rest reused."""
    effects, note = _side_files(out, sae, handle, n_logits)
    atomic_write_json(out / MANIFEST, {**cache.manifest, "logit_effects": effects is not None, "logit_note": note})
    return LatentCache(out)


def write_nonactivating(cache: LatentCache, n: int, seed: int) -> None:
    """Store, per latent, a seeded sample of ``n`` window ids where it never fires."""
    n_win = cache.n_windows
    table = np.full((cache.d_sae, max(n, 1)), -1, dtype=np.int64)
    n_groups = (cache.d_sae + cache.group_size - 1) // cache.group_size
    for g in range(n_groups):
        t = cache.group_triplets(g)
        lo = g * cache.group_size
        hi = min(lo + cache.group_size, cache.d_sae)
        order = np.argsort(t["latent"], kind="stable")
        lat, win = t["latent"][order], t["window"][order]
        bounds = np.searchsorted(lat, np.arange(lo, hi + 1))
        for l in range(lo, hi):
            fired = np.unique(win[bounds[l - lo]:bounds[l - lo + 1]])
            rng = np.random.default_rng([seed, l])
            if len(fired) >= n_win:
                continue
            if len(fired) > n_win // 2:
                pool = np.setdiff1d(np.arange(n_win), fired)
                pick = rng.permutation(pool)[:n]
            else:
                pick_set: list[int] = []
                seen = set(fired.tolist())
                cand = rng.permutation(n_win)
                for c in cand:
                    if int(c) not in seen:
                        pick_set.append(int(c))
                        if len(pick_set) == n:
                            break
                pick = np.asarray(pick_set, dtype=np.int64)
            table[l, :len(pick)] = pick
    _save({"windows": torch.from_numpy(table)}, cache.path / NONACT)


def find_profile(run_dir: str | os.PathLike, sae, cache_dir: str | os.PathLike | None = None):
    """The :class:`~probsae.interp.latent_cache.LatentProfile` of ``cache_dir``, else of the
    complete latent cache of ``sae`` under ``run_dir/interp/latent_cache/`` with the most tokens;
    None if there is none."""
    dirs = [Path(cache_dir)] if cache_dir else sorted((Path(run_dir) / "interp" / "latent_cache").glob("*/"))
    best, fp = None, None
    for d in dirs:
        try:
            c = LatentCache(d)
        except InputError:
            continue
        fp = fp or sae_fingerprint(sae)
        if c.manifest.get("complete") and fingerprint_matches(c.manifest.get("sae_fingerprint"), sae, fp) and \
                (best is None or c.manifest["n_tokens"] > best.manifest["n_tokens"]):
            best = c
    return best.profile() if best is not None else None


def sae_fingerprint(sae) -> str:
    """Short hash of an SAE's config and the exact bytes of its weights (a cache is reused only
    for the same SAE). The same on any machine and thread count."""
    h = _config_hash(sae)
    for k, v in sorted(sae.state_dict().items()):
        h.update(k.encode())
        h.update(str(v.dtype).encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _legacy_fingerprint(sae) -> str:
    """The fingerprint caches recorded before 2026-12-07: weight sums, whose float reduction order
    (and so the hash) depends on torch's thread count. Kept so those caches are still found."""
    h = _config_hash(sae)
    with torch.no_grad():
        for k, v in sorted(sae.state_dict().items()):
            h.update(k.encode())
            h.update(np.float64(v.double().sum().item()).tobytes())
            h.update(np.float64(v.double().abs().sum().item()).tobytes())
    return h.hexdigest()[:16]


def _config_hash(sae):
    import hashlib

    d = sae.config_dict()
    return hashlib.sha256(json.dumps({"architecture": d["architecture"], "config": d["config"]}, sort_keys=True,
                                     default=str).encode())


def fingerprint_matches(recorded: str | None, sae, current: str | None = None) -> bool:
    """Whether a cache's recorded fingerprint is ``sae``'s: today's exact one (``current``, if
    already computed) or the legacy one of caches written before it."""
    if recorded is None:
        return False
    return recorded == (current or sae_fingerprint(sae)) or recorded == _legacy_fingerprint(sae)
