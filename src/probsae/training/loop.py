"""The one training loop: steps one or many SAEs on the same batches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..devices import deterministic_mode, resolve_device
from ..errors import ConfigError
from ..kernels import KernelPolicy
from .batches import TrainingBatches, batch_rows, bind_hooks, map_batch, pick
from . import distributed, wandb_logger
from .config import TrainConfig
from .display import TrainProgress
from .logger import TrainHistory
from .member import Member


def train(saes, data, cfg: TrainConfig | None = None, *, run_dirs: Sequence[str | os.PathLike] | None = None,
          hooks: Sequence[str | None] | str | None = None,
          on_checkpoint: Callable[[int, TrainHistory], None] | None = None, kernels: KernelPolicy | None = None):
    """Train one SAE or a list of SAEs on ``data``.

    ``data``: a (N, d_in) tensor of raw activations (shuffled each epoch), an activation cache
    (anything with ``iter_batches``), an iterable of (B, d_in) batches, or an iterable of dicts
    ``{hook: (B, d_hook) batch}`` (one forward of a model feeding several hook points, e.g.
    :class:`probsae.data.ModelStream`). Several SAEs are stepped on the very same batches, so the
    data is read (or the model run) once for all of them.

    ``hooks`` binds each SAE to a key of dict batches (one per SAE, or one string for all); it
    may be left out when the dicts have a single key. Tensors on any device are accepted: each
    batch is moved to the training device.

    Devices: each SAE is moved to the training device (``cfg.device``; under torchrun
    ``cuda:LOCAL_RANK``) **in place** with ``nn.Module.to`` and stays there, so after ``train``
    returns its parameters live on that device; the returned histories hold Python numbers.

    ``run_dirs`` (one per SAE): each gets ``log.jsonl``, a resumable ``checkpoint.safetensors`` and, at the
    end, the trained SAE (``sae.safetensors`` + ``config.json``). If a run directory already holds
    a checkpoint, training resumes from it. A data source with ``stream_state()`` and
    ``iter_from(state)`` (a model stream) records its position in each checkpoint and restarts
    there on resume instead of replaying every earlier batch. Returns a ``TrainHistory`` (a list
    for a list input).

    ``cfg.deterministic`` runs the whole call in :func:`probsae.devices.deterministic_mode`.

    Under ``torchrun`` (WORLD_SIZE > 1) the same call trains in parallel (``cfg.distribute``:
    'data' shards every global batch over the ranks and averages gradients; 'members' spreads the
    SAEs over the ranks); only the writing rank touches the run directories. See docs/DISTRIBUTED.md.

    ``on_checkpoint(i, history)`` is called on the writing rank after each periodic checkpoint of
    SAE ``i`` (``probsae train`` redraws ``training.png`` there).

    ``kernels``: the kernel policy of the training steps (``probsae.kernels.KernelPolicy``; None:
    the default), with ``cfg.precision='fp32'`` forcing its fp32 encoder (``training_policy``).
    """
    cfg = cfg or TrainConfig()
    cfg.validate()
    with deterministic_mode(cfg.deterministic):
        return _train(saes, data, cfg, run_dirs, hooks, on_checkpoint, kernels)


def _train(saes, data, cfg: TrainConfig, run_dirs, hooks, on_checkpoint, kernels=None):
    single = not isinstance(saes, (list, tuple))
    sae_list = [saes] if single else list(saes)
    if not sae_list:
        raise ConfigError("train() needs at least one SAE")
    if run_dirs is not None and len(run_dirs) != len(sae_list):
        raise ConfigError(f"got {len(run_dirs)} run_dirs for {len(sae_list)} SAEs")
    keys = bind_hooks(hooks, len(sae_list))
    wandb_logger.check_available(cfg)
    dist = distributed.setup(cfg)  # inert in a single process; torchrun: data/members parallel
    device = dist.device or resolve_device(cfg.device)
    source = TrainingBatches(data, cfg.batch_size, cfg.seed)
    total = cfg.steps or source.default_steps()
    torch.manual_seed(cfg.seed)
    dist.seed_rng(cfg.seed)

    owned = [i for i in range(len(sae_list)) if dist.owns(i)]
    members = [
        Member(sae_list[i], cfg, device, Path(run_dirs[i]) if run_dirs else None, cfg.log_path if single else None,
               dist=dist.member_sync(), writer=dist.writes(i), kernels=kernels)
        for i in owned
    ]
    mkeys = [keys[i] for i in owned]
    fresh = [m for m in members if not m.try_resume()]
    dist.check_resume(members)
    if fresh:
        first = map_batch(lambda t: t.to(device), source.peek())
        map_batch(dist.check_same_batch, first)
        for m, key in zip(members, mkeys):
            if m not in fresh:
                continue
            m.sae.init_from_data(pick(first, key), cfg.b_dec_init, m.options.finite_check)
            if m.writer:
                m.logger.reset()  # a run killed before its first checkpoint restarts from step 0
            m.logger.write({"event": "start", "architecture": m.sae.architecture, "sae_config": m.sae.config_dict()["config"],
                            "train_config": cfg.to_dict(), "total_steps": total})
    start = min((m.start_step for m in members), default=total)  # a rank may own no SAE
    resume_state = next((m.resume_extra.get("stream") for m in members if m.start_step == start and m.start_step > 0), None)
    for m in members:
        m.sae.train()
    wb = wandb_logger.attach(cfg, members, owned, run_dirs, dist)

    window = cfg.alive_log_window or max(cfg.batch_size, total * cfg.batch_size // 10)
    for m in members:
        m.alive_window = window
    names = [Path(run_dirs[i]).name if run_dirs else f"SAE {i}" for i in owned]
    bar = TrainProgress(cfg.progress, total * cfg.batch_size, start * cfg.batch_size, names) if dist.is_main else None
    step = start
    try:
        for step, batch in zip(range(start, total), source.batches(start, resume_state)):
            # data mode: this rank's rows; host-to-device without blocking the host
            batch = map_batch(lambda t: dist.shard(t).to(device, non_blocking=True), batch)
            last = step + 1 == total
            ckpt = bool(cfg.checkpoint_every) and (step + 1) % cfg.checkpoint_every == 0 and not last
            extra = source.checkpoint_extra() if ckpt else None
            for mi, (m, key) in enumerate(zip(members, mkeys)):
                if step < m.start_step:
                    continue  # this member's checkpoint is ahead: it waits
                result = m.step(pick(batch, key), step, total)
                if (step + 1) % cfg.log_every == 0 or last:
                    rec = m.log(step, result)
                    if bar is not None:
                        bar.logged(mi, rec)
                if ckpt:
                    m.checkpoint(step + 1, extra)
                    if on_checkpoint is not None and m.writer and dist.is_main:
                        on_checkpoint(owned[mi], m.history())
            if bar is not None:
                bar.update(batch_rows(batch) * dist.data_world)
    except BaseException as e:
        dist.abort(e)  # say which rank failed and tear the group down so peers do not hang
        raise
    finally:
        if bar is not None:
            bar.close()
    extra = source.checkpoint_extra()
    for m in members:
        m.sae.eval()
        if m.run_dir is not None:
            m.checkpoint(total, extra)  # refuses NaN/inf weights, so no diverged SAE is ever saved
            if m.writer:
                m.sae.save(m.run_dir)
        else:
            m.check_finite(total)
    wb.finish()
    histories: list[TrainHistory] = dist.finish(sae_list, members, owned)
    return histories[0] if single else histories
