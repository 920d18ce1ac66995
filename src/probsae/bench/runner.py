"""``probsae bench`` as a function: load the runs, group them by (model, hook point), run each
metric once per group, write ``bench.json`` per run and the comparison (docs/BENCH.md)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import InputError
from .context import HookContext, Metric, group_by_hook, load_members, not_run
from .settings import BenchSettings

BENCH_FILE = "bench.json"
FORMAT = "probsae-bench"
FORMAT_VERSION = 1


def _metrics() -> dict[str, Metric]:
    """Metric name → function, in the order they run (imported here: each pulls in torch)."""
    from .core import core
    from .sparse_probing import sparse_probing

    return {"sparse_probing": sparse_probing, "core": core}


#: Metrics of the SAEBench suite that this command does not run yet, with the reason shown.
NOT_RUN = {
    "absorption": "feature absorption (first-letter task) is not part of probsae bench yet",
    "autointerp": "autointerp is not run by probsae bench: run 'probsae autointerp RUN'",
}


def bench(run_dirs: list[str | Path], out: str | Path, settings: BenchSettings | None = None,
          command: str | None = None) -> dict[str, dict[str, Any]]:
    """Benchmark the runs ``run_dirs`` (see the module docstring); writes ``out/<name>/bench.json``
    per run, ``out/bench.md`` and the figures; returns {name: bench.json content}."""
    from .. import progress
    from ..io import atomic_write_json, check_writable_dir
    from .report import write_report

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
    members = load_members(run_dirs, settings)
    tasks, missing = _probing_tasks(settings) if "sparse_probing" in settings.metrics else ([], {})
    results: dict[str, dict[str, Any]] = {m.name: {} for m in members}
    seconds: dict[str, dict[str, float]] = {m.name: {} for m in members}
    for (model, hook), group in group_by_hook(members).items():
        ctx = HookContext(model, hook, group, settings, tasks)
        progress.say(f"bench: {ctx.label}: {len(group)} SAE(s): {', '.join(m.name for m in group)}")
        for name in settings.metrics:
            t0 = time.perf_counter()
            for member, r in metrics[name](ctx).items():
                results[member][name] = r
            took = round(time.perf_counter() - t0, 2)
            progress.say(f"bench: {ctx.label}: {name} took {took:.0f} s for {len(group)} SAE(s)")
            for m in group:
                seconds[m.name][name + "_group"] = took
    written = {}
    for m in members:
        for name in metrics:
            results[m.name].setdefault(name, not_run(f"not requested (--metrics {','.join(settings.metrics)})"))
        for name, why in NOT_RUN.items():
            results[m.name][name] = not_run(why)
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": m.name, "run_dir": str(m.run_dir),
               "architecture": m.architecture, "config": m.sae.config_dict()["config"],
               "model": m.metadata.model_name, "hook": m.metadata.hook_name, "command": command,
               "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()},
               "tasks_skipped": missing, "metrics": results[m.name], "seconds": seconds[m.name]}
        (out / _safe(m.name)).mkdir(exist_ok=True)
        atomic_write_json(out / _safe(m.name) / BENCH_FILE, doc)
        written[m.name] = doc
    write_report(written, out, command)
    return written


def _safe(name: str) -> str:
    return name.replace("/", "__")


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
