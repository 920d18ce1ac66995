"""One SAE being trained: its optimiser, liveness tracker, log and checkpoint directory."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..errors import InputError, SAEFileError, TrainingDivergedError
from ..io import clean_stale_tmp
from ..kernels import KernelPolicy, training_policy
from ..reconstruction import ReconstructionStats
from ..saes.options import ForwardOptions
from ..schedules import lr_factor
from ..tensorfile import nonfinite_names
from .checkpoint import load_checkpoint, restore, save_checkpoint
from .config import TrainConfig
from .liveness import Liveness
from .logger import JsonlLogger, TrainHistory

if TYPE_CHECKING:
    from ..saes.output import SAEOutput

LOG_FILE = "log.jsonl"


@dataclass
class StepResult:
    """What one optimiser step of one SAE returns."""

    out: SAEOutput
    """The SAE's ``SAEOutput`` of the step's batch (``Member.log`` takes its batch metrics from it)."""
    lr: float
    """Learning rate used by the step."""
    schedule: dict[str, float] = field(default_factory=dict)
    """The SAE's per-step schedule values (``on_train_step``, e.g. ``{"beta": …}``)."""

    def scalars(self) -> dict[str, float]:
        """The values a log record carries: ``lr`` and the schedule."""
        return {"lr": self.lr, **self.schedule}


