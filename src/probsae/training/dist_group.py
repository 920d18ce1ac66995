"""A rank of a torch.distributed process group: the collectives (with errors that say a peer
failed) and the failure path shared by both torchrun modes (``dist_data.py``, ``dist_members.py``)."""

from __future__ import annotations

import sys
import traceback

import torch
from torch import Tensor

from .dist_context import DistContext, DistributedError


def torch_dist():
    """``torch.distributed`` (imported when first needed)."""
    import torch.distributed as dist

    return dist


class ProcessGroupContext(DistContext):
    """A context with a process group behind it; the modes subclass it."""

    def _tag(self) -> str:
        return f"[probsae rank {self.rank}/{self.world_size}]"

    # ---- failure ----------------------------------------------------------------------------------
    def abort(self, exc: BaseException) -> None:
        """Say why training ends on this rank, and tear the process group down so that peers
        blocked in a collective fail quickly instead of hanging."""
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
        destroy_group()

    # ---- collectives with clear errors ----------------------------------------------------------
    def _comm_device(self) -> torch.device:
        dist = torch_dist()
        if dist.is_initialized() and dist.get_backend() == "nccl":
            return self.device if self.device is not None and self.device.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _fail(self, what: str, e: Exception) -> DistributedError:
        return DistributedError(
            f"rank {self.rank}: {what} failed — another rank most likely raised an error, was killed or "
            f"stopped answering for dist_timeout_s (see the other ranks' errors): {type(e).__name__}: {e}"
        )

    def _all_reduce(self, t: Tensor, op: str) -> None:
        dist = torch_dist()
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
        dist = torch_dist()
        out = [None] * self.world_size
        try:
            dist.all_gather_object(out, obj)
        except Exception as e:  # noqa: BLE001
            raise self._fail("all_gather_object", e) from e
        return out

    def _broadcast_object(self, payload: list, src: int) -> None:
        dist = torch_dist()
        try:
            dist.broadcast_object_list(payload, src=src)
        except Exception as e:  # noqa: BLE001
            raise self._fail("broadcast", e) from e


def destroy_group() -> None:
    """Destroy the default process group if there is one (best effort: also called while failing
    and at interpreter exit)."""
    dist = torch_dist()
    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001  (best effort while failing)
        pass
