"""On-disk cache of SAE latent activations over token windows (the input of every interp step).

A cache directory holds::

    manifest.json                 metadata (model, hook, corpus, SAE, window length, chunk list)
    stats.safetensors             per-latent totals: token/window firing counts, max and sum of |act|
    nonactivating.safetensors     per latent, a seeded sample of window ids where it never fires
    logits.safetensors            causal LMs: top positive/negative W_dec·W_U entries per latent
    chunk_00000.safetensors       one chunk of ``chunk_windows`` consecutive windows:
        tokens          (n, W) int32   token ids of each window (-1 = padding)
        keep            (n, W) bool    tokens whose activations were encoded (not special, not pad)
        g0003/window    (m,) int64     sparse triplets of the latents in group 3
        g0003/pos       (m,) int16     (latent ids 3*G .. 4*G-1, G = ``group_size``),
        g0003/latent    (m,) int32     sorted by window then position
        g0003/act       (m,) float32   the SAE code (signed; firing = code != 0)
        g0003/<output>  (m,) float16   the architecture's extra per-token outputs at the firing
                                       token (prob_topk: ``gate_logits`` = LayerNorm(a), the gate's
                                       pre-temperature score; see ``interp.encode.token_outputs``)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..io import atomic_write, atomic_write_json
from .encode import EncodedBatch, token_outputs

MANIFEST = "manifest.json"
STATS = "stats.safetensors"
NONACT = "nonactivating.safetensors"
LOGITS = "logits.safetensors"
FORMAT = "probsae-latent-cache"
VERSION = 2


@dataclass
class LatentRecord:
    """Every activating window of one latent.

    Attributes:
        latent: latent index.
        windows: (n,) window ids, ascending.
        acts: (n, W) float32 |code| per token of each window (0 where the latent did not fire).
        signed_max: (n,) the signed code at each window's strongest token.
        extras: the architecture's extra per-token outputs, each (n, W) float32 at firing tokens
            (NaN elsewhere); prob_topk: ``gate_logits``.
    """

    latent: int
    windows: np.ndarray
    acts: np.ndarray
    signed_max: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

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


def logit_effects(sae, handle, n: int = 10) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Top ``n`` positive and negative entries of each latent's direct logit effect W_dec · W_U
    (decoder row times the model's unembedding), or (None, why not)."""
    if not getattr(handle, "is_causal", False):
        return None, f"{handle.name} is not a causal LM (no unembedding): no logit effects"
    head = handle.model.get_output_embeddings() if hasattr(handle.model, "get_output_embeddings") else None
    if head is None or getattr(head, "weight", None) is None:
        return None, f"{handle.name} has no output embedding: no logit effects"
    W_U = head.weight.detach().float()                      # (vocab, d_model)
    if W_U.shape[1] != sae.d_in:
        return None, f"SAE width {sae.d_in} ≠ unembedding width {W_U.shape[1]}: no logit effects"
    W_dec = sae.W_dec.detach().float().to(W_U.device)
    n = min(n, W_U.shape[0])
    rows = max(1, (1 << 26) // max(1, W_U.shape[0]))       # ≤ 64M floats per block
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("pos_ids", "pos_vals", "neg_ids", "neg_vals")}
    with torch.no_grad():
        for s in range(0, W_dec.shape[0], rows):
            eff = W_dec[s:s + rows] @ W_U.T
            top, bot = eff.topk(n, dim=-1), (-eff).topk(n, dim=-1)
            out["pos_ids"].append(top.indices.int().cpu())
            out["pos_vals"].append(top.values.cpu())
            out["neg_ids"].append(bot.indices.int().cpu())
            out["neg_vals"].append((-bot.values).cpu())
    return {k: torch.cat(v) for k, v in out.items()}, "W_dec · W_U (direct effect on the logits, no final norm)"


