"""Automatic interpretability (paper §4.3, Table 2, Figure 5) and feature dashboards.

Pipeline: :func:`encode_windows` (text windows → sparse codes at the hook; shared with
``probsae.load_run``) → :func:`build_latent_cache` (per-latent activating windows on disk) →
:func:`sample_latent` (explanation / held-out test examples per activation-percentile bucket) →
an explainer (:class:`LLMExplainer` or the offline :class:`TopTokensExplainer` baseline) →
a scorer (:class:`DetectionScorer` over an OpenAI-compatible endpoint, or the offline
:class:`EmbeddingScorer`) → :func:`summarize_run` / :func:`table_markdown` /
:func:`plot_calibration`. :func:`write_dashboard` renders a static HTML feature browser.
See docs/INTERP.md.
"""

from .calibration import mean_ci, pearson, plot_calibration, summarize_run, table_markdown, write_table
from .dashboard import dashboard_data, write_dashboard
from .encode import EncodedBatch, encode_windows, sparse_codes, token_outputs
from .explainer import Explanation, LLMExplainer, TextFormatter, TopTokensExplainer, parse_explanation
from .latent_cache import LatentCache, LatentRecord, LatentStats
from .latent_cache_writer import build_latent_cache
from .llm_client import ChatClient, ChatResult, LLMConfig
from .local_llm import LocalLLMConfig, LocalLLMError, LocalLLMServer
from .pipeline import AutoInterpConfig, RunInfo, autointerp_runs, ensure_cache, resolve_run, run_autointerp
from .sampling import BucketSample, Example, LatentSample, assign_buckets, choose_latents, sample_latent
from .scorers import (BucketScore, DetectionScorer, EmbeddingScorer, SentenceEmbedder, classification_metrics,
                      parse_predictions, roc_auc)

__all__ = [
    "AutoInterpConfig", "BucketSample", "BucketScore", "ChatClient", "ChatResult", "DetectionScorer",
    "EncodedBatch", "encode_windows", "sparse_codes", "token_outputs",
    "EmbeddingScorer", "Example", "Explanation", "LLMConfig", "LLMExplainer", "LatentCache", "LatentRecord",
    "LatentSample", "LatentStats", "RunInfo", "SentenceEmbedder", "TextFormatter", "TopTokensExplainer",
    "LocalLLMConfig", "LocalLLMError", "LocalLLMServer",
    "assign_buckets", "autointerp_runs", "build_latent_cache", "choose_latents", "classification_metrics",
    "dashboard_data", "ensure_cache", "mean_ci", "parse_explanation", "parse_predictions", "pearson",
    "plot_calibration", "resolve_run", "roc_auc", "run_autointerp", "sample_latent", "summarize_run",
    "table_markdown", "write_dashboard", "write_table",
]
