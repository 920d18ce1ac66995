"""The one training loop: steps one or many SAEs on the same batches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from ..errors import ConfigError
from .batches import BatchSource
from .config import TrainConfig
from .logger import TrainHistory
from .member import Member


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(saes, data, cfg: TrainConfig | None = None, *, run_dirs: Sequence[str | os.PathLike] | None = None):
    """Train one SAE or a list of SAEs on ``data``.

    ``data``: a (N, d_in) tensor of raw activations (shuffled each epoch), an activation cache
    (anything with ``iter_batches``) or an iterable of (B, d_in) batches. Several SAEs are stepped
    on the very same batches, so the data is read once for all of them.

    ``run_dirs`` (one per SAE): each gets ``log.jsonl``, a resumable ``checkpoint.pt`` and, at the
    end, the trained SAE (``sae.safetensors`` + ``config.json``). If a run directory already holds
    a checkpoint, training resumes from it. Returns a ``TrainHistory`` (a list for a list input).
    """
    cfg = cfg or TrainConfig()
    cfg.validate()
    single = not isinstance(saes, (list, tuple))
    sae_list = [saes] if single else list(saes)
    if not sae_list:
        raise ConfigError("train() needs at least one SAE")
    if run_dirs is not None and len(run_dirs) != len(sae_list):
        raise ConfigError(f"got {len(run_dirs)} run_dirs for {len(sae_list)} SAEs")
    device = resolve_device(cfg.device)
    source = BatchSource(data, cfg.batch_size, cfg.seed)
    total = cfg.steps or source.default_steps()
    torch.manual_seed(cfg.seed)

    members = [
        Member(sae, cfg, device, Path(run_dirs[i]) if run_dirs else None, cfg.log_path if single else None)
        for i, sae in enumerate(sae_list)
    ]
    fresh = [m for m in members if not m.try_resume()]
    if fresh:
        first = source.peek().to(device)
        for m in fresh:
            m.sae.init_from_data(first, cfg.b_dec_init)
            m.logger.write({"event": "start", "architecture": m.sae.architecture, "sae_config": m.sae.config_dict()["config"],
                            "train_config": cfg.to_dict(), "total_steps": total})
    start = min(m.start_step for m in members)
    for m in members:
        m.sae.train()

    bar = _progress(cfg, total, start, len(members))
    step = start
    try:
        for step, batch in zip(range(start, total), source.batches(start)):
            batch = batch.to(device, non_blocking=True)
            for m in members:
                if step < m.start_step:
                    continue  # this member's checkpoint is ahead: it waits
                info = m.step(batch, step, total)
                last = step + 1 == total
                if (step + 1) % cfg.log_every == 0 or last:
                    rec = m.log(step, info, info["_out"])
                    if bar is not None and m is members[0]:
                        bar.set_postfix(loss=f"{rec['loss']:.4g}", ev=f"{rec['explained_variance']:.3f}",
                                        l0=f"{rec['l0']:.1f}", alive=rec["alive"])
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and not last:
                    m.checkpoint(step + 1)
            if bar is not None:
                bar.update(batch.shape[0])
    finally:
        if bar is not None:
            bar.close()
    for m in members:
        m.sae.eval()
        if m.run_dir is not None:
            m.checkpoint(total)
            m.sae.save(m.run_dir)
    histories: list[TrainHistory] = [m.history() for m in members]
    return histories[0] if single else histories


def _progress(cfg: TrainConfig, total: int, start: int, n_members: int):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    desc = f"train {n_members} SAEs" if n_members > 1 else "train"
    return tqdm(total=total * cfg.batch_size, initial=start * cfg.batch_size, unit="tok", unit_scale=True,
                desc=desc, dynamic_ncols=True, mininterval=1.0)
