"""Sweep configs: TOML files (the presets shipped in ``probsae/presets/NAME.toml``, or any path)
and their expansion into grid members.

A sweep config has four parts (see ``src/probsae/presets/minilm-cpu.toml`` and docs/EXPERIMENTS.md)::

    name = "minilm-cpu"
    [data]     where the activations come from: model, hook, corpus, context_length, max_tokens,
               holdout_every, ... or ``cache`` / ``eval_cache`` (paths of existing activation caches)
    [sae]      settings shared by every member: d_sae (or expansion), normalize, seed (``SharedSAE``)
    [train]    ``probsae.TrainConfig`` fields (plus ``tokens`` = steps × batch_size)
    [sweep]    how the members run: checkpoint_every, max_members_per_pass, ... (``SweepSettings``)
    [[grid]]   one or more grid blocks; each expands to members (see ``expand_block``)

A grid block::

    [[grid]]
    study = "ablation"                 # label(s) used by the report: pareto, ablation, temperature
    architecture = "prob_topk"         # a name or a list of names (an axis)
    k = [8, 16]                        # a list is an axis, a scalar is fixed
    variants = [{}, {lambda_mag = 0.0}, {layernorm = false}, {gate = "sigmoid"}]   # alternatives

The block's members are the Cartesian product of its axes (architecture × every list-valued
hyperparameter × variants). Members of different blocks with the same architecture and the same
effective hyperparameters are one member (trained once, listed under every study it belongs to).
"""

from __future__ import annotations

import copy
import itertools
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from ..data.prepare import DataSpec
from ..errors import ConfigError
from ..runs.spec import RunSpec
from ..saes.config import SEED
from ..saes.registry import architectures, get_class, hyperparameters
from ..training.config import TrainConfig
from .sections import SharedSAE, SweepCaches, SweepSettings, keys, section

#: The presets shipped with probsae: package data ``probsae/presets/NAME.toml``, found through
#: importlib.resources from a source checkout and an installed wheel alike ($PROBSAE_CONFIGS
#: folders are searched first).
CONFIG_DIR = resources.files("probsae") / "presets"

_TOP_KEYS = {"name", "description", "data", "sae", "train", "grid", "sweep"}
#: [data] keys of the sweep itself; every other [data] key is a ``probsae.data.prepare.DataSpec`` field.
SWEEP_DATA_KEYS = keys(SweepCaches)
#: [train] keys of the sweep itself (not TrainConfig fields).
_TRAIN_EXTRA = {"tokens", "warmup_fraction"}


def config_dirs() -> list[Path | Traversable]:
    """Where preset names resolve, in order: the $PROBSAE_CONFIGS folders, then ``CONFIG_DIR``."""
    import os

    dirs = [Path(p) for p in os.environ.get("PROBSAE_CONFIGS", "").split(os.pathsep) if p]
    return dirs + [CONFIG_DIR]


def list_presets() -> list[str]:
    """The preset names (``minilm-cpu``, ...) of every folder of ``config_dirs``."""
    names: set[str] = set()
    for d in config_dirs():
        if d.is_dir():
            names.update(p.name[:-len(".toml")] for p in d.iterdir() if p.name.endswith(".toml"))
    return sorted(names)


def resolve_config_path(spec: str | Path) -> Path | Traversable:
    """A TOML path, or a preset name looked up in ``config_dirs`` (``minilm-cpu`` →
    probsae/presets/minilm-cpu.toml)."""
    p = Path(spec)
    if p.suffix == ".toml" or p.is_file():
        if not p.is_file():
            raise ConfigError(f"sweep config {spec} does not exist")
        return p
    for d in config_dirs():
        cand = d.joinpath(f"{spec}.toml")
        if cand.is_file():
            return cand
    raise ConfigError(f"unknown sweep preset {str(spec)!r}: not a .toml file and not one of "
                      f"{', '.join(list_presets()) or '(no presets found)'}")


