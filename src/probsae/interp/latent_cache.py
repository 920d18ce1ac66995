"""On-disk cache of SAE latent activations over token windows (the input of every interp step).

A cache directory holds::

    manifest.json                 metadata (model, hook, corpus, SAE, window length, chunk list)
    stats.safetensors             per-latent totals: token/window firing counts, max and sum of |act|
    nonactivating.safetensors     per latent, a seeded sample of window ids where it never fires
    chunk_00000.safetensors       one chunk of ``chunk_windows`` consecutive windows:
        tokens        (n, W) int32   token ids of each window (-1 = padding)
        keep          (n, W) bool    tokens whose activations were encoded (not special, not pad)
        g0003/window  (m,) int64     sparse triplets of the latents in group 3
        g0003/pos     (m,) int16     (latent ids 3*G .. 4*G-1, G = ``group_size``),
        g0003/latent  (m,) int32     sorted by window then position
        g0003/act     (m,) float32   the SAE code (signed; firing = code != 0)
        g0003/gate    (m,) float16   prob_topk only: gate probability σ(LN(a)/β) of the firing token
    tokenizer/                    the tokenizer (so examples can be decoded without the model)

Triplets are partitioned by latent group inside each chunk, so reading one latent touches only
its group's tensors (safetensors reads them lazily), and nothing has to fit in memory at once.
"Activation" of a window for a latent = max over its tokens of |code| (codes of prob_topk and
abstopk can be negative; ReLU-family codes are ≥ 0, where |code| = code).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..io import atomic_write, atomic_write_json

MANIFEST = "manifest.json"
STATS = "stats.safetensors"
NONACT = "nonactivating.safetensors"
FORMAT = "probsae-latent-cache"
VERSION = 1


@dataclass
class LatentRecord:
    """Every activating window of one latent.

    Attributes:
        latent: latent index.
        windows: (n,) window ids, ascending.
        acts: (n, W) float32 |code| per token of each window (0 where the latent did not fire).
        signed_max: (n,) the signed code at each window's strongest token.
        gate: (n, W) float32 gate probabilities at firing tokens (NaN elsewhere), or None.
    """

    latent: int
    windows: np.ndarray
    acts: np.ndarray
    signed_max: np.ndarray
    gate: np.ndarray | None = None

    @property
    def max_acts(self) -> np.ndarray:
        """(n,) window activation = max over the window's tokens of |code|."""
        return self.acts.max(axis=1) if len(self.windows) else np.zeros(0, np.float32)

    def __len__(self) -> int:
        return len(self.windows)


@dataclass
class LatentStats:
    """Per-latent totals over the whole cache (arrays of length d_sae)."""

    token_counts: np.ndarray
    window_counts: np.ndarray
    max_act: np.ndarray
    sum_act: np.ndarray
    n_tokens: int
    n_windows: int

    @property
    def density(self) -> np.ndarray:
        """Fraction of encoded tokens on which each latent fires."""
        return self.token_counts / max(self.n_tokens, 1)

    @property
    def alive(self) -> np.ndarray:
        return self.token_counts > 0


def _save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata))