def build_latent_cache(sae, handle, hook, docs: Iterable[str], out_dir: str | os.PathLike, *,
                       n_windows: int = 4096, window_len: int = 32, batch_size: int = 16,
                       chunk_windows: int = 1024, group_size: int = 1024, n_nonactivating: int = 64,
                       seed: int = 0, meta: dict[str, Any] | None = None, progress: bool = False,
                       overwrite: bool = False, n_logits: int = 10, exclude_special: bool = True) -> "LatentCache":
    """Encode ``n_windows`` windows of ``window_len`` tokens and write a latent cache to ``out_dir``.

    Three stages: :func:`~probsae.interp.encode.encode_windows` (model → hook → sparse codes and
    the architecture's declared extra outputs), per-latent totals, and a chunk writer. Then the stats, the tokenizer, the
    logit effects (causal LMs) and the non-activating samples.

    Args:
        sae: a trained :class:`~probsae.SAE` (its ``d_in`` must match the hook's width).
        handle: a :class:`~probsae.data.ModelHandle`; ``hook`` a hook point (``resid_post.3``...).
        docs: documents (e.g. ``load_corpus("pydoc")``), packed into windows by
            :func:`probsae.data.token_windows` (special tokens are kept in the window but never encoded).
        window_len: tokens per window; the dashboard uses the run's training context length.
        n_nonactivating: per latent, how many windows where it never fires to sample and store.
        exclude_special: never encode BOS/CLS/SEP/EOS/PAD positions (as training did by default).
        meta: extra metadata recorded in the manifest (model name, corpus spec, run dir...).
    An existing complete cache with the same settings is reused unless ``overwrite``.
    """
    from ..data.corpus import token_windows
    from ..data.hooks import HookPoint
    from ..progress import bar as progress_bar
    from .encode import encode_windows

    out = Path(out_dir)
    hp = HookPoint.parse(hook)
    settings = _settings(sae, hp, n_windows, window_len, n_nonactivating, seed, exclude_special)
    if (out / MANIFEST).is_file() and not overwrite:
        cache = LatentCache(out)
        if {k: cache.manifest.get(k) for k in settings} == settings and cache.manifest.get("complete"):
            return cache
    if window_len < 2:
        raise InputError(f"window_len must be ≥ 2, got {window_len}")
    if sae.d_in != handle.d_model and hp.kind != "module":
        raise InputError(f"SAE d_in={sae.d_in} does not match model {handle.name!r} width {handle.d_model}")
    hp.validate(handle)
    out.mkdir(parents=True, exist_ok=True)
    for p in out.glob("chunk_*.safetensors"):
        p.unlink()
    if (out / MANIFEST).exists():
        (out / MANIFEST).unlink()
    sae = sae.eval()
    outputs = token_outputs(sae)
    totals = _Totals(sae.d_sae)
    writer = _ChunkWriter(out, sae.d_sae, window_len, group_size, chunk_windows, outputs)
    t0 = time.time()
    windows = token_windows(docs, handle.tokenizer, window_len, batch_size=batch_size,
                            max_length=handle.max_length, exclude_special=exclude_special, drop_last=False)
    with progress_bar(total=n_windows, unit="win", desc="latent cache", requested=progress) as bar:
        for eb in encode_windows(sae, handle, hp, windows, max_windows=n_windows):
            totals.add(eb)
            writer.add(eb)
            bar.update(len(eb))
    writer.flush()
    if writer.done == 0:
        raise InputError("the corpus produced no token windows")
    totals.save(out / STATS)
    try:
        handle.tokenizer.save_pretrained(str(out / "tokenizer"))
    except Exception:  # noqa: BLE001 - decoding then needs the model name
        pass
    effects, logit_note = logit_effects(sae, handle, n_logits)
    if effects is not None:
        _save(effects, out / LOGITS)
    manifest = {**settings, "n_windows": writer.done, "n_tokens": totals.n_tokens, "group_size": group_size,
                "chunk_windows": chunk_windows, "token_outputs": list(outputs), "model": handle.name,
                "is_causal": bool(getattr(handle, "is_causal", False)), "logit_effects": effects is not None,
                "logit_note": logit_note, "gate_beta_end": gate_beta_end(sae), "chunks": writer.chunks,
                "seconds": round(time.time() - t0, 2), "meta": meta or {},
                "special_ids": sorted(int(i) for i in handle.special_ids), "complete": False}
    atomic_write_json(out / MANIFEST, manifest)
    cache = LatentCache(out)
    cache._write_nonactivating(n_nonactivating, seed)
    manifest["complete"] = True
    atomic_write_json(out / MANIFEST, manifest)
    return LatentCache(out)


def gate_beta_end(sae) -> float | None:
    """The gate temperature β an SAE with gate logits ends training with (its inference β, the
    ``gate_temperature`` it declares); None for architectures that declare no ``gate_logits``."""
    if "gate_logits" not in token_outputs(sae):
        return None
    return sae.gate_temperature


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
        self.outputs: tuple[str, ...] = tuple(self.manifest.get("token_outputs") or ())
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

        keys = ["window", "pos", "latent", "act", *self.outputs]
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
                extras = {}
                for name in self.outputs:
                    extras[name] = np.full((len(uw), W), np.nan, np.float32)
                    extras[name][inv, pos] = t[name][m].astype(np.float32)
                out[l] = LatentRecord(l, uw, acts, signed[np.arange(len(uw)), arg], extras)
        return out

    def record(self, latent: int) -> LatentRecord:
        return self.records([latent])[int(latent)]

    def logit_effects(self) -> dict[str, np.ndarray] | None:
        """Top positive/negative W_dec·W_U entries per latent (``pos_ids``, ``pos_vals``,
        ``neg_ids``, ``neg_vals``, each (d_sae, n)), or None (not a causal LM: see
        ``manifest["logit_note"]``)."""
        if not self.manifest.get("logit_effects"):
            return None
        from safetensors.numpy import load_file

        return load_file(str(self.path / LOGITS))

    def first_positions(self) -> np.ndarray:
        """(n_windows,) the first encoded position of each window (1 after a [CLS]/BOS, 0 without
        one; -1 for a window with nothing encoded)."""
        if self._tokens is None:
            self._load_tokens()
        keep = self._keep
        first = keep.argmax(axis=1)
        return np.where(keep.any(axis=1), first, -1)

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

    d = sae.config_dict()
    h = hashlib.sha256(json.dumps({"architecture": d["architecture"], "config": d["config"]}, sort_keys=True,
                                  default=str).encode())
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
