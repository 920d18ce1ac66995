"""``metrics.json``: the results file of a trained run, one schema for ``probsae train`` and every
member of ``probsae sweep`` (docs/EXPERIMENTS.md documents it), its one writer and its reader.

The held-out evaluation is ``probsae.evaluate`` of the trained SAE; the last training record comes
from the run directory's ``log.jsonl`` (so a member trained by an earlier invocation is recorded
the same way as one trained now).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
FORMAT = "probsae-metrics"
FORMAT_VERSION = 1
#: Keys of the last training log record kept in ``train_final``.
TRAIN_FINAL_KEYS = ("step", "tokens", "loss", "mse", "explained_variance", "l0", "alive", "dead", "alive_recent",
                    "alive_window", "beta", "elapsed_s")


@dataclass
class RunMetrics:
    """The content of ``metrics.json`` (plus ``format`` and ``format_version``)."""

    name: str
    """Run name: the sweep member's name, or the run directory's name for ``probsae train``."""
    architecture: str
    """Registered architecture name."""
    hparams: dict[str, Any]
    """The hyperparameters the run was given (a sweep member's: its grid hyperparameters)."""
    d_in: int
    """Width of the activations."""
    d_sae: int
    """Number of latents."""
    heldout: dict[str, Any]
    """``probsae.evaluate`` on held-out tokens: mse, fvu, explained_variance, l0, alive, dead, n_tokens."""
    train_final: dict[str, Any]
    """The last training log record: step, tokens, loss, mse and explained_variance of the batch, l0,
    alive and dead latents in the training window, alive_recent (latents that fired within the last
    alive_window tokens, ``TrainConfig.alive_log_window``), beta (prob_topk), elapsed_s."""
    steps: int | None
    """Optimiser steps of the run."""
    batch_size: int
    """Tokens per step."""
    tokens_seen: int | None
    """Training tokens the SAE saw (from the last log record)."""
    model: str | None = None
    """Model the activations came from."""
    hook: str | None = None
    """Hook point of the activations."""
    corpus: str | None = None
    """Text corpus of the activations."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds of the stages this invocation ran: data (extraction or cache preparation),
    train (for a sweep member: its whole pass, shared by the pass's members), eval."""
    studies: list[str] = field(default_factory=list)
    """Report labels of a sweep member (pareto, ablation, …); empty for ``probsae train``."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other facts of the invocation (a sweep's train_cache_tokens and pass_members)."""
    throughput: dict[str, Any] = field(default_factory=dict)
    """Speed of the training this invocation ran (``probsae train``; empty for a sweep member):
    train_tokens, train_seconds, train_tokens_per_s (end to end, data included), saes_on_the_stream,
    device; when streaming also extracted_tokens, forward_seconds and extract_tokens_per_s (tokens
    per second of model-forward time)."""
    downstream: dict[str, Any] | None = None
    """Causal LMs: CE/KL with the SAE spliced in on held-out text (``evaluation.downstream``:
    ce_clean, ce_sae, ce_zero, ce_recovered, ce_delta, kl, kl_zero, n_tokens, n_windows, ci);
    None when not measured (an encoder, or switched off)."""

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}


def record_run(run_dir: str | Path, name: str, architecture: str, hparams: dict[str, Any], sae, eval_data, train_cfg,
               *, data: dict[str, Any] | None = None, seconds: dict[str, float] | None = None,
               studies: list[str] | None = None, extra: dict[str, Any] | None = None,
               throughput: dict[str, Any] | None = None, batch_size: int = 4096) -> dict[str, Any]:
    """Evaluate the trained ``sae`` on ``eval_data`` and write ``run_dir/metrics.json``; returns
    its content. ``data``: model, hook and corpus of the activations."""
    from ..evaluation.metrics import evaluate
    from ..io import atomic_write_json
    from ..training.logger import JsonlLogger, step_records
    from ..training.member import LOG_FILE

    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    heldout = evaluate(sae, eval_data, batch_size=batch_size)
    records = step_records(JsonlLogger(run_dir / LOG_FILE).read())
    last = records[-1] if records else {}
    data = data or {}
    metrics = RunMetrics(
        name=name, architecture=architecture, hparams=dict(hparams), d_in=sae.d_in, d_sae=sae.d_sae,
        heldout=heldout, train_final={k: last[k] for k in TRAIN_FINAL_KEYS if k in last},
        steps=train_cfg.steps, batch_size=train_cfg.batch_size, tokens_seen=last.get("tokens"),
        model=data.get("model"), hook=data.get("hook"), corpus=data.get("corpus"),
        seconds={**(seconds or {}), "eval": round(time.perf_counter() - t0, 3)},
        studies=list(studies or []), extra=dict(extra or {}), throughput=dict(throughput or {})).to_dict()
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    return metrics


def add_downstream(run_dir: str | Path, downstream: dict[str, Any]) -> dict[str, Any]:
    """Put CE/KL results into an existing ``metrics.json`` (atomically); returns the new content."""
    from ..io import atomic_write_json

    path = Path(run_dir) / METRICS_FILE
    m = read_metrics(path)
    m["downstream"] = downstream
    atomic_write_json(path, m)
    return m