def build_latent_cache(sae, handle, hook, docs: Iterable[str], out_dir: str | os.PathLike, *,
                       n_windows: int = 4096, window_len: int = 32, batch_size: int = 16,
                       chunk_windows: int = 1024, group_size: int = 1024, n_nonactivating: int = 64,
                       seed: int = 0, meta: dict[str, Any] | None = None, progress: bool = False,
                       overwrite: bool = False) -> "LatentCache":
    """Encode ``n_windows`` windows of ``window_len`` tokens and write a latent cache to ``out_dir``.

    Args:
        sae: a trained :class:`~probsae.SAE` (its ``d_in`` must match the hook's width).
        handle: a :class:`~probsae.data.ModelHandle`; ``hook`` a hook point (``resid_post.3``...).
        docs: documents (e.g. ``load_corpus("pydoc")``), packed into windows by
            :func:`probsae.data.token_windows` (special tokens are kept in the window but never encoded).
        n_nonactivating: per latent, how many windows where it never fires to sample and store.
        meta: extra metadata recorded in the manifest (model name, corpus spec, run dir...).
    An existing complete cache with the same settings is reused unless ``overwrite``.
    """
    from ..data.corpus import token_windows
    from ..data.hooks import HookPoint, capture

    out = Path(out_dir)
    hp = HookPoint.parse(hook)
    settings = {"n_windows_requested": int(n_windows), "window_len": int(window_len), "hook": str(hp),
                "d_sae": int(sae.d_sae), "architecture": sae.architecture,
                "n_nonactivating": int(n_nonactivating), "seed": int(seed),
                "sae_fingerprint": sae_fingerprint(sae)}
    if (out / MANIFEST).is_file() and not overwrite:
        cache = LatentCache(out)
        old = {k: cache.manifest.get(k) for k in settings}
        if old == settings and cache.manifest.get("complete"):
            return cache
    out.mkdir(parents=True, exist_ok=True)
    for p in out.glob("chunk_*.safetensors"):
        p.unlink()
    if (out / MANIFEST).exists():
        (out / MANIFEST).unlink()
    if window_len < 2:
        raise InputError(f"window_len must be ≥ 2, got {window_len}")
    if sae.d_in != handle.d_model and hp.kind != "module":
        raise InputError(f"SAE d_in={sae.d_in} does not match model {handle.name!r} width {handle.d_model}")
    hp.validate(handle)
    is_prob = hasattr(sae, "gate_probs")
    d_sae = sae.d_sae
    n_groups = (d_sae + group_size - 1) // group_size
    sae = sae.eval()
    dev = handle.device
    sae_dev = next(sae.parameters()).device

    token_counts = torch.zeros(d_sae, dtype=torch.long)
    window_counts = torch.zeros(d_sae, dtype=torch.long)
    max_act = torch.zeros(d_sae)
    sum_act = torch.zeros(d_sae, dtype=torch.float64)
    n_tokens = 0
    chunks: list[dict[str, Any]] = []

    buf_tokens: list[torch.Tensor] = []
    buf_keep: list[torch.Tensor] = []
    buf_trip: list[tuple[torch.Tensor, ...]] = []
    buf_first = 0

    def flush(next_first: int) -> None:
        nonlocal buf_tokens, buf_keep, buf_trip, buf_first
        if not buf_tokens:
            return
        tensors: dict[str, torch.Tensor] = {"tokens": torch.cat(buf_tokens).to(torch.int32),
                                            "keep": torch.cat(buf_keep)}
        if buf_trip:
            w, p, l, a = (torch.cat([t[i] for t in buf_trip]) for i in range(4))
            g = torch.cat([t[4] for t in buf_trip]) if is_prob else None
        else:
            w = p = l = a = g = None
        for gi in range(n_groups):
            if w is None:
                sel = torch.zeros(0, dtype=torch.long)
            else:
                sel = ((l >= gi * group_size) & (l < (gi + 1) * group_size)).nonzero().squeeze(1)
            tensors[f"g{gi:04d}/window"] = (w[sel] if w is not None else torch.zeros(0)).to(torch.int64)
            tensors[f"g{gi:04d}/pos"] = (p[sel] if p is not None else torch.zeros(0)).to(torch.int16)
            tensors[f"g{gi:04d}/latent"] = (l[sel] if l is not None else torch.zeros(0)).to(torch.int32)
            tensors[f"g{gi:04d}/act"] = (a[sel] if a is not None else torch.zeros(0)).to(torch.float32)
            if is_prob:
                tensors[f"g{gi:04d}/gate"] = (g[sel] if g is not None else torch.zeros(0)).to(torch.float16)
        name = f"chunk_{len(chunks):05d}.safetensors"
        _save(tensors, out / name)
        chunks.append({"file": name, "first_window": buf_first, "n_windows": next_first - buf_first})
        buf_tokens, buf_keep, buf_trip, buf_first = [], [], [], next_first

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_windows, unit="win", desc="latent cache")
    done = 0
    t0 = time.time()
    windows = token_windows(docs, handle.tokenizer, window_len, batch_size=batch_size,
                            max_length=handle.max_length, exclude_special=True, drop_last=False)
    with torch.inference_mode():
        for wb in windows:
            if done >= n_windows:
                break
            take = min(len(wb), n_windows - done)
            ids, att, keep = wb.input_ids[:take], wb.attention_mask[:take], wb.token_mask[:take]
            x = capture(handle, hp, ids.to(dev), att.to(dev)).float()
            T = ids.shape[1]
            pos_w, pos_t = keep.nonzero(as_tuple=True)
            codes = sae.encode(x[keep.to(dev)].to(sae_dev)).float().cpu()       # (N, d_sae)
            n_tokens += codes.shape[0]
            nz_row, nz_lat = (codes != 0).nonzero(as_tuple=True)
            vals = codes[nz_row, nz_lat]
            av = vals.abs()
            token_counts += torch.bincount(nz_lat, minlength=d_sae)
            sum_act += torch.bincount(nz_lat, weights=av.double(), minlength=d_sae)
            max_act = torch.maximum(max_act, torch.zeros(d_sae).scatter_reduce(0, nz_lat, av, "amax"))
            win = pos_w[nz_row] + done
            pairs = torch.unique(win * d_sae + nz_lat)
            window_counts += torch.bincount(pairs % d_sae, minlength=d_sae)
            trip = [win, pos_t[nz_row], nz_lat, vals]
            if is_prob:
                probs = sae.gate_probs(x[keep.to(dev)].to(sae_dev)).float().cpu()
                trip.append(probs[nz_row, nz_lat])
            buf_trip.append(tuple(trip))
            tok = torch.full((take, window_len), -1, dtype=torch.int32)
            tok[:, :T] = torch.where(att.bool(), ids, torch.full_like(ids, -1)).to(torch.int32)
            kp = torch.zeros((take, window_len), dtype=torch.bool)
            kp[:, :T] = keep
            buf_tokens.append(tok)
            buf_keep.append(kp)
            done += take
            if bar is not None:
                bar.update(take)
            if done - buf_first >= chunk_windows:
                flush(done)
    flush(done)
    if bar is not None:
        bar.close()
    if done == 0:
        raise InputError("the corpus produced no token windows")

    _save({"token_counts": token_counts, "window_counts": window_counts, "max_act": max_act,
           "sum_act": sum_act}, out / STATS)
    try:
        handle.tokenizer.save_pretrained(str(out / "tokenizer"))
    except Exception:  # noqa: BLE001 - decoding then needs the model name
        pass
    manifest = {"format": FORMAT, "version": VERSION, **settings, "n_windows": done,
                "n_tokens": n_tokens, "group_size": group_size,
                "chunk_windows": chunk_windows, "has_gate": is_prob, "model": handle.name,
                "chunks": chunks, "seconds": round(time.time() - t0, 2), "meta": meta or {},
                "special_ids": sorted(int(i) for i in handle.special_ids), "complete": False}
    atomic_write_json(out / MANIFEST, manifest)
    cache = LatentCache(out)
    cache._write_nonactivating(n_nonactivating, seed)
    manifest["complete"] = True
    atomic_write_json(out / MANIFEST, manifest)
    return LatentCache(out)


