"""One SAE being trained: its optimiser, liveness tracker, log and checkpoint directory."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from ..schedules import lr_factor
from .checkpoint import load_checkpoint, restore, save_checkpoint
from .config import TrainConfig
from .liveness import Liveness
from .logger import JsonlLogger, TrainHistory

LOG_FILE = "log.jsonl"


class Member:
    def __init__(self, sae, cfg: TrainConfig, device: torch.device, run_dir: Path | None, log_path: str | None):
        self.sae = sae.to(device)
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir else None
        params = [p for p in self.sae.parameters() if p.requires_grad]
        self.params = params
        # fused=True: one vectorised kernel per parameter instead of ~10 elementwise passes (CPU, CUDA).
        fused = True if device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params) else None
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps, fused=fused)
        self._forward = torch.compile(self.sae) if cfg.compile else self.sae
        self._autocast = cfg.precision == "bf16"
        self.liveness = Liveness(sae.d_sae, cfg.dead_window_tokens, device)
        self.logger = JsonlLogger(self.run_dir / LOG_FILE if self.run_dir else log_path)
        self.start_step = 0
        self._sums: dict[str, Tensor] = {}
        self._count = 0
        self._t0 = time.perf_counter()
        self.records: list[dict] = []
        self.dist = None  # a DistContext in data-parallel mode (set by train(); see distributed.py)
        self.writer = True  # False on ranks that must not write this run directory
        self.alive_window: int | None = None  # window of the logged 'alive_recent' count (set by train())

    # ---- resume ---------------------------------------------------------------------------
    def try_resume(self) -> bool:
        state = load_checkpoint(self.run_dir) if self.run_dir else None
        if state is None:
            return False
        self.start_step = restore(state, self.sae, self.optimizer, self.liveness)
        if self.dist is not None:
            self.dist.restore_rng(state.get("extra"), self.cfg.seed, self.start_step)
        self.logger.truncate_after(self.start_step)
        self.records = [r for r in self.logger.read() if "step" in r and not r.get("event")]
        return True

    def checkpoint(self, step: int) -> None:
        extra = self.dist.checkpoint_extra() if self.dist is not None else None  # collective
        if self.run_dir and self.writer:
            save_checkpoint(self.run_dir, step, self.sae, self.optimizer, self.liveness, extra)

    # ---- one step -----------------------------------------------------------------------------
    def step(self, batch: Tensor, step: int, total: int) -> dict[str, float]:
        cfg, sae = self.cfg, self.sae
        sched = sae.on_train_step(step, total, cfg.warmup_steps)
        lr = cfg.lr * lr_factor(step, total, cfg.warmup_steps, cfg.lr_schedule, cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=self._autocast):
            out = self._forward(batch, dead_mask=self.liveness.dead_mask())
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if self.dist is not None:
            self.dist.sync_gradients(self.params)  # average over ranks before clipping/Adam
        if cfg.grad_clip > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        else:
            gnorm = torch.zeros(())
        self.optimizer.step()
        sae.after_optimizer_step()
        fired, n_tokens = out.fired(), batch.shape[0]
        if self.dist is not None:
            self.dist.sync_buffers(sae)
            fired, n_tokens = self.dist.global_fired(fired, n_tokens)
        self.liveness.update(fired, n_tokens)
        self._accumulate(out, gnorm)
        return {"lr": lr, **sched, "_out": out}

    def _accumulate(self, out, gnorm: Tensor) -> None:
        vals = {"loss": out.loss.detach(), "l0": out.l0().detach(), "grad_norm": gnorm.detach()}
        vals.update({f"loss_{k}": v.detach() for k, v in out.losses.items()})
        for k, v in vals.items():
            self._sums[k] = self._sums.get(k, 0) + v.float()
        self._count += 1

    def log(self, step: int, info: dict, out) -> dict:
        """Average of the accumulated values since the last record, plus batch EV and liveness."""
        rec = {"step": step + 1, "tokens": self.liveness.tokens_seen}
        if self.dist is not None:
            self._sums = self.dist.mean_sums(self._sums)
        rec.update({k: float(v) / max(1, self._count) for k, v in self._sums.items()})
        x = out.x_normalized.reshape(-1, out.x_normalized.shape[-1])
        r = out.recon_normalized.reshape(-1, x.shape[-1])
        if self.dist is not None:  # global-batch metrics from every rank's rows
            rec["mse"], rec["explained_variance"] = self.dist.batch_metrics(x, r)
        else:
            with torch.no_grad():
                sse = (r - x).pow(2).sum()
                tot = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
                rec["mse"] = float(sse) / x.shape[0]
                rec["explained_variance"] = 1.0 - float(sse / tot)
        rec["alive"] = self.liveness.alive()
        rec["dead"] = self.sae.d_sae - rec["alive"]
        if self.alive_window:
            rec["alive_recent"] = self.liveness.alive_within(self.alive_window)
            rec["alive_window"] = self.alive_window
        rec.update({k: v for k, v in info.items() if not k.startswith("_")})
        rec["elapsed_s"] = round(time.perf_counter() - self._t0, 3)
        self._sums, self._count = {}, 0
        self.logger.write(rec)
        self.records.append(rec)
        return rec

    def history(self) -> TrainHistory:
        return TrainHistory(list(self.records))
