"""Static, offline HTML feature browser for a trained run.

``write_dashboard`` writes one self-contained ``index.html`` (inline CSS and JavaScript, data
embedded as JSON, no CDN): a latent list, and per latent its top-activating contexts and examples
from each activation-percentile bucket with tokens shaded by activation, a histogram of its
activations, its firing density, and — for prob_topk — gate probabilities (per token on hover,
mean over firing tokens, and a histogram). Explanations/scores from ``probsae autointerp`` are
shown when the run has them.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_json, atomic_write_text, dumps_json

from .explainer import TextFormatter
from .latent_cache import LatentCache
from .sampling import assign_buckets, bucket_edges


def _hist(values: np.ndarray, bins: int = 30) -> dict[str, list[float]]:
    values = values[np.isfinite(values)].astype(np.float64)
    if values.size == 0:
        return {"counts": [], "edges": []}
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-9 * max(1.0, abs(hi)):
        lo, hi = lo - 5e-4, hi + 5e-4
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return {"counts": counts.tolist(), "edges": [round(float(e), 5) for e in edges]}


def _example(fmt: TextFormatter, rec, i: int, bucket: int | None) -> dict[str, Any]:
    w = int(rec.windows[i])
    pieces = fmt.pieces(w)
    ex = {"window": w, "max": round(float(rec.max_acts[i]), 4), "bucket": bucket,
          "tokens": pieces, "acts": [round(float(a), 4) for a in rec.acts[i]]}
    if rec.gate is not None:
        ex["gate"] = [None if not np.isfinite(g) else round(float(g), 4) for g in rec.gate[i]]
    return ex


def _interp_results(run_dir: Path | None) -> dict[int, dict[int, dict]]:
    """{latent: {bucket: {explanation, score, source, scorer}}} from a run's autointerp output."""
    out: dict[int, dict[int, dict]] = {}
    if run_dir is None:
        return out
    cands = [run_dir / "interp" / d / "scores.jsonl" for d in
             ("detection-llm", "embedding-llm", "detection-top-tokens", "embedding-top-tokens")]
    p = next((c for c in cands if c.is_file()), None)
    if p is None:
        return out
    for line in p.read_text().splitlines():
        try:
            s = json.loads(line)
        except ValueError:
            continue
        out.setdefault(int(s["latent"]), {})[int(s["bucket"])] = {
            "explanation": s.get("explanation"), "score": s.get("score"),
            "source": s.get("explanation_source"), "scorer": s.get("scorer")}
    return out


def dashboard_data(cache: LatentCache, latents: list[int], *, n_top: int = 10, n_per_bucket: int = 3,
                   n_buckets: int = 5, seed: int = 0, title: str = "", run_dir: Path | None = None) -> dict:
    """The JSON the dashboard page renders."""
    stats = cache.stats()
    fmt = TextFormatter(cache)
    interp = _interp_results(run_dir)
    recs = cache.records(latents)
    items = []
    for l in latents:
        rec = recs[l]
        firing = rec.acts[rec.acts > 0]
        d: dict[str, Any] = {
            "id": int(l), "density": float(stats.density[l]), "windows": int(stats.window_counts[l]),
            "tokens": int(stats.token_counts[l]), "max_act": float(stats.max_act[l]),
            "mean_act": float(stats.sum_act[l] / max(stats.token_counts[l], 1)),
            "hist": _hist(firing), "top": [], "buckets": [], "interp": interp.get(int(l), {})}
        if rec.gate is not None:
            g = rec.gate[np.isfinite(rec.gate)]
            d["gate_mean"] = float(g.mean()) if g.size else None
            d["gate_hist"] = _hist(g)
        if len(rec):
            order = np.argsort(-rec.max_acts, kind="stable")[:n_top]
            d["top"] = [_example(fmt, rec, int(i), None) for i in order]
            b_of = assign_buckets(rec.max_acts, n_buckets, seed=seed + l)
            rng = np.random.default_rng([seed, l, 99])
            for b, (lo, hi) in enumerate(bucket_edges(n_buckets)):
                idx = np.flatnonzero(b_of == b)
                pick = rng.permutation(idx)[:n_per_bucket]
                pick = pick[np.argsort(-rec.max_acts[pick], kind="stable")]
                d["buckets"].append({"bucket": b, "label": f"{lo:g}-{hi:g}%", "n": int(len(idx)),
                                     "range": [float(rec.max_acts[idx].min()), float(rec.max_acts[idx].max())]
                                     if len(idx) else None,
                                     "examples": [_example(fmt, rec, int(i), b) for i in pick]})
        items.append(d)
    m = cache.manifest
    return {"title": title or "probsae feature dashboard", "architecture": m.get("architecture"),
            "model": m.get("model"), "hook": m.get("hook"), "corpus": (m.get("meta") or {}).get("corpus"),
            "n_windows": cache.n_windows, "n_tokens": m.get("n_tokens"), "d_sae": cache.d_sae,
            "window_len": cache.window_len, "has_gate": cache.has_gate,
            "alive": int(stats.alive.sum()), "latents": items}


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
    blob = json_for_script(data)
    title = (data.get("title") or "").replace("&", "&amp;").replace("<", "&lt;")
    return template.replace("__TITLE__", title).replace("__DATA__", blob)


def choose_dashboard_latents(cache: LatentCache, n: int, seed: int = 0, order: str = "random") -> list[int]:
    """``n`` alive latents: 'random' (seeded), 'frequent' (most windows first) or 'id'.
    (:func:`write_dashboard` also takes 'interp': the latents scored by ``probsae autointerp``.)"""
    st = cache.stats()
    alive = np.flatnonzero(st.window_counts > 0)
    if order == "frequent":
        return [int(x) for x in alive[np.argsort(-st.window_counts[alive], kind="stable")][:n]]
    if order == "id":
        return [int(x) for x in alive[:n]]
    return sorted(int(x) for x in np.random.default_rng(seed).permutation(alive)[:n])


def write_dashboard(cache: LatentCache, out_dir: str | Path, latents: list[int] | None = None, *,
                    n_latents: int = 100, order: str = "random", seed: int = 0, title: str = "",
                    run_dir: str | Path | None = None, **kw) -> Path:
    """Write ``out_dir/index.html`` (self-contained) and ``out_dir/data.json``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not latents and order == "interp":
        latents = sorted(_interp_results(Path(run_dir) if run_dir else None))[:n_latents]
        order = "random"
    if not latents:
        latents = choose_dashboard_latents(cache, n_latents, seed, order)
    data = dashboard_data(cache, latents, seed=seed, title=title, run_dir=Path(run_dir) if run_dir else None, **kw)
    atomic_write_json(out / "data.json", data, indent=None)
    html = out / "index.html"
    atomic_write_text(html, render_html(data))
    return html
