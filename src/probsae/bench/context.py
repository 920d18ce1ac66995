"""What every bench metric receives: the runs of one (model, hook point) with their SAEs loaded,
the model (loaded once, on first use), the settings and the probing tasks.

**The metric interface.** A metric is a function ``metric(ctx: HookContext) -> {member name:
JSON-able dict}``, called once per hook point for all of its SAEs, so that it can share model
forward passes between them (``METRICS`` in ``probsae.bench.runner`` lists them by name; a
metric that is not run shows as :func:`not_run`). See docs/BENCH.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .settings import BenchSettings
from .tasks import ProbeTask

Metric = Callable[["HookContext"], dict[str, dict[str, Any]]]
"""A bench metric: called once per hook point, returns one JSON-able dict per member name."""


def not_run(reason: str) -> dict[str, str]:
    """The result of a metric that was not run (not requested, not available, skipped)."""
    return {"status": "not run", "reason": reason}


def folder_name(member_name: str) -> str:
    """The folder of a member under the bench's output (``/`` in a name becomes ``__``)."""
    return member_name.replace("/", "__")


@dataclass
class Member:
    """One run being benchmarked."""

    name: str
    """Unique name in this bench (the run directory's name, its parent's prefixed on a clash)."""
    run_dir: Path
    sae: Any
    """The loaded SAE (``probsae.saes.SAE``), in eval mode on the bench's device."""
    data: Any = None
    """The run's ``DataSpec`` (held-out documents, cache identity); None when the run records none."""
    cache_dir: str = "cache"
    """Activation cache root of its held-out activations."""

    @property
    def architecture(self) -> str:
        return type(self.sae).architecture

    @property
    def metadata(self):
        return self.sae.metadata


@dataclass
class HookContext:
    """The runs sharing one (model, hook point), and what their metrics share."""

    model: str
    hook: str
    members: list[Member]
    settings: BenchSettings
    tasks: list[ProbeTask] = field(default_factory=list)
    out: Path | None = None
    """The bench's output directory (a metric that must write, e.g. autointerp's caches, writes under it)."""
    _handle: Any = None

    @property
    def handle(self):
        """The model (``probsae.data.ModelHandle``), loaded on first use, once for all metrics: as
        the first member's data spec loads it (its dtype), else by name."""
        if self._handle is None:
            from ..data.models import load_model

            data = next((m.data for m in self.members if m.data is not None), None)
            self._handle = data.load(self.settings.device) if data is not None \
                else load_model(self.model, device=self.settings.device)
        return self._handle

    @property
    def label(self) -> str:
        return f"{self.model} {self.hook}"


def run_data(run_dir: Path) -> tuple[Any, str | None]:
    """The ``DataSpec`` and cache root a run was trained with: from its run.json (probsae train),
    else from the sweep.json two folders up (a probsae sweep member); (None, None) otherwise."""
    from .. import io
    from ..data.prepare import DataSpec
    from ..errors import ProbSAEError
    from ..runs.spec import RUN_FILE, read_spec

    if (run_dir / RUN_FILE).is_file():
        spec = read_spec(run_dir)
        return spec.data, spec.cache_dir
    sweep = run_dir.parent.parent / "sweep.json"
    if sweep.is_file():
        from ..experiments.presets import SWEEP_DATA_KEYS

        data = ((io.read_json(sweep, dict, InputError).get("config") or {}).get("data")) or {}
        try:
            return DataSpec(**{k: v for k, v in data.items() if k not in SWEEP_DATA_KEYS}), data.get("cache_dir")
        except (ProbSAEError, TypeError):
            return None, None
    return None, None


def load_members(run_dirs: list[str | Path], settings: BenchSettings) -> list[Member]:
    """Load every run's SAE (and its data spec); names made unique."""
    from ..saes import load_sae

    members: list[Member] = []
    names = [Path(r).name for r in run_dirs]
    for r, name in zip(run_dirs, names):
        run_dir = Path(r)
        if names.count(name) > 1:
            name = f"{run_dir.parent.parent.name or run_dir.parent.name}/{name}"
        if any(m.name == name for m in members):
            raise InputError(f"run {run_dir} is given twice")
        sae = load_sae(run_dir, device=settings.device).eval()
        if not sae.metadata.model_name or not sae.metadata.hook_name:
            raise InputError(f"{run_dir}: the SAE's config.json records no model/hook point (metadata)")
        data, cache = run_data(run_dir)
        members.append(Member(name, run_dir, sae, data, settings.cache_dir or cache or "cache"))
    return members


def group_by_hook(members: list[Member]) -> dict[tuple[str, str], list[Member]]:
    """(model, hook point) → its members, in the order given."""
    groups: dict[tuple[str, str], list[Member]] = {}
    for m in members:
        groups.setdefault((m.metadata.model_name, m.metadata.hook_name), []).append(m)
    return groups


def data_key(data) -> str:
    """Members whose data specs give this same key share one held-out cache and one downstream pass."""
    return json.dumps(data.to_dict(), sort_keys=True, default=str)
