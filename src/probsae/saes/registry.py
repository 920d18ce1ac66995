"""Architecture registry: name → SAE class. ``build_sae`` and ``load_sae`` go through it."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError, SAEFileError

_REGISTRY: dict[str, type] = {}
T = TypeVar("T")


def register(cls: T) -> T:
    """Class decorator adding an SAE class to the registry under its ``architecture`` name."""
    name = cls.architecture  # type: ignore[attr-defined]
    if not name or name in _REGISTRY:
        raise ConfigError(f"architecture name {name!r} is empty or registered twice")
    _REGISTRY[name] = cls
    return cls


def architectures() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get_class(name: str):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r}; registered: {', '.join(_REGISTRY)}") from None


def hyperparameters(name: str) -> dict[str, Any]:
    """The hyperparameters of an architecture with their defaults (d_in and d_sae excluded)."""
    cfg_cls = get_class(name).config_class
    return {f.name: f.default for f in fields(cfg_cls) if f.name not in ("d_in", "d_sae")}


def build_config(name: str, d_in: int, d_sae: int, **hparams: Any):
    cls = get_class(name)
    known = set(cls.config_class.field_names())
    unknown = sorted(set(hparams) - known)
    if unknown:
        valid = ", ".join(sorted(known - {"d_in", "d_sae"}))
        raise ConfigError(f"unknown hyperparameter(s) {unknown} for architecture {name!r}; valid: {valid}")
    cfg = cls.config_class(d_in=d_in, d_sae=d_sae, **hparams)
    cfg.validate()
    return cfg


def build_sae(name: str, d_in: int, d_sae: int, **hparams: Any):
    """Build a registered architecture: ``build_sae("prob_topk", d_in=384, d_sae=6144, k=8)``."""
    return get_class(name)(build_config(name, d_in, d_sae, **hparams))


def load_sae(path: str | os.PathLike, device: str | None = None):
    """Load an SAE written by ``sae.save(path)`` (exact round trip of weights, buffers, config and
    ``sae.metadata``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .base import CONFIG_FILE, FORMAT_NAME, WEIGHTS_FILE
    from .metadata import SAEMetadata

    path = Path(path)
    if not path.is_dir():
        raise SAEFileError(f"no saved SAE at {path}: directory does not exist")
    cfg_path, w_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise SAEFileError(f"saved SAE at {path} is missing {p.name}")
    try:
        meta = json.loads(cfg_path.read_text())
        if meta.get("format") != FORMAT_NAME:
            raise SAEFileError(f"{cfg_path} is not a probsae SAE config (format={meta.get('format')!r})")
        cfg = build_config(meta["architecture"], **meta["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise SAEFileError(f"corrupt SAE config {cfg_path}: {e}") from None
    try:
        state = load_file(str(w_path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise SAEFileError(f"corrupt SAE weight file {w_path}: {e}") from None
    sae = get_class(meta["architecture"])(cfg)
    expected = sae.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise SAEFileError(f"weight file {w_path} does not match its config: missing {missing}, unexpected {extra}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise SAEFileError(
                f"weight {k!r} in {w_path} has shape {tuple(v.shape)}, config implies {tuple(expected[k].shape)}"
            )
    sae.load_state_dict(state)
    sae.metadata = SAEMetadata.from_dict(meta.get("metadata"))
    return sae.to(device) if device else sae
