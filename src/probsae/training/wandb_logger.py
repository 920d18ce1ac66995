"""Optional Weights & Biases logging next to the always-written JSONL log.

Off unless ``TrainConfig.wandb_project`` is set. One W&B run per ``train()`` call: a single SAE
logs its keys as they are (``loss``, ``explained_variance``, …); several SAEs (a sweep) log
``<name>/<key>`` with ``name`` the run directory's name (or ``sae<i>``), all on the step axis.
Only ranks that write a run directory log (data-parallel: rank 0; members mode: each rank its own
SAEs, one W&B run per rank, grouped by ``wandb_run_name``). With run directories, the W&B run id
is kept in the first one (``wandb_run_id``) so a resumed training continues the same W&B run.
``WANDB_MODE=offline`` (or ``wandb_mode='offline'``) needs no network or account.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_write_text

RUN_ID_FILE = "wandb_run_id"


def _import_wandb():
    """Import hook (tests replace it with a fake module)."""
    import wandb

    return wandb


def check_available(cfg) -> None:
    """Raise a clear ConfigError before any work if W&B logging is requested but not installed."""
    if not cfg.wandb_project:
        return
    try:
        _import_wandb()
    except ImportError as e:
        raise ConfigError(
            f"wandb_project={cfg.wandb_project!r} asks for Weights & Biases logging, but wandb is not "
            f"installed ({e}). Install it with: pip install 'probsae[wandb]' — or unset wandb_project"
        ) from None


class _Off:
    def finish(self) -> None:
        pass


class WandbTee:
    """Wraps a member's JSONL logger: every step record also goes to W&B (numbers only)."""

    def __init__(self, inner, run, prefix: str):
        self.inner, self.run, self.prefix = inner, run, prefix

    @property
    def path(self):
        return self.inner.path

    def write(self, record: dict) -> None:
        self.inner.write(record)
        if "step" not in record or record.get("event"):
            return
        data = {}
        for k, v in record.items():
            if k == "step" or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                continue
            data[self.prefix + k] = v
        self.run.log(data, step=int(record["step"]))

    def read(self):
        return self.inner.read()

    def truncate_after(self, step: int) -> None:
        self.inner.truncate_after(step)


class WandbRun:
    def __init__(self, run):
        self.run = run

    def finish(self) -> None:
        self.run.finish()


def attach(cfg, members, indices, run_dirs, dist):
    """Start a W&B run for the members this rank writes and tee their loggers into it.
    Returns an object with ``finish()`` (a no-op when W&B is off or this rank writes nothing)."""
    if not cfg.wandb_project:
        return _Off()
    writing = [(i, m) for i, m in zip(indices, members) if getattr(m, "writer", True)]
    if not writing:
        return _Off()
    wandb = _import_wandb()
    names = [_name(i, run_dirs) for i, _ in writing]
    config = {"train": cfg.to_dict(), "saes": {n: {"architecture": m.sae.architecture, **m.sae.config_dict()["config"]}
                                                for n, (_, m) in zip(names, writing)}}
    kwargs = {"project": cfg.wandb_project, "entity": cfg.wandb_entity, "name": cfg.wandb_run_name,
              "mode": cfg.wandb_mode, "config": config}
    if dist.members_mode:
        kwargs["group"] = cfg.wandb_run_name or "probsae-members"
        kwargs["name"] = f"{cfg.wandb_run_name or 'probsae'}-rank{dist.rank}"
    id_file = None
    first_dir = writing[0][1].run_dir
    if first_dir is not None:
        id_file = Path(first_dir) / RUN_ID_FILE
        if id_file.is_file():
            kwargs["id"] = id_file.read_text().strip()
            kwargs["resume"] = "allow"
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    run = wandb.init(**kwargs)
    if id_file is not None and getattr(run, "id", None):
        id_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(id_file, str(run.id))
    single = len(members) == 1 and len(indices) == 1 and not dist.members_mode
    for name, (_, m) in zip(names, writing):
        m.logger = WandbTee(m.logger, run, "" if single else f"{name}/")
    return WandbRun(run)


def _name(i: int, run_dirs) -> str:
    if run_dirs:
        return Path(run_dirs[i]).name or f"sae{i}"
    return f"sae{i}"
