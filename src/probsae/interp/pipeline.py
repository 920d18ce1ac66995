"""The automatic-interpretability pipeline of one or several trained runs:
latent cache → percentile-bucket sampling → explanations → scores → Table 2 / Figure 5.

A run directory (written by ``probsae train``) holds ``sae.safetensors`` + ``config.json`` and
records which model, hook point and corpus the SAE was trained on; :func:`resolve_run` reads it
(``run_config.json``/``run.json``/``train_config.json``, the ``metrics.json`` that ``probsae
sweep`` writes, the ``config.json`` itself, or the ``extra`` metadata of the ``log.jsonl`` start
record), and explicit arguments override it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import atomic_write_json, atomic_write_jsonl, check_output_dir
from .calibration import plot_calibration, summarize_run, write_table
from .explainer import EXPLANATION_FORMATS, LLMExplainer, TextFormatter, TopTokensExplainer
from .latent_cache import LatentCache
from .latent_cache_writer import build_latent_cache
from .llm_client import ChatClient, LLMConfig
from .sampling import choose_latents, sample_latent
from .scorers import JUDGE_FORMATS, DetectionScorer, EmbeddingScorer

RUN_CONFIG_FILES = ("run_config.json", "run.json", "train_config.json", "metrics.json", "config.json")
_KEYS = {"model": ("model", "model_name", "model_id"), "hook": ("hook", "hook_point", "hookpoint"),
         "corpus": ("corpus", "dataset", "corpus_spec"), "context_length": ("context_length",)}


@dataclass
class RunInfo:
    run_dir: Path
    label: str
    model: str | None
    hook: str | None
    corpus: str | None
    architecture: str | None = None
    context_length: int | None = None
    """Tokens per window in training (the dashboard's default window length)."""
    exclude_special: bool = True
    """Special tokens were never encoded in training (nor are they here)."""


def _find(obj: Any, names: tuple[str, ...], kind: type, depth: int = 0) -> Any:
    if not isinstance(obj, dict) or depth > 3:
        return None
    for n in names:
        if isinstance(obj.get(n), kind) and obj[n] not in ("", True, False):
            return obj[n]
    for v in obj.values():
        r = _find(v, names, kind, depth + 1)
        if r is not None:
            return r
    return None


def saved_metadata(run_dir: str | Path):
    """The :class:`~probsae.saes.SAEMetadata` in a saved SAE's config.json (empty if it has none)."""
    from ..saes.metadata import SAEMetadata

    try:
        cfg = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return SAEMetadata()
    return SAEMetadata.from_dict(cfg.get("metadata") if isinstance(cfg, dict) else None)


def resolve_run(run_dir: str | Path, model: str | None = None, hook: str | None = None,
                corpus: str | None = None, label: str | None = None) -> RunInfo:
    """Model, hook point, corpus and context length of a run directory: the SAE's own metadata
    (config.json), else what older runs recorded elsewhere; arguments given here win."""
    rd = Path(run_dir)
    if not (rd / "sae.safetensors").is_file():
        raise ConfigError(f"{rd} is not a run directory (no sae.safetensors)")
    meta = saved_metadata(rd)
    sources: list[dict] = [{"model": meta.model_name, "hook": meta.hook_name, "corpus": meta.corpus,
                            "context_length": meta.context_length}]
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
        kind = int if key == "context_length" else str
        found[key] = next((v for s in sources if (v := _find(s, names, kind)) is not None), None)
    arch = next((s.get("architecture") for s in sources if isinstance(s.get("architecture"), str)), None)
    ctx = found["context_length"]
    return RunInfo(rd, label or rd.name, model or found["model"], hook or found["hook"],
                   corpus or found["corpus"], arch, ctx, meta.exclude_special)


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
    judge_format: str = "list"
    """Detection prompts: 'list' (examples_per_prompt excerpts, a JSON list of 0/1; the paper's) or
    'yes-no' (one excerpt per prompt, the reply's first word Yes or No; for small models)."""
    explanation_format: str = "strict"
    """LLM explanations: 'strict' (an ``EXPLANATION:`` line, else a failure) or 'lenient' (else the
    reply's first sentence unless empty, copied from an excerpt or a repetition loop; small models)."""
    seed: int = 0
    n_windows: int = 4096
    """Windows encoded into the latent cache."""
    time_budget_s: float | None = None
    """Cap ``n_windows`` so the latent cache's time, estimated from the first batch, stays under this
    (the CLI sets ``cost.TIME_BUDGET_S`` when --n-windows is left out); None: ``n_windows`` as given."""
    window_len: int = 32
    batch_size: int = 16
    min_windows: int | None = None
    """Minimum activating windows of a chosen latent (default 2 × n_buckets)."""
    cache_dir: str | None = None
    """Latent cache location (default RUN_DIR/interp/latent_cache/w<window_len>-n<n_windows>)."""
    device: str = "cpu"
    progress: bool = True
    """Progress bars (latent cache, LLM calls with rate and failures, embeddings)."""
    llm: LLMConfig = field(default_factory=LLMConfig)

    def settings(self) -> dict[str, Any]:
        """What the results depend on (not where files go, devices, progress, endpoints or keys)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("cache_dir", "device", "progress", "llm", "time_budget_s",
                                                                 "judge_format", "explanation_format")}
        if self.scorer == "detection" and self.judge_format != "list":  # keys of default settings unchanged
            d["judge_format"] = self.judge_format
        if self.explainer == "llm" and self.explanation_format != "strict":
            d["explanation_format"] = self.explanation_format
        if self.explainer == "llm" or self.scorer == "detection":
            d["llm_model"] = self.llm.model
            d["llm_max_tokens"] = self.llm.max_tokens
            if self.llm.max_tokens_limit is not None:
                d["llm_max_tokens_limit"] = self.llm.max_tokens_limit
        return d

    def key(self) -> str:
        """``<scorer>-<explainer>-<hash of settings()>``: the name of a results directory."""
        blob = json.dumps(self.settings(), sort_keys=True, default=str).encode()
        return f"{self.scorer}-{self.explainer}-{hashlib.sha256(blob).hexdigest()[:10]}"

    def validate(self) -> None:
        if self.scorer not in ("detection", "embedding"):
            raise ConfigError(f"scorer must be 'detection' or 'embedding', got {self.scorer!r}")
        if self.explainer not in ("llm", "top-tokens"):
            raise ConfigError(f"explainer must be 'llm' or 'top-tokens', got {self.explainer!r}")
        if self.judge_format not in JUDGE_FORMATS:
            raise ConfigError(f"judge_format must be one of {JUDGE_FORMATS}, got {self.judge_format!r}")
        if self.explanation_format not in EXPLANATION_FORMATS:
            raise ConfigError(f"explanation_format must be one of {EXPLANATION_FORMATS}, got {self.explanation_format!r}")
        if self.scorer == "detection" or self.explainer == "llm":
            self.llm.validate()
        if self.n_buckets < 1 or self.n_explain < 1 or self.n_test < 1 or self.n_latents < 1:
            raise ConfigError("n_buckets, n_explain, n_test and n_latents must be ≥ 1")


def ensure_cache(info: RunInfo, *, n_windows: int = 4096, window_len: int = 32, batch_size: int = 16,
                 cache_dir: str | Path | None = None, device: str = "cpu", seed: int = 0,
                 n_nonactivating: int = 64, progress: bool = True, handle=None, docs=None,
                 time_budget_s: float | None = None) -> LatentCache:
    """Build (or reuse) a latent cache of a run: by default in
    RUN_DIR/interp/latent_cache/w<window_len>-n<n_windows>, so autointerp's 32-token windows and
    the dashboard's training-length windows live side by side. ``time_budget_s``: see
    :func:`~probsae.interp.latent_cache_writer.build_latent_cache`."""
    from ..data.corpus import load_corpus
    from ..data.models import load_model
    from ..saes import load_sae

    where = Path(cache_dir) if cache_dir else info.run_dir / "interp" / "latent_cache" / f"w{window_len}-n{n_windows}"
    sae = load_sae(info.run_dir)
    if not info.hook:
        raise ConfigError(f"{info.run_dir}: the run does not record its hook point; pass --hook")
    if handle is None:
        if not info.model:
            raise ConfigError(f"{info.run_dir}: the run does not record its model; pass --model")
        handle = load_model(info.model, device=device)
    if docs is None:
        if not info.corpus:
            raise ConfigError(f"{info.run_dir}: the run does not record its corpus; pass --corpus")
        docs = load_corpus(info.corpus)
    return build_latent_cache(sae.to(device), handle, info.hook, docs, where, n_windows=n_windows,
                              window_len=window_len, batch_size=batch_size, n_nonactivating=n_nonactivating,
                              seed=seed, progress=progress, exclude_special=info.exclude_special, time_budget_s=time_budget_s,
                              meta={"run_dir": str(info.run_dir), "corpus": info.corpus, "model": info.model})


def results_dir(info: RunInfo, cfg: AutoInterpConfig) -> Path:
    """Where one run's explanations/scores/summary go: RUN_DIR/interp/<cfg.key()>/, one directory
    per settings, so a run with other settings never overwrites these."""
    return info.run_dir / "interp" / cfg.key()


def run_autointerp(info: RunInfo, cfg: AutoInterpConfig, *, handle=None, docs=None,
                   client: ChatClient | None = None, embedder=None, out: str | Path | None = None) -> dict[str, Any]:
    """Explain and score ``cfg.n_latents`` latents of one run; returns its Table-2 row and writes
    ``settings.json``, ``explanations.jsonl``, ``scores.jsonl`` and ``summary.json`` into ``out``
    (default :func:`results_dir`, one directory per settings inside the run)."""
    cfg.validate()
    t0 = time.time()
    cache = ensure_cache(info, n_windows=cfg.n_windows, window_len=cfg.window_len, batch_size=cfg.batch_size,
                         cache_dir=cfg.cache_dir, device=cfg.device, seed=cfg.seed,
                         n_nonactivating=max(64, (cfg.n_nonact or cfg.n_test) * cfg.n_buckets),
                         progress=cfg.progress, handle=handle, docs=docs, time_budget_s=cfg.time_budget_s)
    out = Path(out) if out is not None else results_dir(info, cfg)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"key": cfg.key(), "settings": cfg.settings(), "sae_fingerprint": cache.manifest.get("sae_fingerprint"),
                "latent_cache": str(cache.path)}
    atomic_write_json(out / "settings.json", settings)
    min_w = cfg.min_windows or 2 * cfg.n_buckets
    latents = choose_latents(cache, cfg.n_latents, seed=cfg.seed, min_windows=min_w, latents=cfg.latents)
    records = cache.records(latents)
    fmt = TextFormatter(cache)
    samples = [sample_latent(records[l], cache.nonactivating(l), n_buckets=cfg.n_buckets,
                             n_explain=cfg.n_explain, n_test=cfg.n_test, n_nonact=cfg.n_nonact, seed=cfg.seed)
               for l in latents]
    if client is None and (cfg.explainer == "llm" or cfg.scorer == "detection"):
        if cfg.llm.cache_dir is None:
            cfg.llm.cache_dir = str(info.run_dir / "interp" / "llm_cache")
        client = ChatClient(cfg.llm)
    explainer = (LLMExplainer(client, explanation_format=cfg.explanation_format) if cfg.explainer == "llm"
                 else TopTokensExplainer())
    items = [(s.latent, b.bucket, b.explain) for s in samples for b in s.buckets]
    buckets = [b for s in samples for b in s.buckets]
    explanations = explainer.explain_many(fmt, items)
    scorer = (DetectionScorer(client, cfg.examples_per_prompt, cfg.seed, judge_format=cfg.judge_format)
              if cfg.scorer == "detection"
              else EmbeddingScorer(embedder))
    scores = scorer.score_many(fmt, list(zip(explanations, buckets)))
    atomic_write_jsonl(out / "explanations.jsonl", [
        {**e.to_json(), "bucket_label": b.label, "act_range": b.act_range,
         "explain_windows": [x.window for x in b.explain], "test_windows": [x.window for x in b.test],
         "nonactivating_windows": [x.window for x in b.nonactivating]} for e, b in zip(explanations, buckets)])
    score_dicts = [s.to_json() for s in scores]
    atomic_write_jsonl(out / "scores.jsonl", score_dicts)
    llm_stats = client.report() if client is not None else {}
    extra = {"run_dir": str(info.run_dir), "results_dir": str(out), "settings_key": cfg.key(),
             "architecture": cache.manifest.get("architecture"),
             "model": info.model, "hook": info.hook, "corpus": info.corpus,
             "explanation_failures": sum(1 for e in explanations if e.text is None),
             "explanations_lenient": sum(1 for e in explanations if e.lenient),
             "detection_failed_prompts": sum(s.n_failed_prompts for s in scores),
             "detection_prompts": sum(s.n_prompts for s in scores),
             "skipped_buckets": sum(len(s.skipped) for s in samples), "llm": llm_stats,
             "n_windows": cache.n_windows, "window_len": cache.window_len, "n_tokens": cache.manifest.get("n_tokens"),
             "seconds": round(time.time() - t0, 2), "config": cfg.settings()}
    if cfg.llm.configured:
        extra["llm_model"] = cfg.llm.model
    row = summarize_run(info.label, score_dicts, cfg.n_buckets, extra)
    atomic_write_json(out / "summary.json", row)
    return row


def default_out(infos: list[RunInfo], cfg: AutoInterpConfig) -> Path:
    """Where Table 2 and Figure 5 go by default: next to the one run's summary.json, or
    ./autointerp/<settings key> for several runs."""
    return results_dir(infos[0], cfg) if len(infos) == 1 else Path("autointerp") / cfg.key()


def _json_dict(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def holds_autointerp_results(directory: Path) -> bool:
    """Whether ``directory`` holds what autointerp writes: a Table 2 (``table2.json`` with its
    ``settings_key``) or one run's results (``settings.json`` with ``key`` and ``settings``)."""
    return ("settings_key" in _json_dict(directory / "table2.json")
            or {"key", "settings"} <= set(_json_dict(directory / "settings.json")))


def autointerp_runs(infos: list[RunInfo], cfg: AutoInterpConfig, out_dir: str | Path | None = None,
                    force: bool = False, **kw) -> dict[str, Any]:
    """Run :func:`run_autointerp` on every run and write Table 2 (Markdown + JSON, from exactly the
    rows saved as each run's summary.json) and the Figure 5 plot into ``out_dir`` (default
    :func:`default_out`). An ``out_dir`` holding a table made with other settings is refused, never
    overwritten; so is a non-empty ``out_dir`` that holds no autointerp results (the user's own
    files), unless ``force``. Returns {"rows", "markdown", "json", "plot", "out"}."""
    out = Path(out_dir) if out_dir else default_out(infos, cfg)
    check_output_dir(out, holds_autointerp_results, force, "directory of autointerp results")
    old = out / "table2.json"
    if old.is_file():
        prev = _json_dict(old).get("settings_key")
        if prev is not None and prev != cfg.key():
            raise ConfigError(f"{out} holds autointerp results made with other settings ({prev}); "
                              f"these settings are {cfg.key()}: choose another --out")
    if cfg.llm.cache_dir is None and len(infos) > 1:
        cfg.llm.cache_dir = str(out.parent / "llm_cache")
    rows = [run_autointerp(i, cfg, **kw) for i in infos]
    paths = write_table(rows, out, settings_key=cfg.key())
    plot = plot_calibration(rows, out / "figure5.png")
    return {"rows": rows, **paths, "plot": plot, "out": out}