class LatentCache:
    """Read access to a cache written by :func:`build_latent_cache`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        mp = self.path / MANIFEST
        if not mp.is_file():
            raise InputError(f"{self.path} is not a latent cache (no {MANIFEST})")
        self.manifest: dict[str, Any] = json.loads(mp.read_text())
        if self.manifest.get("format") != FORMAT:
            raise InputError(f"{mp}: not a probsae latent cache")
        self.d_sae: int = self.manifest["d_sae"]
        self.window_len: int = self.manifest["window_len"]
        self.group_size: int = self.manifest["group_size"]
        self.has_gate: bool = bool(self.manifest.get("has_gate"))
        self._tokens: np.ndarray | None = None
        self._keep: np.ndarray | None = None
        self._tokenizer = None
        self._nonact: np.ndarray | None = None

    # ---- sizes and stats --------------------------------------------------------------------
    @property
    def n_windows(self) -> int:
        return sum(c["n_windows"] for c in self.manifest["chunks"])

    def stats(self) -> LatentStats:
        from safetensors.torch import load_file

        s = load_file(str(self.path / STATS))
        return LatentStats(s["token_counts"].numpy(), s["window_counts"].numpy(), s["max_act"].numpy(),
                           s["sum_act"].numpy(), int(self.manifest["n_tokens"]), self.n_windows)

    # ---- tokens -----------------------------------------------------------------------------
    def _load_tokens(self) -> None:
        from safetensors import safe_open

        toks, keeps = [], []
        for c in self.manifest["chunks"]:
            with safe_open(str(self.path / c["file"]), framework="np") as f:
                toks.append(f.get_tensor("tokens"))
                keeps.append(f.get_tensor("keep"))
        self._tokens = np.concatenate(toks)
        self._keep = np.concatenate(keeps)

    def tokens(self, windows: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(token ids (n, W) with -1 padding, keep mask (n, W)) of the given windows."""
        if self._tokens is None:
            self._load_tokens()
        idx = np.asarray(windows, dtype=np.int64)
        return self._tokens[idx], self._keep[idx]

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            tdir = self.path / "tokenizer"
            if tdir.is_dir():
                self._tokenizer = AutoTokenizer.from_pretrained(str(tdir))
            else:
                from ..data.models import load_model
                self._tokenizer = load_model(self.manifest["model"]).tokenizer
        return self._tokenizer

    def token_strings(self, window: int) -> list[str]:
        """Display strings of a window's tokens (special tokens and padding as ''), concatenating
        to the decoded text."""
        ids, keep = self.tokens([window])
        return token_pieces(self.tokenizer, ids[0], keep[0])

    def text(self, window: int) -> str:
        """Decoded text of a window (special tokens dropped)."""
        return "".join(self.token_strings(window)).strip()

    # ---- latents ----------------------------------------------------------------------------
    def _group_triplets(self, group: int) -> dict[str, np.ndarray]:
        from safetensors import safe_open

        keys = ["window", "pos", "latent", "act"] + (["gate"] if self.has_gate else [])
        parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for c in self.manifest["chunks"]:
            with safe_open(str(self.path / c["file"]), framework="np") as f:
                for k in keys:
                    parts[k].append(f.get_tensor(f"g{group:04d}/{k}"))
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}

    def records(self, latents: Iterable[int]) -> dict[int, LatentRecord]:
        """:class:`LatentRecord` of each requested latent (reads each latent group once)."""
        latents = sorted({int(l) for l in latents})
        for l in latents:
            if not 0 <= l < self.d_sae:
                raise InputError(f"latent {l} out of range 0..{self.d_sae - 1}")
        out: dict[int, LatentRecord] = {}
        by_group: dict[int, list[int]] = {}
        for l in latents:
            by_group.setdefault(l // self.group_size, []).append(l)
        W = self.window_len
        for g, ls in by_group.items():
            t = self._group_triplets(g)
            for l in ls:
                m = t["latent"] == l
                win, pos, act = t["window"][m], t["pos"][m].astype(np.int64), t["act"][m]
                uw, inv = np.unique(win, return_inverse=True)
                acts = np.zeros((len(uw), W), np.float32)
                acts[inv, pos] = np.abs(act)
                signed = np.zeros((len(uw), W), np.float32)
                signed[inv, pos] = act
                arg = acts.argmax(axis=1) if len(uw) else np.zeros(0, np.int64)
                gate = None
                if self.has_gate:
                    gate = np.full((len(uw), W), np.nan, np.float32)
                    gate[inv, pos] = t["gate"][m].astype(np.float32)
                out[l] = LatentRecord(l, uw, acts, signed[np.arange(len(uw)), arg], gate)
        return out

    def record(self, latent: int) -> LatentRecord:
        return self.records([latent])[int(latent)]

    def nonactivating(self, latent: int) -> np.ndarray:
        """Stored sample of window ids where ``latent`` never fires (may be shorter than asked
        for a latent that fires almost everywhere)."""
        if self._nonact is None:
            from safetensors.torch import load_file
            self._nonact = load_file(str(self.path / NONACT))["windows"].numpy()
        row = self._nonact[int(latent)]
        return row[row >= 0]

    def _write_nonactivating(self, n: int, seed: int) -> None:
        n_win = self.n_windows
        table = np.full((self.d_sae, max(n, 1)), -1, dtype=np.int64)
        n_groups = (self.d_sae + self.group_size - 1) // self.group_size
        for g in range(n_groups):
            t = self._group_triplets(g)
            lo = g * self.group_size
            hi = min(lo + self.group_size, self.d_sae)
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
        _save({"windows": torch.from_numpy(table)}, self.path / NONACT)
        self._nonact = None


def sae_fingerprint(sae) -> str:
    """Short hash of an SAE's config and weights (a cache is reused only for the same SAE)."""
    import hashlib

    h = hashlib.sha256(json.dumps(sae.config_dict(), sort_keys=True, default=str).encode())
    with torch.no_grad():
        for k, v in sorted(sae.state_dict().items()):
            h.update(k.encode())
            h.update(np.float64(v.double().sum().item()).tobytes())
            h.update(np.float64(v.double().abs().sum().item()).tobytes())
    return h.hexdigest()[:16]


def token_pieces(tokenizer, ids: np.ndarray, keep: np.ndarray) -> list[str]:
    """Display strings of ``ids`` ('' for special/padding) whose concatenation is the decoded text.

    Uses incremental decoding (decode of each prefix), which handles byte-level BPE and WordPiece
    ('##' continuations) alike; falls back to per-token decoding if a prefix is not stable."""
    kept = [int(t) for t, k in zip(ids, keep) if k and t >= 0]
    pieces: list[str] = []
    prev = ""
    ok = True
    for i in range(len(kept)):
        cur = tokenizer.decode(kept[: i + 1], clean_up_tokenization_spaces=False)
        if not cur.startswith(prev):
            ok = False
            break
        pieces.append(cur[len(prev):])
        prev = cur
    if not ok:
        pieces = []
        for t in kept:
            p = tokenizer.decode([t], clean_up_tokenization_spaces=False)
            pieces.append(p[2:] if p.startswith("##") else (" " + p if pieces and not p.startswith(" ") else p))
    if pieces and pieces[0].startswith("##"):   # a window that starts inside a WordPiece word
        pieces[0] = pieces[0][2:]
    out: list[str] = []
    j = 0
    for t, k in zip(ids, keep):
        if k and t >= 0:
            out.append(pieces[j])
            j += 1
        else:
            out.append("")
    return out
