"""Architecture registry: name → SAE class. ``build_sae`` and ``load_sae`` go through it."""

from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError, SAEFileError
from .config import SEED

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
    """Registered architecture names, in registration order (``saes/__init__``'s list: report order)."""
    return tuple(_REGISTRY)


def missing_declarations(name: str) -> list[str]:
    """What the architecture ``name`` fails to declare for the rest of the package (formats,
    reports, sweeps, the CLI); empty when its module is complete. See docs/ARCHITECTURE.md."""
    from ..fielddocs import field_docs
    from .base import SAE
    from .declarations import Presentation

    cls = get_class(name)
    own = vars(cls)
    problems = [f"{name}: class attribute {a!r} must be set by the architecture's own class"
                for a in ("architecture", "config_class", "presentation", "toy_hparams") if a not in own]
    cfg_fields = set(cls.config_class.field_names())
    docs = field_docs(cls.config_class)
    problems += [f"{name}: config field {f!r} of {cls.config_class.__name__} has no docstring (CLI --help)"
                 for f in sorted(cfg_fields - set(docs))]
    problems += [f"{name}: {m}() is not implemented" for m in ("forward_normalized", "encode_normalized")
                 if getattr(cls, m) is getattr(SAE, m)]
    problems += [f"{name}: {m}() must be declared by the architecture's own class (an Export or NotExpressible)"
                 for m in ("to_saelens", "to_sparsify") if m not in own]
    if not isinstance(cls.presentation, Presentation):
        problems.append(f"{name}: presentation must be a Presentation(label, color, marker)")
    elif not re.fullmatch(r"#[0-9A-Fa-f]{6}", str(cls.presentation.color)):
        problems.append(f"{name}: presentation colour must be a hex colour #RRGGBB (figures and the dashboard's CSS), "
                        f"got {cls.presentation.color!r}")
    else:
        for other in architectures():
            p = get_class(other).presentation
            if other != name and isinstance(p, Presentation):
                if p.label == cls.presentation.label or p.color == cls.presentation.color:
                    problems.append(f"{name}: presentation label/colour {cls.presentation} is also {other!r}'s")
    problems += [f"{name}: toy_hparams names {h!r}, not a field of {cls.config_class.__name__}"
                 for h in sorted(set(cls.toy_hparams) - cfg_fields)]
    param, symbol = cls.sparsity
    if param not in cfg_fields or not symbol:
        problems.append(f"{name}: sparsity = (hyperparameter, symbol) must name a config field, got {cls.sparsity!r}")
    for fmt, sources in cls.reads.items():
        hook = f"from_{fmt}"
        if getattr(cls, hook, None) is None or getattr(cls, hook).__func__ is getattr(SAE, hook).__func__:
            problems.append(f"{name}: reads {fmt} {sources} but does not implement {hook}()")
    if cls.extra_outputs and getattr(cls, "extra_outputs_normalized") is getattr(SAE, "extra_outputs_normalized"):
        problems.append(f"{name}: declares extra_outputs {sorted(cls.extra_outputs)} without extra_outputs_normalized()")
    return problems


def get_class(name: str):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r}; registered: {', '.join(_REGISTRY)}") from None


def hyperparameters(name: str) -> dict[str, Any]:
    """What a run's or a sweep grid's hyperparameters may name, with the defaults: the fields of
    the architecture's config and ``seed`` (not the config's: the run's seed, ``TrainConfig.seed``,
    which a sweep grid may vary)."""
    return {**{f.name: f.default for f in fields(get_class(name).config_class)}, "seed": SEED}


def build_config(name: str, **hparams: Any):
    """The validated config of architecture ``name`` holding ``hparams`` (the others at their
    defaults; ``SAEConfig.parse``)."""
    return get_class(name).config_class.parse(hparams, name)


