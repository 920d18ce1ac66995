"""The automatic-interpretability pipeline of one or several trained runs:
latent cache → percentile-bucket sampling → explanations → scores → Table 2 / Figure 5.

A run directory (written by ``probsae train``) holds ``sae.safetensors`` + ``config.json`` and
records which model, hook point and corpus the SAE was trained on; :func:`resolve_run` reads it
(``run_config.json``/``run.json``/``train_config.json``, the ``metrics.json`` that ``probsae
sweep`` writes, the ``config.json`` itself, or the ``extra`` metadata of the ``log.jsonl`` start
record), and explicit arguments override it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import atomic_write_json, atomic_write_jsonl
from .calibration import plot_calibration, summarize_run, write_table
from .explainer import LLMExplainer, TextFormatter, TopTokensExplainer
from .latent_cache import LatentCache, build_latent_cache
from .llm_client import ChatClient, LLMConfig
from .sampling import choose_latents, sample_latent
from .scorers import DetectionScorer, EmbeddingScorer

RUN_CONFIG_FILES = ("run_config.json", "run.json", "train_config.json", "metrics.json", "config.json")
_KEYS = {"model": ("model", "model_name", "model_id"), "hook": ("hook", "hook_point", "hookpoint"),
         "corpus": ("corpus", "dataset", "corpus_spec")}


@dataclass
class RunInfo:
    run_dir: Path
    label: str
    model: str | None
    hook: str | None
    corpus: str | None
    architecture: str | None = None


def _find(obj: Any, names: tuple[str, ...], depth: int = 0) -> str | None:
    if not isinstance(obj, dict) or depth > 3:
        return None
    for n in names:
        if isinstance(obj.get(n), str) and obj[n]:
            return obj[n]
    for v in obj.values():
        r = _find(v, names, depth + 1)
        if r:
            return r
    return None


def resolve_run(run_dir: str | Path, model: str | None = None, hook: str | None = None,
                corpus: str | None = None, label: str | None = None) -> RunInfo:
    """Model, hook point and corpus of a run directory (arguments given here win)."""
    rd = Path(run_dir)
    if not (rd / "sae.safetensors").is_file():
        raise ConfigError(f"{rd} is not a run directory (no sae.safetensors)")
    sources: list[dict] = []
    for name in RUN_CONFIG_FILES:
        p = rd / name
        if p.is_file():
            try:
                sources.append(json.loads(p.read_text()))
            except ValueError:
                pass
    log = rd / "log.jsonl"
    if log.is_file():
        try:
            with log.open() as f:
                first = json.loads(f.readline() or "{}")
            sources.append(first.get("train_config", {}).get("extra", {}) or {})
            sources.append(first)
        except ValueError:
            pass
    found = {}
    for key, names in _KEYS.items():
        found[key] = next((v for s in sources if (v := _find(s, names))), None)
    arch = next((s.get("architecture") for s in sources if isinstance(s.get("architecture"), str)), None)
    return RunInfo(rd, label or rd.name, model or found["model"], hook or found["hook"],
                   corpus or found["corpus"], arch)


@dataclass
class AutoInterpConfig:
    scorer: str = "detection"
    """'detection' (LLM, the paper) or 'embedding' (all-MiniLM-L6-v2, offline)."""
    explainer: str = "llm"
    """'llm' or 'top-tokens' (non-LLM baseline, offline)."""
    n_latents: int = 150
    """Random alive latents per run (paper: 150)."""
    latents: list[int] | None = None
    n_buckets: int = 5
    n_explain: int = 10
    """Explanation examples per bucket."""
    n_test: int = 10
    """Held-out activating test examples per bucket."""
    n_nonact: int | None = None
    """Non-activating test examples per bucket (default: n_test)."""
    examples_per_prompt: int = 5
    seed: int = 0
    n_windows: int = 4096
    """Windows encoded into the latent cache."""
    window_len: int = 32
    batch_size: int = 16
    min_windows: int | None = None
    """Minimum activating windows of a chosen latent (default 2 × n_buckets)."""
    cache_dir: str | None = None
    """Latent cache location (default RUN_DIR/interp/latent_cache)."""
    out_dir: str | None = None
    """Per-run results go to OUT_DIR/<label>/ (default RUN_DIR/interp/<scorer>-<explainer>/)."""
    device: str = "cpu"
    progress: bool = False
    llm: LLMConfig = field(default_factory=LLMConfig)

    def validate(self) -> None:
        if self.scorer not in ("detection", "embedding"):
            raise ConfigError(f"scorer must be 'detection' or 'embedding', got {self.scorer!r}")
        if self.explainer not in ("llm", "top-tokens"):
            raise ConfigError(f"explainer must be 'llm' or 'top-tokens', got {self.explainer!r}")
        if self.scorer == "detection" or self.explainer == "llm":
            self.llm.validate()
        if self.n_buckets < 1 or self.n_explain < 1 or self.n_test < 1 or self.n_latents < 1:
            raise ConfigError("n_buckets, n_explain, n_test and n_latents must be ≥ 1")


def ensure_cache(info: RunInfo, cfg: AutoInterpConfig, handle=None, docs=None) -> LatentCache:
    """Build (or reuse) the latent cache of a run."""
    from ..data.corpus import load_corpus
    from ..data.models import load_model
    from ..saes import load_sae

    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else info.run_dir / "interp" / "latent_cache"
    sae = load_sae(info.run_dir)
    if handle is None:
        if not info.model:
            raise ConfigError(f"{info.run_dir}: the run does not record its model; pass --model")
        handle = load_model(info.model, device=cfg.device)
    if not info.hook:
        raise ConfigError(f"{info.run_dir}: the run does not record its hook point; pass --hook")
    if docs is None:
        if not info.corpus:
            raise ConfigError(f"{info.run_dir}: the run does not record its corpus; pass --corpus")
        docs = load_corpus(info.corpus)
    return build_latent_cache(sae.to(cfg.device), handle, info.hook, docs, cache_dir, n_windows=cfg.n_windows,
                              window_len=cfg.window_len, batch_size=cfg.batch_size,
                              n_nonactivating=max(64, (cfg.n_nonact or cfg.n_test) * cfg.n_buckets),
                              seed=cfg.seed, progress=cfg.progress,
                              meta={"run_dir": str(info.run_dir), "corpus": info.corpus, "model": info.model})


def results_dir(info: RunInfo, cfg: AutoInterpConfig) -> Path:
    """Where one run's explanations/scores/summary go."""
    if cfg.out_dir:
        return Path(cfg.out_dir) / info.label
    return info.run_dir / "interp" / f"{cfg.scorer}-{cfg.explainer}"