MIN_HELDOUT_TOKENS = 1000
"""Held-out metrics from fewer than half this many tokens, or than half of what ``--eval-tokens``
asked for if that is fewer, come with a warning: FVU and the alive count of a handful of tokens
are noise, and the corpus could not give what was asked for."""


def heldout_warning(n_tokens: int, eval_tokens: int | None, holdout_every: int) -> str | None:
    """The warning for a held-out set of ``n_tokens`` tokens, or None when it is large enough: at
    least half of ``eval_tokens`` (what was asked for) or of ``MIN_HELDOUT_TOKENS``, whichever is fewer."""
    wanted = min(eval_tokens or MIN_HELDOUT_TOKENS, MIN_HELDOUT_TOKENS)
    if 2 * n_tokens >= wanted:
        return None
    asked = f"--eval-tokens asked for {eval_tokens:,}" if eval_tokens else "the whole held-out split was asked for"
    return (f"the held-out set holds only {n_tokens:,} tokens ({asked}; every {holdout_every}th document is held "
            "out): held-out metrics from so few tokens are noise. Use a larger corpus or a smaller --holdout-every")


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A ``metrics.json``. It is written atomically, so it is never torn: a file that is not a JSON
    object is corrupt and a ``ConfigError`` naming it. Files written before the one schema are
    brought to it: a sweep member's held-out ``eval`` becomes ``heldout``."""
    from ..errors import ConfigError
    from ..io import read_json

    path = Path(path)
    m = read_json(path, dict, ConfigError)
    if "heldout" not in m and "eval" in m:
        m["heldout"] = m.pop("eval")
    m.setdefault("name", path.parent.name)
    problem = metrics_problem(m)
    if problem:
        raise ConfigError(f"run {path.parent.name}: {path} {problem}; fix or remove the file "
                          "(it is written atomically, so it was edited or written by other software)")
    return m


#: Fields of ``metrics.json`` that readers (sweep, report) use, with their JSON types; an int is a
#: count (a bool is never accepted as a number), None marks an optional field.
_NUM, _INT = "number", "integer"
_SCHEMA: dict[str, tuple] = {
    "name": (str,), "architecture": (str,), "hparams": (dict,), "heldout": (dict,),
    "d_in": (_INT, None), "d_sae": (_INT, None), "train_final": (dict, None), "steps": (_INT, None),
    "batch_size": (_INT, None), "tokens_seen": (_INT, None), "seconds": (dict, None),
    "studies": (list, None), "extra": (dict, None),
    "heldout.mse": (_NUM,), "heldout.fvu": (_NUM,), "heldout.explained_variance": (_NUM,),
    "heldout.l0": (_NUM,), "heldout.alive": (_INT,), "heldout.dead": (_INT,), "heldout.n_tokens": (_INT, None),
}


def _type_problem(value: Any, want: tuple) -> str | None:
    from ..io import json_type_name

    if value is None and None in want:
        return None
    for w in want:
        if w == _NUM and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return None
        if w == _INT and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return None
        if isinstance(w, type) and isinstance(value, w):
            return None
    names = {_NUM: "a finite number", _INT: "a non-negative integer", str: "a string", dict: "an object",
             list: "a list", bool: "true/false"}
    wanted = " or ".join(names[w] for w in want if w is not None)
    return f"holds {json_type_name(value)} ({json.dumps(value)[:40]}), expected {wanted}"


def metrics_problem(m: dict[str, Any]) -> str | None:
    """What is wrong with the content of a ``metrics.json`` (None if nothing): a field the readers
    use that is missing or of the wrong type (``_SCHEMA``), or a hyperparameter whose type differs
    from its architecture's default (``hparams.k: "x"``; an unknown architecture's are not checked)."""
    for key, want in _SCHEMA.items():
        obj, name = m, key
        if "." in key:
            head, name = key.split(".", 1)
            obj = m.get(head)
            if not isinstance(obj, dict):
                continue  # reported as the head's own problem
        if name not in obj:
            if None in want:
                continue
            return f"has no field {key!r}"
        bad = _type_problem(obj[name], want)
        if bad:
            return f"field {key!r} {bad}"
    return _hparams_problem(m["architecture"], m["hparams"])


def _hparams_problem(arch: str, hparams: dict[str, Any]) -> str | None:
    from ..errors import ConfigError
    from ..saes.registry import hyperparameters

    try:
        defaults = hyperparameters(arch)
    except ConfigError:
        return None
    for key, value in hparams.items():
        default = defaults.get(key)
        if default is None:
            continue
        if isinstance(default, bool):
            want: tuple = (bool,)
        elif isinstance(default, int):
            want = (_INT,) if default >= 0 else (int,)
        elif isinstance(default, float):
            want = (_NUM,)
        elif isinstance(default, (tuple, list)):
            want = (list,)
        else:
            want = (type(default),)
        bad = _type_problem(value, want)
        if bad:
            return f"field 'hparams.{key}' {bad}"
    return None


def read_runs(runs_root: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """(run directory, metrics) of every ``*/metrics.json`` under ``runs_root``, sorted by directory."""
    return [(p.parent, read_metrics(p)) for p in sorted(Path(runs_root).glob(f"*/{METRICS_FILE}"))]