class Member:
    def __init__(self, sae, cfg: TrainConfig, device: torch.device, run_dir: Path | None, log_path: str | None,
                 dist=None, writer: bool = True, *, kernels: KernelPolicy | None = None):
        """``dist``: the DistContext that syncs gradients and metrics (data-parallel mode, see
        distributed.py), else None. ``writer``: False on ranks that must not write this run
        directory (their log is silent). ``kernels``: the kernel policy of the training steps
        (default: the library's, with TrainConfig.precision applied)."""
        self.sae = sae.to(device)
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir else None
        params = [p for p in self.sae.parameters() if p.requires_grad]
        self.params = params
        self.graph = StepGraph.wanted(self.sae, cfg, device)
        # fused=True: one vectorised kernel per parameter instead of ~10 elementwise passes (CPU, CUDA).
        fused = True if device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params) else None
        lr = torch.tensor(cfg.lr, device=device) if self.graph else cfg.lr  # a graph reads lr from the device
        self.optimizer = torch.optim.Adam(params, lr=lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps, fused=fused,
                                          capturable=bool(self.graph))
        self._forward = torch.compile(self.sae) if cfg.compile else self.sae
        self._autocast = cfg.precision == "bf16"
        # How every training forward runs, passed to the SAE per call (never set on it): the kernel
        # policy (``kernels``, else the default; precision='fp32': the exact-fp32 opt-out of the GPU
        # path's bf16 encoder matmul) and the NaN/inf check of the batches.
        self.options = ForwardOptions(policy=training_policy(cfg.precision, kernels or KernelPolicy()),
                                      finite_check=cfg.check_finite)
        # Where the SAE skips its NaN/inf check of each training batch (a host sync per step), each
        # step ands the batch's finiteness into this device flag instead; it is read only once the
        # loss or the weights are found non-finite (where the host syncs anyway), to name the cause.
        self._batches_finite = (torch.ones((), dtype=torch.bool, device=device)
                                if device_checks_batches(cfg, device) else None)
        self.liveness = Liveness(sae.d_sae, cfg.dead_window_tokens, device)
        self.logger = JsonlLogger((self.run_dir / LOG_FILE if self.run_dir else log_path) if writer else None)
        self.start_step = 0
        self.resume_extra: dict = {}  # the ``extra`` dict of the checkpoint resumed from
        self._sums: dict[str, Tensor] = {}
        self._count = 0
        self._t0 = time.perf_counter()
        self.records: list[dict] = []
        self.last_checkpoint: int | None = None  # step of the last checkpoint written or resumed from
        self.last_logged = 0  # step of the last log record
        self.dist = dist
        self.writer = writer
        self.alive_window: int | None = None  # window of the logged 'alive_recent' count (set by train())

    # ---- resume ---------------------------------------------------------------------------
    def try_resume(self) -> bool:
        if self.run_dir and self.writer:
            clean_stale_tmp(self.run_dir)  # temporaries of a killed earlier attempt
        state = load_checkpoint(self.run_dir) if self.run_dir else None
        if state is None:
            return False
        if self.writer and int(state.get("step", 0)) > 0 and not self.logger.read():
            # every run logs its start before its first checkpoint: the log was deleted or emptied
            raise SAEFileError(
                f"{self.run_dir} holds a checkpoint at step {int(state['step'])} but its training log "
                f"{LOG_FILE} is missing or empty, so the run's training figures (loss, tokens seen) are lost. "
                f"Restore {LOG_FILE}, or move {self.run_dir} away to train the run again from step 0")
        self.start_step = restore(state, self.sae, self.optimizer, self.liveness)
        self.resume_extra = dict(state.get("extra") or {})
        if self.dist is not None:
            self.dist.restore_rng(state.get("extra"), self.cfg.seed, self.start_step)
        log_state = state.get("log_state") or {}
        device = self.sae.W_dec.device
        self._sums = {k: v.to(device) for k, v in (log_state.get("sums") or {}).items()}
        self._count = int(log_state.get("count", 0))
        self.last_checkpoint = self.start_step
        self.logger.truncate_after(self.start_step)
        self.records = [r for r in self.logger.read() if "step" in r and not r.get("event")]
        self.last_logged = self.records[-1]["step"] if self.records else 0
        return True

    def checkpoint(self, step: int, extra: dict | None = None) -> None:
        """Write a checkpoint at ``step`` after checking (one host sync) that neither the losses
        since the last log record nor the weights went NaN/inf (``TrainingDivergedError``).
        ``extra`` (JSON-serialisable, e.g. the data stream's position) is stored with it and comes
        back as ``resume_extra`` on resume."""
        self.check_finite(step)
        ranks = self.dist.checkpoint_extra() if self.dist is not None else None  # collective
        # data mode: the ranks' partial sums, averaged (a collective); a resumed rank adds its own to them
        sums = self.dist.mean_sums(dict(self._sums)) if self.dist is not None else self._sums
        if self.run_dir and self.writer:
            save_checkpoint(self.run_dir, step, self.sae, self.optimizer, self.liveness,
                            {**(extra or {}), **(ranks or {})}, log_state={"sums": dict(sums), "count": self._count})
        self.last_checkpoint = step

    # ---- divergence -------------------------------------------------------------------------
    # The per-step loss is summed on the device (``_accumulate``); a NaN/inf loss at any step keeps
    # that sum non-finite, so it doubles as the divergence flag and is read only where the host
    # syncs anyway: at log records and before a checkpoint. Nothing is checked inside a step.
    def check_finite(self, step: int) -> None:
        loss = self._sums.get("loss")
        bad = [] if loss is None or bool(torch.isfinite(loss)) else ["the loss"]
        bad += nonfinite_names(dict(self.sae.named_parameters()))
        if bad:
            self.diverged(step, ", ".join(bad))

    def diverged(self, step: int, what: str) -> None:
        where = (f"the last good checkpoint (step {self.last_checkpoint}) is kept in {self.run_dir}"
                 if self.last_checkpoint is not None and self.run_dir else "no checkpoint was written before it")
        if self._batches_finite is not None and not bool(self._batches_finite):
            raise InputError(
                f"training activations contain NaN/inf values: a batch between steps {self.last_logged} and {step} "
                f"held some, and {what} became NaN/inf; {where}. Fix the data (on CUDA batches are checked on the "
                "device and the result is read at log records and checkpoints; check_finite='always' checks each "
                "batch before its step, at one host sync per step)")
        raise TrainingDivergedError(
            f"training diverged: {what} became NaN/inf between steps {self.last_logged} and {step} "
            f"(lr={self.cfg.lr:g}); {where}. Try a lower learning rate, a longer warm-up or gradient clipping")

    # ---- one step -----------------------------------------------------------------------------
    def step(self, batch: Tensor, step: int, total: int) -> StepResult:
        cfg, sae = self.cfg, self.sae
        sched = sae.on_train_step(step, total, cfg.warmup_steps)
        lr = cfg.lr * lr_factor(step, total, cfg.warmup_steps, cfg.lr_schedule, cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        if self.graph is not None:
            out, gnorm = self.graph.run(self, batch)
        else:
            out, gnorm = self._step(batch, self.liveness.dead_mask())
        fired, n_tokens = out.fired(), batch.shape[0]
        if self.dist is not None:
            self.dist.sync_buffers(sae)
            fired, n_tokens = self.dist.global_fired(fired, n_tokens)
        self.liveness.update(fired, n_tokens)
        self._accumulate(out, gnorm)
        return StepResult(out, lr, sched)

    def _step(self, batch: Tensor, dead_mask: Tensor):
        """Forward, backward, gradient sync/clipping, Adam and constraints: no host sync on GPUs."""
        cfg = self.cfg
        if self._batches_finite is not None:  # on the device, no sync (captured in the CUDA graph too)
            self._batches_finite.logical_and_(torch.isfinite(batch).all())
        with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=self._autocast):
            out = self._forward(batch, dead_mask=dead_mask, options=self._step_options(batch))
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if self.dist is not None:
            self.dist.sync_gradients(self.params)  # average over ranks before clipping/Adam
        if cfg.grad_clip > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        else:
            gnorm = torch.zeros((), device=batch.device)
        self.optimizer.step()
        self.sae.after_optimizer_step()
        return out, gnorm

    def _step_options(self, batch: Tensor) -> ForwardOptions:
        """``options`` for this batch: data-parallel ranks key position-dependent gate noise at their
        shard's global rows (rank × local batch); a single process at row 0."""
        if self.dist is not None and self.dist.data_parallel:
            return replace(self.options, noise_row0=self.dist.rank * batch.shape[0])
        return self.options

    def _accumulate(self, out, gnorm: Tensor) -> None:
        vals = {"loss": out.loss.detach(), "l0": out.l0().detach(), "grad_norm": gnorm.detach()}
        vals.update({f"loss_{k}": v.detach() for k, v in out.losses.items()})
        for k, v in vals.items():
            self._sums[k] = self._sums.get(k, 0) + v.float()
        self._count += 1

    def log(self, step: int, result: StepResult) -> dict:
        """Average of the accumulated values since the last record, plus the batch EV of the
        step's ``result``, liveness, the learning rate and the schedule."""
        out = result.out
        rec = {"step": step + 1, "tokens": self.liveness.tokens_seen}
        if self.dist is not None:
            self._sums = self.dist.mean_sums(self._sums)
        rec.update({k: float(v) / max(1, self._count) for k, v in self._sums.items()})
        x = out.x_normalized.reshape(-1, out.x_normalized.shape[-1])
        r = out.recon_normalized.reshape(-1, x.shape[-1])
        if self.dist is not None:  # global-batch metrics from every rank's rows
            rec["mse"], rec["explained_variance"] = self.dist.batch_metrics(x, r)
        else:
            rec["mse"], rec["explained_variance"] = ReconstructionStats.of(x, r).batch_metrics()
        rec["alive"] = self.liveness.alive()
        rec["dead"] = self.sae.d_sae - rec["alive"]
        if self.alive_window:  # read from the device at log steps only
            rec["alive_recent"] = self.liveness.alive_within(self.alive_window)
            rec["alive_window"] = self.alive_window
        rec.update(result.scalars())
        rec["elapsed_s"] = round(time.perf_counter() - self._t0, 3)
        self._sums, self._count = {}, 0
        self.logger.write(rec)
        if not all(math.isfinite(rec[k]) for k in ("loss", "mse")):
            self.diverged(step + 1, "the loss")
        self.last_logged = step + 1
        self.records.append(rec)
        return rec

    def history(self) -> TrainHistory:
        return TrainHistory(list(self.records))