def run_autointerp(info: RunInfo, cfg: AutoInterpConfig, *, handle=None, docs=None,
                   client: ChatClient | None = None, embedder=None) -> dict[str, Any]:
    """Explain and score ``cfg.n_latents`` latents of one run; returns its Table-2 row and writes
    ``explanations.jsonl``, ``scores.jsonl`` and ``summary.json`` into the output directory."""
    cfg.validate()
    t0 = time.time()
    cache = ensure_cache(info, cfg, handle, docs)
    out = results_dir(info, cfg)
    out.mkdir(parents=True, exist_ok=True)
    min_w = cfg.min_windows or 2 * cfg.n_buckets
    latents = choose_latents(cache, cfg.n_latents, seed=cfg.seed, min_windows=min_w, latents=cfg.latents)
    records = cache.records(latents)
    fmt = TextFormatter(cache)
    samples = [sample_latent(records[l], cache.nonactivating(l), n_buckets=cfg.n_buckets,
                             n_explain=cfg.n_explain, n_test=cfg.n_test, n_nonact=cfg.n_nonact, seed=cfg.seed)
               for l in latents]
    if client is None and (cfg.explainer == "llm" or cfg.scorer == "detection"):
        if cfg.llm.cache_dir is None:
            cfg.llm.cache_dir = str(out / "llm_cache")
        client = ChatClient(cfg.llm)
    explainer = LLMExplainer(client) if cfg.explainer == "llm" else TopTokensExplainer()
    items = [(s.latent, b.bucket, b.explain) for s in samples for b in s.buckets]
    buckets = [b for s in samples for b in s.buckets]
    explanations = explainer.explain_many(fmt, items)
    scorer = (DetectionScorer(client, cfg.examples_per_prompt, cfg.seed) if cfg.scorer == "detection"
              else EmbeddingScorer(embedder))
    scores = scorer.score_many(fmt, list(zip(explanations, buckets)))
    atomic_write_jsonl(out / "explanations.jsonl", [
        {**e.to_json(), "bucket_label": b.label, "act_range": b.act_range,
         "explain_windows": [x.window for x in b.explain], "test_windows": [x.window for x in b.test],
         "nonactivating_windows": [x.window for x in b.nonactivating]} for e, b in zip(explanations, buckets)])
    score_dicts = [s.to_json() for s in scores]
    atomic_write_jsonl(out / "scores.jsonl", score_dicts)
    llm_stats = client.report() if client is not None else {}
    extra = {"run_dir": str(info.run_dir), "architecture": cache.manifest.get("architecture"),
             "model": info.model, "hook": info.hook, "corpus": info.corpus,
             "explanation_failures": sum(1 for e in explanations if e.text is None),
             "detection_failed_prompts": sum(s.n_failed_prompts for s in scores),
             "detection_prompts": sum(s.n_prompts for s in scores),
             "skipped_buckets": sum(len(s.skipped) for s in samples), "llm": llm_stats,
             "seconds": round(time.time() - t0, 2),
             "config": {k: v for k, v in asdict(cfg).items() if k != "llm"}}
    if cfg.llm.configured:
        extra["llm_model"] = cfg.llm.model
    row = summarize_run(info.label, score_dicts, cfg.n_buckets, extra)
    atomic_write_json(out / "summary.json", row)
    return row


def autointerp_runs(infos: list[RunInfo], cfg: AutoInterpConfig, out_dir: str | Path, **kw) -> dict[str, Any]:
    """Run :func:`run_autointerp` on every run and write Table 2 (Markdown + JSON) and the Figure 5
    plot into ``out_dir``. Returns {"rows", "markdown", "json", "plot"}."""
    if cfg.llm.cache_dir is None:
        cfg.llm.cache_dir = str(Path(out_dir) / "llm_cache")
    rows = [run_autointerp(i, cfg, **kw) for i in infos]
    paths = write_table(rows, out_dir)
    plot = plot_calibration(rows, Path(out_dir) / "figure5.png")
    return {"rows": rows, **paths, "plot": plot}
