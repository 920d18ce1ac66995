"""Static, offline HTML feature browser for a trained run.

``write_dashboard`` writes one self-contained ``index.html`` (inline CSS and JavaScript, data
embedded as JSON, no CDN) and ``data.json``. Per latent: firing density (marked on the density
histogram of every latent), activation histogram, the top positive and negative logit effects
(W_dec·W_U, final norm folded, causal LMs), top-activating contexts centred on the strongest token with its left
context, examples from each activation-percentile bucket, the latent's position histogram
(|activation| mass per window-position bin) and flags (``LatentProfile``: dense, window-start, i.e.
firing mostly at the first token of a window, an artefact of how text is cut into windows, and
positional), explanations and scores
from ``probsae autointerp``, and for an architecture that declares ``gate_logits`` the gate panel: the distribution of pre-gate scores
LayerNorm(a) at the firing tokens. (Gate probabilities σ(score/β) carry no information there: with
the trained β = 1e-4, and already at the schedule's midpoint β ≈ 0.02, every firing token's gate
reads 1.00.) Search by latent id, context text or explanation; the search also lists every other
alive latent of the cache by id or top tokens (``index``: density, max activation, flags).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_json, atomic_write_text, check_output_dir, dumps_json
from .latent_cache import LatentCache, LatentProfile, LatentRecord, token_pieces
from .sampling import assign_buckets, bucket_edges

FORMAT = "probsae-dashboard"
"""The ``format`` field of ``data.json``: how a dashboard directory is recognised as ours."""


def _hist(values: np.ndarray, bins: int = 30, lo: float | None = None, hi: float | None = None) -> dict[str, list]:
    values = values[np.isfinite(values)].astype(np.float64)
    if values.size == 0:
        return {"counts": [], "edges": []}
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    if hi - lo < 1e-9 * max(1.0, abs(hi)):
        lo, hi = lo - 5e-4, hi + 5e-4
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return {"counts": counts.tolist(), "edges": [round(float(e), 5) for e in edges]}


class _Contexts:
    """Display slices of cached windows centred on a token: ``left`` tokens before it, ``right``
    after, never beyond the window (a context that reaches the window's first encoded token says so)."""

    def __init__(self, cache: LatentCache, left: int, right: int):
        self.cache, self.left, self.right = cache, left, right
        self.first = cache.first_positions()

    def example(self, rec: LatentRecord, i: int, bucket: int | None) -> dict[str, Any]:
        w = int(rec.windows[i])
        ids, keep = self.cache.tokens([w])
        ids, keep = ids[0], keep[0]
        last = int(np.flatnonzero(keep).max()) if keep.any() else 0
        first = int(self.first[w])
        p = int(rec.acts[i].argmax())
        lo, hi = max(first, p - self.left), min(last, p + self.right) + 1
        tokens = token_pieces(self.cache.tokenizer, ids[lo:hi], keep[lo:hi])
        special = [j for j in range(hi - lo) if not keep[lo + j] and ids[lo + j] >= 0]
        for j in special:  # document separators inside a window: shown, marked, never encoded
            tokens[j] = str(self.cache.tokenizer.convert_ids_to_tokens(int(ids[lo + j])))
        ex = {"window": w, "max": round(float(rec.max_acts[i]), 4), "bucket": bucket, "pos": p,
              "first": first, "offset": lo, "at_start": lo == first, "at_end": hi > last,
              "tokens": tokens, "special": special, "acts": [round(float(a), 4) for a in rec.acts[i, lo:hi]]}
        logit = rec.extras.get("gate_logits")
        if logit is not None:
            ex["gate_logits"] = [None if not np.isfinite(v) else round(float(v), 3) for v in logit[i, lo:hi]]
        return ex


def _bucket_label(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g}%"


def _read_jsonl(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _interp_results(run_dir: Path | None) -> tuple[dict[int, dict[int, dict]], int | None]:
    """({latent: {bucket: {explanation, score, source, scorer, label}}}, number of buckets) from a
    run's autointerp results: LLM explanations before the top-tokens baseline, then the newest
    results directory. ``label`` is the percentile range autointerp drew that bucket from
    (``explanations.jsonl``, else the ``n_buckets`` of its ``settings.json``; None if neither
    says), so an explanation is never shown under another bucket count's label."""
    out: dict[int, dict[int, dict]] = {}
    if run_dir is None:
        return out, None
    cands = [p for p in (Path(run_dir) / "interp").glob("*/scores.jsonl") if p.is_file()]
    if not cands:
        return out, None
    p = max(cands, key=lambda c: ("-llm-" in c.parent.name + "-", c.stat().st_mtime))
    n_buckets = None
    try:
        recorded = json.loads((p.parent / "settings.json").read_text())["settings"]["n_buckets"]
        if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded >= 1:
            n_buckets = recorded
    except (OSError, ValueError, KeyError, TypeError):
        pass
    labels: dict[tuple[int, int], str] = {}
    for e in _read_jsonl(p.parent / "explanations.jsonl"):
        try:
            labels[(int(e["latent"]), int(e["bucket"]))] = str(e["bucket_label"])
        except (KeyError, TypeError, ValueError):
            continue
    edges = bucket_edges(n_buckets) if n_buckets else None
    for s in _read_jsonl(p):
        try:
            l, b = int(s["latent"]), int(s["bucket"])
        except (KeyError, TypeError, ValueError):
            continue
        label = labels.get((l, b)) or (_bucket_label(*edges[b]) if edges and 0 <= b < len(edges) else None)
        out.setdefault(l, {})[b] = {"explanation": s.get("explanation"), "score": s.get("score"),
                                    "source": s.get("explanation_source"), "scorer": s.get("scorer"),
                                    "label": label}
    return out, n_buckets


def _decode(tokenizer, ids: np.ndarray) -> list[str]:
    return [tokenizer.decode([int(t)], clean_up_tokenization_spaces=False) for t in ids]


def _density_hist(stats) -> dict[str, Any]:
    alive = stats.density[stats.token_counts > 0]
    if alive.size == 0:
        return {"counts": [], "edges": [], "dead": int((stats.token_counts == 0).sum())}
    h = _hist(np.log10(alive), bins=40)
    h["dead"] = int((stats.token_counts == 0).sum())
    return h


def _profile_fields(p: LatentProfile, l: int) -> dict[str, Any]:
    """A latent's flags, position histogram and band (positions) for its page."""
    lo, hi, share = p.band
    edges = [p.bin_positions(b)[0] for b in range(p.pos_mass.shape[1])] + [p.window_len]
    return {"flags": p.flags(l), "start_share": round(float(p.start_share[l]), 4),
            "start_flag": bool(p.window_start[l]), "pos_hist": {"counts": [round(float(v), 4) for v in p.pos_mass[l]], "edges": edges},
            "band": [p.bin_positions(int(lo[l]))[0], p.bin_positions(int(hi[l]))[1], round(float(share[l]), 4)]}


def latent_index(cache: LatentCache, p: LatentProfile) -> list[list]:
    """Every alive latent as [id, density, max activation, flags, top tokens] (the sidebar search)."""
    alive = np.flatnonzero(p.window_counts > 0)
    tok = cache.tokenizer
    out = []
    for l in alive.tolist():
        ids = [int(t) for t in p.top_tokens[l] if t >= 0]
        out.append([l, float(f"{p.density[l]:.4g}"), round(float(p.max_act[l]), 4), p.flags(l),
                    " ".join(t.strip() or repr(t) for t in _decode(tok, ids))])
    return out


class LatentPages:
    """One latent's page data (an entry of the dashboard's ``latents``; the live browser's latent
    page), with what every latent shares (stats, profile, logit effects, explanations) read once."""

    def __init__(self, cache: LatentCache, *, n_top: int = 10, n_per_bucket: int = 3, n_buckets: int | None = None,
                 seed: int = 0, run_dir: Path | None = None, context_left: int = 32, context_right: int = 8):
        self.cache, self.n_top, self.n_per_bucket, self.seed = cache, n_top, n_per_bucket, seed
        self.stats = cache.stats()
        self.profile = cache.profile()
        self.ctx = _Contexts(cache, context_left, context_right)
        self.interp, self.interp_buckets = _interp_results(run_dir)
        self.n_buckets = n_buckets or self.interp_buckets or 5
        self.logits = cache.logit_effects()

    def latent(self, l: int, rec: LatentRecord) -> dict[str, Any]:
        """Latent ``l``'s data from its record ``rec`` (``cache.records``)."""
        stats, ctx, logits, n_buckets, seed = self.stats, self.ctx, self.logits, self.n_buckets, self.seed
        firing = rec.acts[rec.acts > 0]
        d: dict[str, Any] = {
            "id": int(l), "density": float(stats.density[l]), "windows": int(stats.window_counts[l]),
            "tokens": int(stats.token_counts[l]), "max_act": float(stats.max_act[l]),
            "mean_act": float(stats.sum_act[l] / max(stats.token_counts[l], 1)),
            "hist": _hist(firing), "top": [], "buckets": [], "interp": self.interp.get(int(l), {}),
            **_profile_fields(self.profile, l)}
        if logits is not None:
            d["logits"] = {"pos": [[t, round(float(v), 4)] for t, v in
                                   zip(_decode(self.cache.tokenizer, logits["pos_ids"][l]), logits["pos_vals"][l])],
                           "neg": [[t, round(float(v), 4)] for t, v in
                                   zip(_decode(self.cache.tokenizer, logits["neg_ids"][l]), logits["neg_vals"][l])]}
        g = rec.extras.get("gate_logits")
        if g is not None:
            g = g[np.isfinite(g)]
            d["gate"] = {"hist": _hist(g), "median": float(np.median(g)) if g.size else None}
        if len(rec):
            order = np.argsort(-rec.max_acts, kind="stable")[:self.n_top]
            d["top"] = [ctx.example(rec, int(i), None) for i in order]
            d["top_at_start"] = sum(1 for e in d["top"] if e["pos"] == e["first"])
            b_of = assign_buckets(rec.max_acts, n_buckets, seed=seed + l)
            rng = np.random.default_rng([seed, l, 99])
            for b, (lo, hi) in enumerate(bucket_edges(n_buckets)):
                idx = np.flatnonzero(b_of == b)
                pick = rng.permutation(idx)[:self.n_per_bucket]
                pick = pick[np.argsort(-rec.max_acts[pick], kind="stable")]
                d["buckets"].append({"bucket": b, "label": _bucket_label(lo, hi), "n": int(len(idx)),
                                     "range": [float(rec.max_acts[idx].min()), float(rec.max_acts[idx].max())]
                                     if len(idx) else None,
                                     "examples": [ctx.example(rec, int(i), b) for i in pick]})
        d["search"] = " ".join("".join(e["tokens"]) for e in d["top"]).lower()
        return d


def dashboard_data(cache: LatentCache, latents: list[int], *, n_top: int = 10, n_per_bucket: int = 3,
                   n_buckets: int | None = None, seed: int = 0, title: str = "", run_dir: Path | None = None,
                   context_left: int = 32, context_right: int = 8, progress: bool = True) -> dict:
    """The JSON the dashboard page renders. ``n_buckets`` (the activation-percentile panels)
    defaults to the bucket count of the autointerp results shown, else 5."""
    from ..saes.style import colour
    from ..progress import bar as progress_bar

    pages = LatentPages(cache, n_top=n_top, n_per_bucket=n_per_bucket, n_buckets=n_buckets, seed=seed,
                        run_dir=run_dir, context_left=context_left, context_right=context_right)
    stats, profile, logits = pages.stats, pages.profile, pages.logits
    m = cache.manifest
    recs = cache.records(latents)
    items = []
    bar = progress_bar(total=len(latents), desc="dashboard", unit="latent", requested=progress)
    for l in latents:
        bar.update(1)
        items.append(pages.latent(l, recs[l]))
    bar.close()
    return {"format": FORMAT, "title": title or "probsae feature dashboard", "architecture": m.get("architecture"),
            "arch_colour": colour(m.get("architecture")), "model": m.get("model"), "hook": m.get("hook"),
            "corpus": (m.get("meta") or {}).get("corpus"), "n_windows": cache.n_windows, "n_tokens": m.get("n_tokens"),
            "d_sae": cache.d_sae, "window_len": cache.window_len, "alive": int(stats.alive.sum()),
            "density_hist": _density_hist(stats), "first_token_share": cache.n_windows / max(int(m.get("n_tokens") or 1), 1),
            "logits": {"available": logits is not None, "note": m.get("logit_note")},
            "gate": {"beta_end": m.get("gate_beta_end")} if "gate_logits" in cache.outputs else None,
            "context": {"left": context_left, "right": context_right}, "n_buckets": pages.n_buckets,
            "interp_buckets": pages.interp_buckets, "latents": items, "index": latent_index(cache, profile),
            "thresholds": _thresholds()}


def _thresholds() -> dict[str, float]:
    from . import latent_cache as lc

    return {"dense": lc.DENSE_DENSITY, "start": lc.START_SHARE, "positional_mass": lc.POSITIONAL_MASS,
            "positional_band": lc.POSITIONAL_BAND, "positional_min_windows": lc.POSITIONAL_MIN_WINDOWS}


def json_for_script(data: Any) -> str:
    """Strict JSON safe to embed inside an HTML ``<script>`` element: ``<``, ``>`` and ``&`` (and
    the JavaScript line separators U+2028/9) are written as ``\\uXXXX`` escapes, so no string
    (``</script>``, ``<!--<script>``) can end or re-open the element."""
    blob = dumps_json(data, indent=None, ensure_ascii=False)
    for ch in "<>&\u2028\u2029":
        blob = blob.replace(ch, f"\\u{ord(ch):04x}")
    return blob


def render_html(data: dict) -> str:
    template = resources.files("probsae.interp").joinpath("templates/dashboard.html").read_text(encoding="utf-8")
    title = (data.get("title") or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return template.replace("__TITLE__", title).replace("__DATA__", json_for_script(data))


def choose_dashboard_latents(cache: LatentCache, n: int, seed: int = 0, order: str = "random") -> list[int]:
    """``n`` alive latents: 'random' (seeded), 'frequent' (highest firing density first, ties by
    larger max activation) or 'id'. (:func:`write_dashboard` also takes 'interp': the latents scored
    by ``probsae autointerp``.)"""
    st = cache.stats()
    alive = np.flatnonzero(st.window_counts > 0)
    if order == "frequent":
        return [int(x) for x in alive[np.lexsort((-st.max_act[alive], -st.density[alive]))][:n]]
    if order == "id":
        return [int(x) for x in alive[:n]]
    return sorted(int(x) for x in np.random.default_rng(seed).permutation(alive)[:n])


def holds_dashboard(directory: Path) -> bool:
    """Whether ``directory`` holds a dashboard probsae wrote: its ``data.json`` says
    ``format: probsae-dashboard`` (or, written before that field, has the dashboard's own keys)."""
    try:
        data = json.loads((directory / "data.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    return data.get("format") == FORMAT or {"latents", "d_sae", "window_len", "density_hist"} <= set(data)


def check_dashboard_out(out_dir: str | Path, force: bool = False) -> Path:
    """Refuse a non-empty ``out_dir`` that holds no dashboard (the user's own files), unless ``force``."""
    return check_output_dir(out_dir, holds_dashboard, force, "probsae dashboard directory")


def write_dashboard(cache: LatentCache, out_dir: str | Path, latents: list[int] | None = None, *,
                    n_latents: int = 100, order: str = "random", seed: int = 0, title: str = "",
                    run_dir: str | Path | None = None, force: bool = False, **kw) -> tuple[Path, int]:
    """Write ``out_dir/index.html`` (self-contained) and ``out_dir/data.json``; returns the HTML
    path and how many latents it shows ('interp' order: the latents autointerp scored, at most
    ``n_latents``). A non-empty ``out_dir`` that holds no dashboard is refused unless ``force``."""
    from ..errors import ConfigError

    out = check_dashboard_out(out_dir, force)
    out.mkdir(parents=True, exist_ok=True)
    if not latents and order == "interp":
        latents = sorted(_interp_results(Path(run_dir) if run_dir else None)[0])[:n_latents]
        if not latents:
            raise ConfigError(f"--order interp: {run_dir} has no autointerp scores (run 'probsae autointerp' first)")
    if not latents:
        latents = choose_dashboard_latents(cache, n_latents, seed, order)
    data = dashboard_data(cache, latents, seed=seed, title=title, run_dir=Path(run_dir) if run_dir else None, **kw)
    atomic_write_json(out / "data.json", data, indent=None)
    html = out / "index.html"
    atomic_write_text(html, render_html(data))
    return html, len(data["latents"])