@dataclass
class SweepMember(RunSpec):
    """One SAE of a sweep: a ``RunSpec`` (what ``probsae train`` would run: architecture, the grid's
    hyperparameters, size, data, training) plus the sweep's bookkeeping."""

    shared: dict[str, Any] = field(default_factory=dict)
    """[sae] settings every member shares (normalize, seed); the grid's hyperparameters override them."""
    studies: list[str] = field(default_factory=list)
    """Report labels of the grid blocks that list this member."""
    group: int = 0
    """Training pass group (lower first; see expand_block)."""

    @property
    def name(self) -> str:
        """Run directory name, from the architecture and its non-default grid hyperparameters."""
        return member_name(self.architecture, self.hparams)

    def __post_init__(self) -> None:
        """``hparams`` stays the grid's mapping (name, sweep.json, metrics.json); ``sae_config`` parses it."""

    def sae_hparams(self) -> dict[str, Any]:
        return {**self.shared, **self.hparams}

    def sae_config(self):
        from ..saes.registry import build_config

        return build_config(self.architecture, **{k: v for k, v in self.sae_hparams().items() if k != "seed"})

    def summary(self) -> dict[str, Any]:
        """The member as ``sweep.json`` lists it."""
        return {"name": self.name, "architecture": self.architecture, "hparams": dict(self.hparams),
                "studies": list(self.studies), "group": self.group}


@dataclass
class SweepConfig:
    """A loaded sweep config: its sections typed (``parse_config`` builds and validates them)."""

    name: str
    """The sweep's name (``runs/<name>`` by default): the TOML's ``name``, else its file name."""
    description: str
    """Free text (the report's subtitle)."""
    data: DataSpec | None
    """[data]: what the sweep extracts activations from; None when it reads existing caches."""
    caches: SweepCaches
    """[data] cache / eval_cache / cache_dir."""
    sae: SharedSAE
    """[sae]: size and shared settings."""
    train: TrainConfig
    """[train] resolved (``tokens`` → steps, ``warmup_fraction`` → warmup_steps, [sweep]
    checkpoint_every when [train] has none)."""
    sweep: SweepSettings
    """[sweep]."""
    grid: list[dict[str, Any]]
    """The [[grid]] blocks as written (``expand_grid`` makes the members)."""
    source: str | None = None
    """The TOML file it was read from."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The config as written (with --set overrides): what ``to_dict`` records in sweep.json."""

    @property
    def corpus(self) -> str | None:
        """The [data] corpus (as written when the sweep reads existing caches; None if not given)."""
        return self.data.corpus if self.data is not None else self.raw.get("data", {}).get("corpus")

    def members(self) -> list[SweepMember]:
        """The grid's members as complete run specs: the [sae] size and shared settings, the [data]
        spec (when the sweep extracts its own activations) and the [train] settings."""
        from dataclasses import replace

        sized = {"expansion": self.sae.expansion, "d_sae": self.sae.d_sae, "shared": self.sae.shared(),
                 "train": replace(self.train), "cache_dir": self.caches.cache_dir}
        if self.data is not None:
            sized["data"] = replace(self.data)
        members = [replace(m, **sized) for m in expand_grid(self.grid)]
        return [replace(m, train=replace(m.train, seed=m.sae_hparams().get("seed", SEED))) for m in members]  # its seed

    def to_dict(self) -> dict[str, Any]:
        """The config as written (sweep.json's ``config``)."""
        sections = {k: dict(self.raw.get(k, {})) for k in ("data", "sae", "train", "sweep")}
        return {"name": self.name, "description": self.description, **sections, "grid": self.grid,
                "source": self.source}


def load_config(spec: str | Path) -> SweepConfig:
    """Load and validate a sweep config from a TOML path or a preset name."""
    path = resolve_config_path(spec)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    cfg = parse_config(raw, source=str(path))
    return cfg


