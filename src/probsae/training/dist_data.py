"""Data-parallel mode of a torchrun job (``TrainConfig.distribute='data'``; see distributed.py).

Every rank reads the same GLOBAL batch and keeps the rows ``[r·b, (r+1)·b)``; gradients, liveness,
floating-point buffers and the logged values are reduced over ranks, so every rank holds the same
SAE. Rank 0 writes logs, checkpoints and saved SAEs.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ..errors import ConfigError, InputError
from ..reconstruction import ReconstructionStats
from .dist_group import ProcessGroupContext

_SEED_STRIDE = 0x9E3779B97F4A7C15  # per-rank RNG seed offset (rank 0 keeps cfg.seed)


class DataParallel(ProcessGroupContext):
    """One rank of a data-parallel job."""

    mode = "data"

    # ---- roles ----------------------------------------------------------------------------------
    @property
    def data_parallel(self) -> bool:
        return True

    @property
    def data_world(self) -> int:
        return self.world_size

    def writes(self, index: int) -> bool:
        return self.is_main

    def member_sync(self) -> DataParallel:
        return self

    # ---- setup ----------------------------------------------------------------------------------
    def seed_rng(self, seed: int) -> None:
        """Each rank its own RNG stream (stochastic gates draw noise for their own rows); rank 0
        keeps ``seed`` so a 1-rank job equals a single process."""
        if self.rank > 0:
            torch.manual_seed((int(seed) + self.rank * _SEED_STRIDE) % 2**64)

    def check_resume(self, members) -> None:
        """Every rank must resume every SAE from the same step (run directories must live on a
        filesystem all ranks share)."""
        mine = [int(m.start_step) for m in members]
        every = self._all_gather_object(mine)
        if any(s != every[0] for s in every):
            detail = "; ".join(f"rank {r}: {s}" for r, s in enumerate(every))
            raise ConfigError(
                "ranks disagree about the checkpoints to resume from "
                f"({detail}): run directories must be on a filesystem every rank shares"
            )

    def check_same_batch(self, batch: Tensor) -> None:
        """All ranks must read the same global batches (same data, same seed)."""
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
        """This rank's contiguous slice of the global batch."""
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
            _scatter(flat, grads)

    def global_fired(self, fired: Tensor, n_local: int) -> tuple[Tensor, int]:
        mask = fired.to(torch.int32)
        self._all_reduce(mask, "max")
        return mask.bool().to(fired.device), n_local * self.world_size

    @torch.no_grad()
    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Floating-point buffers that differ across ranks (running statistics such as a batch-level
        threshold) are replaced by their mean over ranks; equal ones are left bit-identical."""
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
        _scatter(torch.where(differs, mean, flat), bufs)

    def mean_sums(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        """Average the accumulated log values over ranks (union of keys; a missing key counts 0)."""
        keys = sorted(set().union(*self._all_gather_object(sorted(sums))))
        if not keys:
            return sums
        vals = torch.stack([torch.as_tensor(sums.get(k, 0.0), dtype=torch.float64).reshape(()).cpu() for k in keys])
        vals = vals.to(self._comm_device())
        self._all_reduce(vals, "sum")
        vals = (vals / self.world_size).cpu()
        return {k: vals[i] for i, k in enumerate(keys)}

    def batch_metrics(self, x: Tensor, r: Tensor) -> tuple[float, float]:
        """(MSE per token, explained variance) of the GLOBAL batch from local rows: the
        sufficient statistics Σ‖r−x‖², Σ‖x‖², Σx and n are summed over ranks (float64)."""
        sums = ReconstructionStats.of(x, r).to_vector().to(self._comm_device())
        self._all_reduce(sums, "sum")
        return ReconstructionStats.from_vector(sums.cpu()).batch_metrics()

    # ---- checkpoints ----------------------------------------------------------------------------
    def checkpoint_extra(self) -> dict | None:
        """(A collective: every rank calls it.) Every rank's RNG state, so a resumed run continues
        each rank's own noise stream."""
        cuda = torch.cuda.get_rng_state() if (self.device is not None and self.device.type == "cuda") else None
        states = self._all_gather_object((torch.get_rng_state(), cuda))
        return {"rank_rng": states, "world_size": self.world_size}

    def restore_rng(self, extra: dict | None, seed: int, step: int) -> None:
        """After ``checkpoint.restore`` (which loads rank 0's RNG state on every rank)."""
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


def _scatter(flat: Tensor, targets: list[Tensor]) -> None:
    """Copy consecutive pieces of ``flat`` into ``targets`` (in place, each in its own dtype)."""
    offset = 0
    for t in targets:
        t.copy_(flat[offset : offset + t.numel()].view_as(t).to(t.dtype))
        offset += t.numel()
