"""``probsae bench`` as a function: load the runs, group them by (model, hook point), run each
metric once per group, write ``bench.json`` per run and the comparison (docs/BENCH.md)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import InputError
from .context import HookContext, Metric, folder_name, group_by_hook, load_members, not_run
from .settings import BenchSettings

BENCH_FILE = "bench.json"
FORMAT = "probsae-bench"
FORMAT_VERSION = 1


def _metrics() -> dict[str, Metric]:
    """Metric name → function, in the order they run (imported here: each pulls in torch)."""
    from .absorption import absorption
    from .autointerp import autointerp
    from .core import core
    from .sparse_probing import sparse_probing

    return {"sparse_probing": sparse_probing, "absorption": absorption, "core": core, "autointerp": autointerp}


def bench(run_dirs: list[str | Path], out: str | Path, settings: BenchSettings | None = None,
          command: str | None = None) -> dict[str, dict[str, Any]]:
    """Benchmark the runs ``run_dirs`` (see the module docstring); writes ``out/<name>/bench.json``
    per run, ``out/bench.md`` and the figures; returns {name: bench.json content}."""
    from ..io import check_writable_dir
    from ..runs.lock import RunDirLock

    settings = settings or BenchSettings()
    metrics = _metrics()
    unknown = [m for m in settings.metrics if m not in metrics]
    if unknown:
        raise InputError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(metrics)}")
    if not run_dirs:
        raise InputError("no run given")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_writable_dir(out, "bench output directory")
    with RunDirLock(out, command or "probsae bench"):   # one writer per output directory
        return _bench(run_dirs, out, settings, metrics, command)


def _bench(run_dirs, out: Path, settings: BenchSettings, metrics: dict[str, Metric], command: str | None):
    from .. import progress
    from .report import write_report

    members = load_members(run_dirs, settings)
    tasks, missing = _probing_tasks(settings) if "sparse_probing" in settings.metrics else ([], {})
    plain = _settings_json(settings)
    docs = {m.name: _resumed(out, m, plain, command, missing) for m in members}
    for (model, hook), group in group_by_hook(members).items():
        ctx = HookContext(model, hook, group, settings, tasks, out)
        progress.say(f"bench: {ctx.label}: {len(group)} SAE(s): {', '.join(m.name for m in group)}")
        for name in settings.metrics:
            if all(name in docs[m.name]["metrics"] for m in group):
                progress.say(f"bench: {ctx.label}: {name}: kept from the bench.json files in {out} (same settings)")
                continue
            t0 = time.perf_counter()
            for member, r in metrics[name](ctx).items():
                docs[member]["metrics"][name] = r
            took = round(time.perf_counter() - t0, 2)
            progress.say(f"bench: {ctx.label}: {name} took {took:.0f} s for {len(group)} SAE(s)")
            for m in group:   # written after every metric, so a stopped bench resumes from here
                docs[m.name]["seconds"][name + "_group"] = took
                _write(out, docs[m.name])
    for m in members:
        doc = docs[m.name]
        for name in metrics:
            doc["metrics"].setdefault(name, not_run(f"not requested (--metrics {','.join(settings.metrics)})"))
        doc["complete"] = True
        _write(out, doc)
    write_report(docs, out, command)
    return docs


def _settings_json(settings: BenchSettings) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}


def _resumed(out: Path, m, settings: dict[str, Any], command: str | None, missing: dict) -> dict[str, Any]:
    """The run's bench.json document with the metrics already measured in ``out`` for the same run
    and SAE under the same settings (:data:`DEPENDS`; an earlier, stopped or finished, bench;
    "not run" results are tried again)."""
    from .. import io

    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": m.name, "run_dir": str(m.run_dir),
           "architecture": m.architecture, "config": m.sae.config_dict()["config"],
           "model": m.metadata.model_name, "hook": m.metadata.hook_name, "command": command,
           "settings": settings, "tasks_skipped": missing, "metrics": {}, "seconds": {}, "complete": False}
    path = out / folder_name(m.name) / BENCH_FILE
    if path.is_file():
        old = io.read_json(path, dict, InputError)
        if all(old.get(k) == doc[k] for k in ("format", "run_dir", "architecture", "config")):
            prev = old.get("settings") or {}
            doc["metrics"] = {k: v for k, v in (old.get("metrics") or {}).items()
                              if k in settings["metrics"] and v.get("status") != "not run" and _same(k, prev, settings)}
            doc["seconds"] = {k: v for k, v in (old.get("seconds") or {}).items()
                              if k.removesuffix("_group") in doc["metrics"]}
    return doc


#: The settings each metric's result depends on: a rerun keeps a metric's result when these are
#: unchanged (the probing tasks are built before any metric, from tasks/n_train/n_test/seed).
DEPENDS: dict[str, tuple[str, ...]] = {
    "sparse_probing": ("tasks", "n_train", "n_test", "ks", "probe_context", "batch_size", "seed"),
    "absorption": ("words", "absorption_words"),
    "core": ("eval_tokens", "downstream_tokens", "cache_dir"),
    "autointerp": ("autointerp_llm", "autointerp_latents", "seed"),
}


def _same(metric: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``metric`` measured under settings ``old`` measures the same under ``new``."""
    return all(old.get(k) == new.get(k) for k in DEPENDS.get(metric, tuple(new)))


def _write(out: Path, doc: dict[str, Any]) -> None:
    from ..io import atomic_write_json

    (out / folder_name(doc["name"])).mkdir(exist_ok=True)
    atomic_write_json(out / folder_name(doc["name"]) / BENCH_FILE, doc)



def _probing_tasks(settings: BenchSettings):
    """The probing tasks that can be built, and {task: why not}; a warning for each task or class left out."""
    from .. import progress
    from .tasks import build_tasks

    tasks, missing = build_tasks(list(settings.tasks), settings.n_train, settings.n_test, settings.seed)
    for name, why in missing.items():
        progress.warn(f"probing task {name} skipped: {why}")
    for t in tasks:
        for cls, why in t.skipped.items():
            progress.warn(f"probing task {t.name}: class {cls} skipped ({why})")
    return tasks, missing
