"""The interface of a process's place in a training job, and its trivial case: one process.

``DistContext`` itself is the single-process context (every method is the identity or a no-op), so
the training loop calls it unconditionally. The two torchrun modes subclass it through
``ProcessGroupContext`` (``dist_group.py``): ``DataParallel`` (``dist_data.py``) and
``MembersParallel`` (``dist_members.py``); ``distributed.setup`` picks one (see distributed.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..reconstruction import ReconstructionStats


class DistributedError(RuntimeError):
    """A collective failed: another rank most likely raised, was killed or timed out."""


class DistContext:
    """One process, no process group: the interface every mode implements, each method inert."""

    mode = "single"

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0,
                 device: torch.device | None = None, owns_group: bool = False):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device = device
        self.owns_group = owns_group

    # ---- roles ----------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def data_parallel(self) -> bool:
        return False

    @property
    def members_mode(self) -> bool:
        return False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def data_world(self) -> int:
        """How many ranks share one global batch (world size in data mode, else 1)."""
        return 1

    def owner_of(self, index: int) -> int:
        """The rank that trains SAE number ``index``."""
        return self.rank

    def owns(self, index: int) -> bool:
        return self.owner_of(index) == self.rank

    def writes(self, index: int) -> bool:
        """Whether this rank writes SAE ``index``'s run directory (log, checkpoints, saved SAE)."""
        return self.owns(index)

    def member_sync(self) -> DistContext | None:
        """What a Member is built with as its ``dist``: the context that syncs its gradients and
        metrics (data mode), else None."""
        return None

    # ---- setup ----------------------------------------------------------------------------------
    def seed_rng(self, seed: int) -> None:
        """Give this rank its own RNG stream where the mode needs one."""

    def check_resume(self, members) -> None:
        """Check that the ranks agree about the checkpoints the members resumed from."""

    def check_same_batch(self, batch: Tensor) -> None:
        """Check that every rank read the same global batch."""

    # ---- per step -------------------------------------------------------------------------------
    def shard(self, batch: Tensor) -> Tensor:
        """This rank's rows of the global batch."""
        return batch

    def sync_gradients(self, params) -> None:
        """Average the gradients over ranks (in place)."""

    def global_fired(self, fired: Tensor, n_local: int) -> tuple[Tensor, int]:
        """(latents that fired on any rank, tokens of the global batch)."""
        return fired, n_local

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Make floating-point buffers agree over ranks."""

    def mean_sums(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        """The accumulated log values averaged over ranks."""
        return sums

    def batch_metrics(self, x: Tensor, r: Tensor) -> tuple[float, float]:
        """(MSE per token, explained variance) of the batch."""
        return ReconstructionStats.of(x, r).batch_metrics()

    # ---- checkpoints ----------------------------------------------------------------------------
    def checkpoint_extra(self) -> dict | None:
        """What a checkpoint stores for the ranks (a collective where there are several)."""
        return None

    def restore_rng(self, extra: dict | None, seed: int, step: int) -> None:
        """After ``checkpoint.restore``: this rank's RNG state from ``checkpoint_extra``'s dict."""

    # ---- end of training --------------------------------------------------------------------------
    def finish(self, saes: list, members: list, owned: list[int]) -> list:
        """The TrainHistory of every SAE, in input order."""
        return [m.history() for m in members]

    # ---- failure ----------------------------------------------------------------------------------
    def abort(self, exc: BaseException) -> None:
        """Called with the exception that ends training on this rank."""