def parse_config(raw: dict[str, Any], source: str | None = None) -> SweepConfig:
    """The typed, validated config of ``raw`` (a TOML's contents); errors name ``source`` and the key."""
    where = source or "sweep config"
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {unknown}; valid: {sorted(_TOP_KEYS)}")
    data_keys = keys(DataSpec) | SWEEP_DATA_KEYS
    for name, valid in (("data", data_keys), ("sae", keys(SharedSAE)), ("sweep", keys(SweepSettings))):
        bad = sorted(set(raw.get(name, {})) - valid)
        if bad:
            raise ConfigError(f"{where}: unknown [{name}] key(s) {bad}; valid: {sorted(valid)}")
    data = dict(raw.get("data", {}))
    if "cache" not in data:
        for k in ("model", "hook", "corpus"):
            if k not in data:
                raise ConfigError(f"{where}: [data] needs {k!r} (or 'cache', the path of an existing activation cache)")
    train = dict(raw.get("train", {}))
    _check_train(train, where)
    grid = raw.get("grid")
    if not isinstance(grid, list) or not grid:
        raise ConfigError(f"{where}: needs at least one [[grid]] block")
    sweep = section(SweepSettings, dict(raw.get("sweep", {})), where, "sweep")
    if sweep.checkpoint_every is not None:
        train.setdefault("checkpoint_every", sweep.checkpoint_every)
    caches = section(SweepCaches, {k: v for k, v in data.items() if k in SWEEP_DATA_KEYS}, where, "data")
    # DataSpec and TrainConfig values are checked when the sweep runs (their device may be another machine's)
    spec = None if "cache" in data else DataSpec(**{k: v for k, v in data.items() if k not in SWEEP_DATA_KEYS})
    cfg = SweepConfig(name=str(raw.get("name") or Path(source or "sweep").stem),
                      description=str(raw.get("description", "")), data=spec, caches=caches,
                      sae=section(SharedSAE, dict(raw.get("sae", {})), where, "sae"),
                      train=TrainConfig(**train_config_kwargs(train)), sweep=sweep,
                      grid=[dict(b) for b in grid], source=source, raw=copy.deepcopy(raw))
    cfg.members()  # validates the grid
    return cfg


def _check_train(train: dict[str, Any], where: str) -> None:
    valid = keys(TrainConfig) | _TRAIN_EXTRA
    bad = sorted(set(train) - valid)
    if bad:
        raise ConfigError(f"{where}: unknown [train] key(s) {bad}; valid: {sorted(valid)}")
    if "tokens" in train and "steps" in train:
        raise ConfigError(f"{where}: [train] sets both 'tokens' and 'steps'; set one")
    if "warmup_fraction" in train:
        f = train["warmup_fraction"]
        if "warmup_steps" in train:
            raise ConfigError(f"{where}: [train] sets both 'warmup_steps' and 'warmup_fraction'; set one")
        if not isinstance(f, (int, float)) or isinstance(f, bool) or not 0 <= f < 1:
            raise ConfigError(f"{where}: [train] warmup_fraction must be a number in [0, 1), got {f!r}")


def budget_configs(cfg: SweepConfig) -> list[tuple[str, SweepConfig]]:
    """The sweeps of a config with ``[sweep] budgets = [tokens, ...]``: one per budget, each with
    ``train.tokens`` set to it, named ``tokens=<budget>`` (the sub-directory it runs in). A config
    without budgets is one sweep, named ''."""
    if not cfg.sweep.budgets:
        return [("", cfg)]
    out = []
    for b in cfg.sweep.budgets:
        raw = copy.deepcopy(cfg.raw)
        raw["sweep"] = {k: v for k, v in raw.get("sweep", {}).items() if k != "budgets"}
        raw["train"] = {**{k: v for k, v in raw.get("train", {}).items() if k != "steps"}, "tokens": b}
        out.append((f"tokens={b}", parse_config({**raw, "name": cfg.name, "description": cfg.description},
                                                cfg.source)))
    return out


def train_config_kwargs(train: dict[str, Any]) -> dict[str, Any]:
    """[train] section → TrainConfig keyword arguments (``tokens`` becomes ``steps``)."""
    kw = dict(train)
    tokens = kw.pop("tokens", None)
    if tokens is not None:
        bs = int(kw.get("batch_size", TrainConfig.batch_size))
        kw["steps"] = max(1, math.ceil(int(tokens) / bs))
    frac = kw.pop("warmup_fraction", None)
    if frac is not None and "steps" in kw:
        kw["warmup_steps"] = int(round(float(frac) * kw["steps"]))
    if "adam_betas" in kw:
        kw["adam_betas"] = tuple(kw["adam_betas"])
    return kw


