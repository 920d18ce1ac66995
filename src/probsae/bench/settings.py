"""``BenchSettings``: what ``probsae bench`` measures and on how much data (no torch: the CLI's
options are built from it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..validators import positive


@dataclass
class BenchSettings:
    """Settings of ``probsae bench`` (every field a command-line option)."""

    tasks: tuple[str, ...] = ("code", "offline-en")
    """Sparse-probing tasks (comma list): code (programming language of source files on this machine),
    offline-en (source package of an offline-en document)."""
    n_train: int = 100
    """Training texts per class of each probing task."""
    n_test: int = 50
    """Test texts per class of each probing task."""
    ks: tuple[int, ...] = (1, 2, 5, 20)
    """Numbers of latents the sparse probes read (comma list)."""
    probe_context: int = 128
    """Tokens of each probing text the model reads (SAEBench: 128; capped at the model's and the SAE's context)."""
    batch_size: int = 8
    """Texts per model forward pass."""
    seed: int = 0
    """Seed of the task samples and of the probes' negative examples."""
    metrics: tuple[str, ...] = ("sparse_probing", "absorption", "core", "autointerp")
    """Metrics to run, in this order (comma list): sparse_probing (its time estimate comes first),
    absorption (first-letter task; causal LMs), core, autointerp (only with --autointerp-llm)."""
    words: str = ""
    """Word list of the absorption task, one word a line (default: /usr/share/dict/words, Debian's wamerican)."""
    absorption_words: int = 6000
    """Words the absorption task samples from the filtered word list (0: all)."""
    autointerp_llm: str = ""
    """Judge of the autointerp metric (detection scoring of LLM explanations, as probsae autointerp):
    local:NAME (a model served on 127.0.0.1 by transformers serve, e.g. local:smollm2), env (the
    PROBSAE_LLM_* endpoint), or empty: autointerp is not run."""
    autointerp_latents: int = 50
    """Random alive latents per SAE the autointerp metric explains and scores."""
    eval_tokens: int | None = None
    """Held-out tokens of the core metrics (default: the run's eval_tokens, as probsae eval)."""
    downstream_tokens: int | None = None
    """Held-out next-token positions of CE/KL (causal LMs; default as probsae eval: 32,768)."""
    cache_dir: str | None = None
    """Activation cache root of the held-out activations (default: the run's, else ./cache)."""
    device: str = "cpu"
    """Device of the model and the SAEs."""

    def __post_init__(self) -> None:
        positive("autointerp_latents", self.autointerp_latents)
        if self.autointerp_llm and self.autointerp_llm != "env" and not self.autointerp_llm.startswith("local:"):
            raise ConfigError(f"autointerp_llm must be local:NAME, env or empty, got {self.autointerp_llm!r}")
        if self.absorption_words < 0:
            raise ConfigError(f"absorption_words must be >= 0, got {self.absorption_words}")
        for name in ("n_train", "n_test", "probe_context", "batch_size"):
            positive(name, getattr(self, name))
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"ks must be positive integers, got {self.ks}")
        if self.n_train < 2 or self.n_test < 1:
            raise ConfigError("n_train must be >= 2 and n_test >= 1")
