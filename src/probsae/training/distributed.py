"""torchrun / torch.distributed glue for ``probsae.train`` (see docs/DISTRIBUTED.md).

``setup(cfg)`` returns a ``DistContext`` (dist_context.py). In a single process it is the inert
``DistContext`` itself (every method is the identity or a no-op), so the training loop calls it
unconditionally. Under ``torchrun`` (``WORLD_SIZE > 1``) or when the caller already initialised
``torch.distributed`` it joins or creates the process group (gloo on CPU, nccl on CUDA) and
returns the context of one of two modes (both ``ProcessGroupContext``s, dist_group.py):

``data``     ``DataParallel`` (dist_data.py). Every rank reads the same GLOBAL batch
             (``TrainConfig.batch_size``) and keeps the rows ``[r·b, (r+1)·b)``, b = batch_size / world_size. After backward
             the gradients are averaged over ranks (one flat all-reduce per dtype), *before*
             gradient clipping and Adam, so each rank applies the update a single process would
             have applied to the whole batch. Liveness (the fired mask), floating-point buffers
             (e.g. a running threshold) and the logged losses/metrics are reduced too, so every
             rank holds the same SAE. Rank 0 writes logs, checkpoints and saved SAEs.
``members``  ``MembersParallel`` (dist_members.py). The SAEs of a sweep are dealt round-robin to
             the ranks; every rank reads the same batches and trains only its own SAEs, with no
             communication while training. Each run directory is written by its owner only. At the
             end the trained weights and the histories are broadcast so that every rank returns
             the same trained SAEs.

Failure: any exception inside training makes the failing rank print which rank failed, tear the
process group down and re-raise; the other ranks' pending collectives then fail (or time out
after ``TrainConfig.dist_timeout_s``) with a ``DistributedError`` that says a peer failed, so the
job exits non-zero instead of hanging.
"""

from __future__ import annotations

import atexit
import os
from datetime import timedelta

import torch

from ..devices import resolve_device
from ..errors import ConfigError
from .dist_context import DistContext, DistributedError
from .dist_data import DataParallel
from .dist_group import destroy_group, torch_dist
from .dist_members import MembersParallel

__all__ = ["DistContext", "DistributedError", "env_world_size", "main_first", "rank", "setup"]

MODES: dict[str, type[DistContext]] = {"data": DataParallel, "members": MembersParallel}
"""The context class of each ``TrainConfig.distribute`` value."""


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup(cfg) -> DistContext:
    """Join (or create) the process group when launched with several processes; inert otherwise.

    Under torchrun with CUDA, ``device='auto'``/``'cuda'`` becomes ``cuda:LOCAL_RANK``; more
    processes per node than visible GPUs is a ConfigError raised before any CUDA call. A process
    group created here is destroyed at interpreter exit; one the caller created is left alone.
    """
    if not torch.distributed.is_available():
        if env_world_size() > 1:
            raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        return DistContext()
    dist = torch_dist()
    initialised = dist.is_initialized()
    world = dist.get_world_size() if initialised else env_world_size()
    if world <= 1:
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg.device, local_rank)  # a clear error, before any CUDA call, if there is no such GPU
    owns = False
    if not initialised:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=float(cfg.dist_timeout_s)))
        except Exception as e:  # noqa: BLE001
            raise DistributedError(
                f"could not initialise the {backend} process group (WORLD_SIZE={world}): {type(e).__name__}: {e}. "
                "Launch with torchrun, which sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT") from e
        owns = True
        atexit.register(destroy_group)
    return MODES[cfg.distribute](dist.get_rank(), dist.get_world_size(), local_rank, device, owns)


def rank() -> int:
    """This process's rank: torch.distributed's when initialised, else torchrun's RANK, else 0.
    For callers of ``train`` (CLIs, sweeps) that write files of their own: do it on rank 0 only."""
    if torch.distributed.is_available() and torch_dist().is_initialized():
        return torch_dist().get_rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def main_first(ctx: DistContext, fn):
    """Run ``fn`` on the main rank first, then (after a barrier) on the others: for work with
    side effects on shared disk such as extracting an activation cache, which the other ranks
    then only open. In a single process it is just ``fn()``."""
    if not ctx.active:
        return fn()
    dist = torch_dist()
    if not ctx.is_main:
        dist.barrier()
    out = fn()
    if ctx.is_main:
        dist.barrier()
    return out