# ---- grid expansion ---------------------------------------------------------------------------
def expand_block(block: dict[str, Any]) -> list[SweepMember]:
    """Members of one [[grid]] block: architecture × list-valued hparams × variants.

    Reserved keys: ``study`` (report labels), ``variants`` (list of alternative hparam tables) and
    ``group`` (an integer: members train in passes by ascending group, so a sweep can put its most
    important members first; a pass is further capped by ``max_members_per_pass``)."""
    block = dict(block)
    group = block.pop("group", 0)
    if not isinstance(group, int) or isinstance(group, bool):
        raise ConfigError(f"grid block 'group' must be an integer, got {group!r}")
    studies = block.pop("study", ["pareto"])
    studies = [studies] if isinstance(studies, str) else list(studies)
    arch_spec = block.pop("architecture", None)
    if arch_spec is None:
        raise ConfigError(f"grid block {block} has no 'architecture'")
    archs = arch_spec if isinstance(arch_spec, list) else [arch_spec]
    variants = block.pop("variants", [{}])
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ConfigError(f"grid block 'variants' must be a list of tables, got {variants!r}")
    axes = [(k, v if isinstance(v, list) else [v]) for k, v in sorted(block.items())]
    for k, vals in axes:
        if not vals:
            raise ConfigError(f"grid block axis {k!r} is an empty list")
    out: list[SweepMember] = []
    for arch in archs:
        if arch not in architectures():
            raise ConfigError(f"grid block: unknown architecture {arch!r}; registered: {', '.join(architectures())}")
        defaults = hyperparameters(arch)
        # a sequence-valued hyperparameter (prefix_fractions) given as one flat list is that one value,
        # not an axis of scalars (which it cannot take); a list of lists is an axis of its values
        arch_axes = [(k, [vals] if isinstance(defaults.get(k), tuple) and not any(isinstance(v, list) for v in vals)
                      else vals) for k, vals in axes]
        for combo in itertools.product(*[vals for _, vals in arch_axes]):
            base = dict(zip([k for k, _ in arch_axes], combo))
            for var in variants:
                hp = {**base, **var}
                unknown = sorted(set(hp) - set(defaults))
                if unknown:
                    raise ConfigError(f"unknown hyperparameter(s) {unknown} for architecture {arch!r}; "
                                      f"valid: {', '.join(sorted(defaults))}")
                # validate values now (k ≤ d_sae is checked at build time)
                cfg_cls = get_class(arch).config_class
                try:
                    cfg_cls(**{k: v for k, v in hp.items() if k != "seed"})  # validates
                except TypeError as e:
                    raise ConfigError(f"bad hyperparameters {hp} for {arch!r}: {e}") from None
                out.append(SweepMember(architecture=arch, hparams=canonical_hparams(arch, hp), studies=list(studies),
                                       group=group))
    return out


def canonical_hparams(arch: str, hp: dict[str, Any]) -> dict[str, Any]:
    """Drop hyperparameters equal to the architecture's default (the sparsity one is kept)."""
    defaults = hyperparameters(arch)
    out = {}
    for k in sorted(hp):
        v = hp[k]
        if isinstance(defaults.get(k), float) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if isinstance(defaults.get(k), tuple) and isinstance(v, list):  # TOML has lists, configs tuples
            v = tuple(v)
        if k == _primary(arch) or v != defaults.get(k):
            out[k] = v
    return out


def expand_grid(blocks: list[dict[str, Any]]) -> list[SweepMember]:
    """All members of all blocks, deduplicated by (architecture, effective hparams), in first-seen
    order; a member listed by several blocks carries all their study labels and the lowest group."""
    seen: dict[str, SweepMember] = {}
    for block in blocks:
        for m in expand_block(block):
            if m.name in seen:
                for s in m.studies:
                    if s not in seen[m.name].studies:
                        seen[m.name].studies.append(s)
                seen[m.name].group = min(seen[m.name].group, m.group)
            else:
                seen[m.name] = m
    return list(seen.values())


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt(x) for x in v)
    return str(v)


def _primary(arch: str) -> str:
    """The architecture's sparsity hyperparameter (its module's ``sparsity``): always in the name."""
    return get_class(arch).sparsity[0]


def member_name(arch: str, hparams: dict[str, Any]) -> str:
    """Run directory name: ``prob_topk-k=8-lambda_mag=0`` (sparsity hparam first, then sorted)."""
    primary = _primary(arch)
    keys = [k for k in (primary,) if k in hparams] + sorted(k for k in hparams if k != primary)
    parts = [arch] + [f"{k}={_fmt(hparams[k])}" for k in keys]
    return "-".join(parts).replace("/", "_")