def build_sae(name: str, d_in: int, d_sae: int, seed: int = SEED, **hparams: Any):
    """Build a registered architecture: ``build_sae("prob_topk", d_in=384, d_sae=6144, k=8)``;
    ``seed`` draws the initial weights."""
    return get_class(name)(build_config(name, **hparams), d_in, d_sae, seed)


def expected_state(name: str, cfg, d_in: int, d_sae: int) -> dict[str, tuple[tuple[int, ...], Any]]:
    """{tensor name: (shape, dtype)} of the state dict an SAE of this config and these sizes has,
    computed on torch's meta device: nothing is allocated, however large the sizes claim to be."""
    import torch

    with torch.device("meta"):
        sae = get_class(name)(cfg, d_in, d_sae)
    return {k: (tuple(v.shape), v.dtype) for k, v in sae.state_dict().items()}


def load_sae(path: str | os.PathLike, device: str | None = None):
    """Load an SAE written by ``sae.save(path)`` (exact round trip of weights, buffers, config and
    ``sae.metadata``), on ``device`` (default: the CPU).

    Checked before anything is allocated: config.json is a probsae SAE config of valid values,
    and the weight file's header holds exactly the tensors, shapes and dtypes that config implies.
    Then the weights' CRC-32 (and that config.json, its ``metadata`` included, is the one they were
    saved with) and that no weight is NaN/inf. Every failure is a ``SAEFileError``/``ConfigError``
    naming the file."""
    from ..io import json_field, read_json
    from ..tensorfile import check_entries, load_tensors, read_header
    from .base import CONFIG_CHECKSUM_KEY, CONFIG_FILE, FORMAT_NAME, WEIGHTS_CHECKSUM_KEY, WEIGHTS_FILE, config_checksum
    from .config import check_seed
    from .metadata import SAEMetadata

    path = Path(path)
    if not path.is_dir():
        raise SAEFileError(f"no saved SAE at {path}: directory does not exist")
    cfg_path, w_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise SAEFileError(f"saved SAE at {path} is missing {p.name}")
    meta = read_json(cfg_path, dict, SAEFileError)
    if meta.get("format") != FORMAT_NAME:
        raise SAEFileError(f"{cfg_path} is not a probsae SAE config (format={meta.get('format')!r})")
    arch = json_field(meta, "architecture", str, cfg_path, SAEFileError)
    fields_ = dict(json_field(meta, "config", dict, cfg_path, SAEFileError))
    try:
        sizes = {k: fields_.pop(k, None) for k in ("d_in", "d_sae")}
        seed = fields_.pop("seed", SEED)
        cfg = build_config(arch, **fields_)
        cfg.check_sizes(**sizes)
        check_seed(seed)
    except (TypeError, ConfigError) as e:
        raise SAEFileError(f"invalid SAE config {cfg_path}: {e}") from None
    try:
        metadata = SAEMetadata.from_dict(meta.get("metadata"))
    except (TypeError, SAEFileError) as e:
        raise SAEFileError(f"invalid SAE metadata in {cfg_path}: {e}") from None
    header = read_header(w_path, SAEFileError)
    check_entries(header, w_path, expected_state(arch, cfg, **sizes), SAEFileError)
    recorded = header.metadata.get(CONFIG_CHECKSUM_KEY)
    if recorded is not None and recorded != config_checksum(meta):
        raise SAEFileError(f"{cfg_path} differs from the config {w_path.name} was saved with (its checksum is "
                           f"{config_checksum(meta)}, the weights recorded {recorded})")
    weights_crc = meta.get(WEIGHTS_CHECKSUM_KEY)  # absent in SAEs saved before probsae recorded it
    state, _ = load_tensors(w_path, header=header, checksum=weights_crc if isinstance(weights_crc, str) else None,
                            finite=True, cls=SAEFileError)
    sae = get_class(arch)(cfg, **sizes, seed=seed)
    sae.load_state_dict(state)
    sae.metadata = metadata
    return sae.to(device) if device else sae
