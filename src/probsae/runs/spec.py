"""The full description of one training run, stored as ``run.json`` in its directory."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data.prepare import DataSpec
from ..errors import ConfigError, SAEFileError
from ..training.config import TrainConfig

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
PLOT_FILE = "training.png"


@dataclass
class RunSpec:
    """One SAE trained on one activation source."""

    architecture: str = "prob_topk"
    """Registered architecture name (probsae.ARCHITECTURES)."""
    hparams: dict[str, Any] = field(default_factory=dict)
    """The architecture's hyperparameters (k, lambda_mag, l1_coeff, …)."""
    expansion: int = 16
    """d_sae = expansion × d_in unless d_sae is given (the paper: 16)."""
    d_sae: int | None = None
    """Number of latents (overrides expansion)."""
    epochs: float = 1.0
    """Passes over the cached training tokens when train.steps is not set."""
    stream: bool = False
    """Train straight from the model without a cache (one pass; steps from max_tokens)."""
    cache_dir: str = "cache"
    """Root folder of activation caches (shared by runs with the same data spec)."""
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"]["adam_betas"] = list(d["train"]["adam_betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        d = dict(d)
        data = DataSpec.from_dict(d.pop("data", {}))
        tr = dict(d.pop("train", {}))
        if "adam_betas" in tr:
            tr["adam_betas"] = tuple(tr["adam_betas"])
        try:
            return cls(data=data, train=TrainConfig(**tr), **d)
        except TypeError as e:
            raise ConfigError(f"invalid run spec: {e}") from None

    def comparable(self) -> dict[str, Any]:
        """The fields that define the result (not logging/progress/device)."""
        d = self.to_dict()
        for k in ("progress", "log_every", "log_path", "device", "checkpoint_every", "extra", "alive_log_window"):
            d["train"].pop(k, None)
        d["data"].pop("device", None)
        d.pop("cache_dir", None)
        return d


def data_metadata(data: DataSpec, **extra: Any):
    """The :class:`~probsae.saes.SAEMetadata` of an SAE trained on ``data`` (saved in its config.json)."""
    from ..saes.metadata import SAEMetadata

    return SAEMetadata(model_name=data.model, hook_name=data.hook, context_length=data.context_length,
                       exclude_special=data.exclude_special, corpus=data.corpus, text_field=data.text_field,
                       holdout_every=data.holdout_every, activation_dtype=data.dtype, extra=dict(extra))


def write_spec(run_dir: Path, spec: RunSpec, command: str | None) -> None:
    from ..io import atomic_write_json

    payload = {"format": "probsae-run", "spec": spec.to_dict(), "command": command}
    atomic_write_json(run_dir / RUN_FILE, payload)


def read_spec(run_dir: Path) -> RunSpec:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise SAEFileError(f"{run_dir} is not a probsae run directory (no {RUN_FILE})")
    try:
        return RunSpec.from_dict(json.loads(path.read_text())["spec"])
    except (json.JSONDecodeError, KeyError) as e:
        raise SAEFileError(f"corrupt {path}: {e}") from None


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted names of the entries where two nested dicts differ."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k} ({va!r} → {vb!r})")
    return out
