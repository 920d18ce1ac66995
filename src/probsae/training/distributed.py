"""torchrun / torch.distributed glue for ``probsae.train`` (see docs/DISTRIBUTED.md).

``setup(cfg)`` returns a ``DistContext``. In a single process it is inert (every method is the
identity or a no-op), so the training loop calls it unconditionally. Under ``torchrun``
(``WORLD_SIZE > 1``) or when the caller already initialised ``torch.distributed`` it joins or
creates the process group (gloo on CPU, nccl on CUDA) and implements one of two modes:

``data``     data-parallel. Every rank reads the same GLOBAL batch (``TrainConfig.batch_size``)
             and keeps the rows ``[r·b, (r+1)·b)``, b = batch_size / world_size. After backward
             the gradients are averaged over ranks (one flat all-reduce per dtype), *before*
             gradient clipping and Adam, so each rank applies the update a single process would
             have applied to the whole batch. Liveness (the fired mask), floating-point buffers
             (e.g. BatchTopK's threshold) and the logged losses/metrics are reduced too, so every
             rank holds the same SAE. Rank 0 writes logs, checkpoints and saved SAEs.
``members``  the SAEs of a sweep are dealt round-robin to the ranks; every rank reads the same
             batches and trains only its own SAEs, with no communication while training. Each run
             directory is written by its owner only. At the end the trained weights and the
             histories are broadcast so that every rank returns the same trained SAEs.

Failure: any exception inside training makes the failing rank print which rank failed, tear the
process group down and re-raise; the other ranks' pending collectives then fail (or time out
after ``TrainConfig.dist_timeout_s``) with a ``DistributedError`` that says a peer failed, so the
job exits non-zero instead of hanging.
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback
import warnings
from datetime import timedelta

import torch
from torch import Tensor

from ..devices import resolve_device
from ..errors import ConfigError, InputError
from ..reconstruction import ReconstructionStats

_SEED_STRIDE = 0x9E3779B97F4A7C15  # per-rank RNG seed offset (rank 0 keeps cfg.seed)


class DistributedError(RuntimeError):
    """A collective failed: another rank most likely raised, was killed or timed out."""


def _dist():
    import torch.distributed as dist

    return dist


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


class DistContext:
    """The process's place in a (possibly trivial) distributed job; see the module docstring."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, mode: str = "single",
                 device: torch.device | None = None, owns_group: bool = False):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.mode = mode if world_size > 1 else "single"
        self.device = device
        self.owns_group = owns_group

    # ---- roles ----------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def data_parallel(self) -> bool:
        return self.mode == "data"

    @property
    def members_mode(self) -> bool:
        return self.mode == "members"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def data_world(self) -> int:
        """How many ranks share one global batch (world size in data mode, else 1)."""
        return self.world_size if self.data_parallel else 1

    def owner_of(self, index: int) -> int:
        """The rank that trains SAE number ``index`` (members mode: round-robin)."""
        return index % self.world_size if self.members_mode else self.rank

    def owns(self, index: int) -> bool:
        return self.owner_of(index) == self.rank

    def writes(self, index: int) -> bool:
        """Whether this rank writes SAE ``index``'s run directory (log, checkpoints, saved SAE)."""
        if self.data_parallel:
            return self.is_main
        return self.owns(index)

    def _tag(self) -> str:
        return f"[probsae rank {self.rank}/{self.world_size}]"

    # ---- setup ----------------------------------------------------------------------------------
    def seed_rng(self, seed: int) -> None:
        """Data mode: give each rank its own RNG stream (stochastic gates draw noise for their own
        rows); rank 0 keeps ``seed`` so a 1-rank job equals a single process."""
        if self.data_parallel and self.rank > 0:
            torch.manual_seed((int(seed) + self.rank * _SEED_STRIDE) % 2**64)

    def attach(self, member, index: int) -> None:
        """Give a Member its distributed role: gradient/metric sync in data mode, and a silent
        logger on ranks that do not write its run directory (set before resuming)."""
        from .logger import JsonlLogger

        member.dist = self if self.data_parallel else None
        member.writer = self.writes(index)
        if not member.writer:
            member.logger = JsonlLogger(None)

    def check_resume(self, members) -> None:
        """Data mode: every rank must resume every SAE from the same step (run directories must
        live on a filesystem all ranks share)."""
        if not self.data_parallel:
            return
        mine = [int(m.start_step) for m in members]
        every = self._all_gather_object(mine)
        if any(s != every[0] for s in every):
            detail = "; ".join(f"rank {r}: {s}" for r, s in enumerate(every))
            raise ConfigError(
                "ranks disagree about the checkpoints to resume from "
                f"({detail}): run directories must be on a filesystem every rank shares"
            )

    def check_same_batch(self, batch: Tensor) -> None:
        """Data mode: all ranks must read the same global batches (same data, same seed)."""
        if not self.data_parallel:
            return
        x = batch.detach().double()
        sig = torch.stack([x.sum(), x.pow(2).sum(), torch.tensor(float(x.shape[0]), dtype=torch.float64, device=x.device)])
        sig = sig.to(self._comm_device())
        lo, hi = sig.clone(), sig.clone()
        self._all_reduce(lo, "min")
        self._all_reduce(hi, "max")
        if not torch.allclose(lo, hi, rtol=1e-9, atol=0.0):
            raise InputError(
                "the ranks read different first batches: under torchrun every rank must be given the same "
                "data (same tensor / cache / source and the same seed); each takes its own shard itself"
            )

    # ---- per step -------------------------------------------------------------------------------
    def shard(self, batch: Tensor) -> Tensor:
        """Data mode: this rank's contiguous slice of the global batch."""
        if not self.data_parallel:
            return batch
        n = batch.shape[0]
        if n % self.world_size:
            raise ConfigError(
                f"global batch of {n} rows is not divisible by the world size {self.world_size}; "
                "choose batch_size as a multiple of the number of ranks"
            )
        b = n // self.world_size
        return batch[self.rank * b : (self.rank + 1) * b]

    def sync_gradients(self, params) -> None:
        """Average the gradients over ranks (in place). A parameter with a gradient on any rank
        gets a zero gradient where it has none, so every rank steps the same parameters."""
        if not self.data_parallel:
            return
        params = list(params)
        if not params:
            return
        dev = self._comm_device()
        present = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=dev)
        self._all_reduce(present, "max")
        groups: dict[tuple, list[Tensor]] = {}
        for p, has in zip(params, present.tolist()):
            if not has:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
        for grads in groups.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            self._all_reduce(flat, "sum")
            flat.div_(self.world_size)
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def global_fired(self, fired: Tensor, n_local: int) -> tuple[Tensor, int]:
        """(latents that fired on any rank, tokens of the global batch)."""
        if not self.data_parallel:
            return fired, n_local
        mask = fired.to(torch.int32)
        self._all_reduce(mask, "max")
        return mask.bool().to(fired.device), n_local * self.world_size

    @torch.no_grad()
    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Floating-point buffers that differ across ranks (running statistics such as BatchTopK's
        threshold) are replaced by their mean over ranks; equal ones are left bit-identical."""
        if not self.data_parallel:
            return
        bufs = [b for b in module.buffers() if b.is_floating_point() and b.numel()]
        if not bufs:
            return
        flat = torch.cat([b.reshape(-1).double() for b in bufs]).to(self._comm_device())
        ext = torch.cat([flat, -flat])
        self._all_reduce(ext, "min")
        lo, hi = ext[: flat.numel()], -ext[flat.numel() :]
        differs = lo != hi
        if not bool(differs.any()):
            return
        mean = flat.clone()
        self._all_reduce(mean, "sum")
        mean.div_(self.world_size)
        flat = torch.where(differs, mean, flat)
        offset = 0
        for b in bufs:
            b.copy_(flat[offset : offset + b.numel()].view_as(b).to(b.dtype))
            offset += b.numel()

    def mean_sums(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        """Average the accumulated log values over ranks (union of keys; a missing key counts 0)."""
        if not self.data_parallel:
            return sums
        keys = sorted(set().union(*self._all_gather_object(sorted(sums))))
        if not keys:
            return sums
        vals = torch.stack([torch.as_tensor(sums.get(k, 0.0), dtype=torch.float64).reshape(()).cpu() for k in keys])
        vals = vals.to(self._comm_device())
        self._all_reduce(vals, "sum")
        vals = (vals / self.world_size).cpu()
        return {k: vals[i] for i, k in enumerate(keys)}

    @torch.no_grad()
    def batch_metrics(self, x: Tensor, r: Tensor) -> tuple[float, float]:
        """(MSE per token, explained variance) of the GLOBAL batch from local rows: the
        sufficient statistics Σ‖r−x‖², Σ‖x‖², Σx and n are summed over ranks (float64)."""
        stats = ReconstructionStats.of(x, r)
        if self.data_parallel:
            sums = stats.to_vector().to(self._comm_device())
            self._all_reduce(sums, "sum")
            stats = ReconstructionStats.from_vector(sums.cpu())
        return stats.batch_metrics()

    # ---- checkpoints ----------------------------------------------------------------------------
    def checkpoint_extra(self) -> dict | None:
        """Data mode (a collective: every rank calls it): every rank's RNG state, so a resumed run
        continues each rank's own noise stream."""
        if not self.data_parallel:
            return None
        cuda = torch.cuda.get_rng_state() if (self.device is not None and self.device.type == "cuda") else None
        states = self._all_gather_object((torch.get_rng_state(), cuda))
        return {"rank_rng": states, "world_size": self.world_size}

    def restore_rng(self, extra: dict | None, seed: int, step: int) -> None:
        """After ``checkpoint.restore`` (which loads rank 0's RNG state on every rank)."""
        if not self.data_parallel:
            return
        states = (extra or {}).get("rank_rng")
        if states and len(states) == self.world_size:
            cpu, cuda = states[self.rank]
            torch.set_rng_state(cpu)
            if cuda is not None and self.device is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(cuda)
            return
        if self.rank > 0:
            warnings.warn(
                "resuming with a different number of ranks than the checkpoint was written with: "
                "the ranks' noise streams are re-seeded (the run is still deterministic)", stacklevel=2)
            torch.manual_seed((int(seed) + self.rank * _SEED_STRIDE + step) % 2**64)

    # ---- end of training --------------------------------------------------------------------------
    def finish(self, saes: list, members: list, owned: list[int]) -> list:
        """The TrainHistory of every SAE, in input order. Members mode: broadcasts each SAE's
        trained state and history from its owner, so every rank returns the same results."""
        from .logger import TrainHistory

        if not self.members_mode:
            return [m.history() for m in members]
        mine = {i: m for i, m in zip(owned, members)}
        histories = []
        for i, sae in enumerate(saes):
            src = self.owner_of(i)
            payload = [None]
            if src == self.rank:
                m = mine[i]
                state = {k: v.detach().cpu() for k, v in m.sae.state_dict().items()}
                payload = [(state, m.records)]
            self._broadcast_object(payload, src)
            state, records = payload[0]
            if src != self.rank:
                sae.load_state_dict(state)
                sae.eval()
            histories.append(TrainHistory(list(records)))
        return histories

    # ---- failure ----------------------------------------------------------------------------------
    def abort(self, exc: BaseException) -> None:
        """Called with the exception that ends training on this rank: say so, and tear the process
        group down so that peers blocked in a collective fail quickly instead of hanging."""
        if not self.active:
            return
        if isinstance(exc, DistributedError):
            print(f"{self._tag()} stopping: {exc}", file=sys.stderr, flush=True)
        else:
            # the traceback first: tearing gloo down while a peer does the same can abort the process
            tb = "".join(traceback.format_exception(exc)).rstrip()
            print(f"{self._tag()} training failed on this rank: {type(exc).__name__}: {exc}\n{tb}\n"
                  f"{self._tag()} shutting down the process group so the other ranks stop",
                  file=sys.stderr, flush=True)
        dist = _dist()
        try:
            if dist.is_initialized():
                dist.destroy_process_group()
        except Exception:  # noqa: BLE001  (best effort while failing)
            pass

    # ---- collectives with clear errors ----------------------------------------------------------
    def _comm_device(self) -> torch.device:
        dist = _dist()
        if dist.is_initialized() and dist.get_backend() == "nccl":
            return self.device if self.device is not None and self.device.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _fail(self, what: str, e: Exception) -> DistributedError:
        return DistributedError(
            f"rank {self.rank}: {what} failed — another rank most likely raised an error, was killed or "
            f"stopped answering for dist_timeout_s (see the other ranks' errors): {type(e).__name__}: {e}"
        )

    def _all_reduce(self, t: Tensor, op: str) -> None:
        dist = _dist()
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        dev = t.device
        comm = self._comm_device()
        buf = t if dev == comm else t.to(comm)
        try:
            dist.all_reduce(buf, op=ops[op])
        except Exception as e:  # noqa: BLE001  (gloo/nccl raise RuntimeError subclasses)
            raise self._fail("all_reduce", e) from e
        if buf is not t:
            t.copy_(buf.to(dev))

    def _all_gather_object(self, obj) -> list:
        dist = _dist()
        out = [None] * self.world_size
        try:
            dist.all_gather_object(out, obj)
        except Exception as e:  # noqa: BLE001
            raise self._fail("all_gather_object", e) from e
        return out

    def _broadcast_object(self, payload: list, src: int) -> None:
        dist = _dist()
        try:
            dist.broadcast_object_list(payload, src=src)
        except Exception as e:  # noqa: BLE001
            raise self._fail("broadcast", e) from e


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
    dist = _dist()
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
        atexit.register(_destroy_at_exit)
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), local_rank, cfg.distribute, device, owns)
    return ctx


def _destroy_at_exit() -> None:
    dist = _dist()
    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001
        pass


def rank() -> int:
    """This process's rank: torch.distributed's when initialised, else torchrun's RANK, else 0.
    For callers of ``train`` (CLIs, sweeps) that write files of their own: do it on rank 0 only."""
    if torch.distributed.is_available() and _dist().is_initialized():
        return _dist().get_rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def is_main_process() -> bool:
    """True on rank 0 (and in a single process)."""
    return rank() == 0


def main_first(ctx: DistContext, fn):
    """Run ``fn`` on the main rank first, then (after a barrier) on the others: for work with
    side effects on shared disk such as extracting an activation cache, which the other ranks
    then only open. In a single process it is just ``fn()``."""
    if not ctx.active:
        return fn()
    dist = _dist()
    if not ctx.is_main:
        dist.barrier()
    out = fn()
    if ctx.is_main:
        dist.barrier()
    return out
