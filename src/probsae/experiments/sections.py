"""The typed sections of a sweep config (``presets.parse_config`` builds them): the [data] keys of
the sweep itself (``SweepCaches``), [sae] (``SharedSAE``) and [sweep] (``SweepSettings``). [data]
is otherwise a ``probsae.data.prepare.DataSpec`` and [train] a ``probsae.TrainConfig``; every
default lives in one of these dataclasses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, ProbSAEError
from ..runs.spec import RunSpec
from ..saes.config import check_seed
from ..validators import whole


@dataclass
class SweepCaches:
    """The [data] keys of the sweep itself; every other [data] key is a ``DataSpec`` field."""

    cache: str | None = None
    """Path of an existing training activation cache to train on instead of extracting one (then
    the DataSpec keys are not needed)."""
    eval_cache: str | None = None
    """Path of an existing held-out cache (with ``cache``); None: the last 10 % of ``cache``'s shards."""
    cache_dir: str = RunSpec.cache_dir
    """Root folder of the extracted activation caches, shared with ``probsae train``/``probsae cache``."""

    def validate(self) -> None:
        for name in ("cache", "eval_cache", "cache_dir"):
            v = getattr(self, name)
            if not (v is None and name != "cache_dir") and not isinstance(v, str):
                raise ConfigError(f"{name} must be a path (a string), got {v!r}")


@dataclass
class SharedSAE:
    """[sae]: the size and the settings every member shares (the grid's hyperparameters override them)."""

    d_sae: int | None = None
    """Number of latents (overrides ``expansion``)."""
    expansion: int = RunSpec.expansion
    """d_sae = expansion × d_in unless d_sae is given."""
    normalize: str | None = None
    """Input normalisation of every member (an SAE config field); None: each architecture's default."""
    seed: int | None = None
    """Initialisation seed of every member (an SAE config field); None: each architecture's default."""

    def __post_init__(self) -> None:
        if isinstance(self.expansion, float) and self.expansion.is_integer():
            self.expansion = int(self.expansion)  # as the dict-based loader read it (int(expansion))

    def shared(self) -> dict[str, Any]:
        """The members' shared hyperparameters (only those the config sets)."""
        return {k: getattr(self, k) for k in ("normalize", "seed") if getattr(self, k) is not None}

    def validate(self) -> None:
        if self.d_sae is not None:
            whole("d_sae", self.d_sae, 1, "a positive integer")
        whole("expansion", self.expansion, 1)
        if self.seed is not None:
            whole("seed", self.seed, None, "an integer")
            check_seed(self.seed)


@dataclass
class SweepSettings:
    """[sweep]: how the sweep runs its members (none of it changes what a member is)."""

    checkpoint_every: int | None = None
    """Members' checkpoint interval in steps, what a killed sweep can lose (as [train]
    checkpoint_every, which wins when both are set); None: ``TrainConfig.checkpoint_every``."""
    eval_batch_size: int = 4096
    """Held-out tokens per forward when each member is evaluated."""
    max_members_per_pass: int | None = None
    """Train at most this many SAEs at once (memory); the rest in later passes on the same batches.
    None: all in one pass (``--max-members-per-pass`` overrides it)."""
    budgets: list[int] | None = None
    """Token budgets: one sweep per budget, each with [train] tokens set to it, in OUT/tokens=B.
    None: one sweep."""
    downstream_tokens: int | None = None
    """Causal LMs: held-out next-token positions for each member's CE/KL with the SAE spliced in
    (None: the default of ``probsae eval``; 0: skip)."""
    downstream_members_per_pass: int = 12
    """SAEs sharing each clean and zero-ablation forward of the CE/KL measurement."""

    def validate(self) -> None:
        if self.checkpoint_every is not None:
            whole("checkpoint_every", self.checkpoint_every, 0, "an integer ≥ 0 (0: only at the end)")
        whole("eval_batch_size", self.eval_batch_size, 1)
        if self.max_members_per_pass is not None:
            whole("max_members_per_pass", self.max_members_per_pass, 1, "a positive integer")
        if self.budgets is not None and (not isinstance(self.budgets, list) or not all(
                isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in self.budgets)):
            raise ConfigError(f"budgets must be a list of positive token counts, got {self.budgets!r}")
        if self.downstream_tokens is not None:
            whole("downstream_tokens", self.downstream_tokens, 0, "a non-negative integer (0: skip)")
        whole("downstream_members_per_pass", self.downstream_members_per_pass, 1)


def keys(cls: type) -> set[str]:
    """The keys a section of type ``cls`` accepts."""
    return {f.name for f in dataclasses.fields(cls)}


def section(cls: type, raw: dict[str, Any], where: str, name: str):
    """[name] of the config ``where`` as ``cls``, validated; errors name the file and the section."""
    try:
        out = cls(**raw)
        out.validate()
    except ProbSAEError as e:
        raise ConfigError(f"{where}: [{name}] {e}") from None
    return out