def device_checks_batches(cfg: TrainConfig, device: torch.device) -> bool:
    """True where training batches are checked for NaN/inf on the device (``check_finite='auto'``
    on CUDA: the SAE's own check, a host sync, runs there only outside training)."""
    return cfg.check_finite == "auto" and device.type == "cuda"


class StepGraph:
    """``TrainConfig.cuda_graph``: the step captured once in a CUDA graph, then replayed.

    The first ``WARMUP`` steps run eagerly on a side stream (CUDA graphs need warmed-up
    allocators, cuBLAS handles and compiled kernels); the next step is captured and every step
    from then on copies its batch and dead mask into static buffers and replays the graph. Inputs
    that change per step live on the device and are written before each replay: the batch, the
    dead mask, Adam's learning rate, and the SAE's buffers set by ``on_train_step`` (β, the noise
    step). Only architectures that declare ``graphable`` are captured, and not when their forward
    ``uses_dead_mask`` (AuxK's dead-latent path)."""

    WARMUP = 3

    def __init__(self):
        self.graph = None
        self.failed = False
        """Set when the capture failed: the step then runs eagerly from there on (with a warning)."""
        self.steps = 0
        self.static: dict = {}
        self.stream = None
        """One side stream for the warm-up and the capture: each new stream would get its own cuBLAS
        workspace from the caching allocator (memory that stays allocated)."""

    @classmethod
    def wanted(cls, sae, cfg: TrainConfig, device: torch.device) -> "StepGraph | None":
        if not cfg.cuda_graph or device.type != "cuda" or not sae.graphable:
            return None
        if sae.uses_dead_mask or cfg.compile:
            return None  # a dead-mask-dependent forward (AuxK) and torch.compile are not captured
        return cls()

    def run(self, member: Member, batch: Tensor):
        dead = member.liveness.dead_mask()
        if member.dist is not None:  # collectives are not captured
            return member._step(batch, dead)
        if self.graph is not None and batch.shape == self.static["batch"].shape:
            self.static["batch"].copy_(batch, non_blocking=True)
            self.static["dead"].copy_(dead, non_blocking=True)
            self.graph.replay()
            return self.static["out"], self.static["gnorm"]
        if self.graph is not None or self.failed:  # another shape (a short last batch), or no graph
            return member._step(batch, dead)
        self.steps += 1
        if self.stream is None:
            self.stream = torch.cuda.Stream()
        stream = self.stream
        stream.wait_stream(torch.cuda.current_stream())
        if self.steps <= self.WARMUP:
            with torch.cuda.stream(stream):
                result = member._step(batch, dead)
            torch.cuda.current_stream().wait_stream(stream)
            return result
        self.static = {"batch": batch.clone(), "dead": dead.clone()}
        member.optimizer.zero_grad(set_to_none=True)
        try:
            self.graph = self._capture(member, stream)
        except RuntimeError as e:  # torch.AcceleratorError subclasses RuntimeError
            # Nothing captured ran, so the weights and Adam's moments are as after the last step;
            # the gradients point into the failed graph's memory pool and are dropped.
            self.graph, self.static = None, {}
            self.failed = True
            member.optimizer.zero_grad(set_to_none=True)
            warnings.warn(f"CUDA graph capture of the training step failed ({str(e).splitlines()[0]}); "
                          "this SAE continues eagerly (TrainConfig.cuda_graph=False avoids the attempt)",
                          RuntimeWarning, stacklevel=2)
            torch.cuda.current_stream().wait_stream(stream)
            return member._step(batch, dead)
        self.graph.replay()
        return self.static["out"], self.static["gnorm"]

    def _capture(self, member: Member, stream) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        # thread_local: a model forward or tokeniser thread feeding a stream may use CUDA meanwhile.
        with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
            self.static["out"], self.static["gnorm"] = member._step(self.static["batch"], self.static["dead"])
        return graph
