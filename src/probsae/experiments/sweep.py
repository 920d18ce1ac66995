"""Run a sweep: one activation stream, many SAEs stepped on the same batches.

Layout of a sweep directory::

    sweep.json                 resolved config, members, command, data provenance (cache paths)
    runs/<member>/             one per member: config.json + sae.safetensors, log.jsonl,
                               checkpoint.safetensors (resume), metrics.json (held-out evaluation; the
                               schema of probsae.runs.results, shared with probsae train)
    results.jsonl              one line per finished member (its metrics.json), rewritten at the end

Each pass trains its members the way ``probsae train`` trains a comma-list grid (``probsae.runs.runner``).

Resume: members with a metrics.json are skipped; the others resume from their checkpoints
(``probsae.train`` does that per run directory). Members are trained in passes of at most
``max_members_per_pass`` (all at once by default); each pass reads the training cache once per epoch.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import ConfigError
from ..io import atomic_write_json, atomic_write_jsonl, read_json
from ..runs.results import METRICS_FILE, read_metrics, read_runs
from .presets import SweepConfig, SweepMember, train_config_kwargs

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.jsonl"

#: Default checkpoint interval (steps) for sweep members, so a killed sweep loses little work.
DEFAULT_CHECKPOINT_EVERY = 200


def _log(msg: str) -> None:
    from ..progress import say

    say(msg, prefix=f"sweep {time.strftime('%H:%M:%S')}")


# ---- data ---------------------------------------------------------------------------------------
def prepare_data(cfg: SweepConfig, out_dir: Path, progress: bool = False):
    """(train cache, eval cache) of the sweep: existing caches named by [data] cache/eval_cache, or
    the data pipeline's caches for the [data] spec (``probsae.data.prepare.prepare_caches``: built
    once under [data] cache_dir, default ``cache/`` as for ``probsae train``/``probsae cache``, and
    reused by every later sweep or run on the same spec). Held-out = documents never trained on."""
    from ..data import ActivationCache
    from ..data.prepare import prepare_caches

    d = cfg.data
    if "cache" in d:
        train = ActivationCache(d["cache"])
        if "eval_cache" in d:
            return train, ActivationCache(d["eval_cache"])
        if len(train.shards) < 2:
            raise ConfigError(f"[data] cache {d['cache']} has one shard; give eval_cache too")
        _log(f"no eval_cache given: holding out the last 10% of the shards of {d['cache']}")
        return train.split(0.1)
    t0 = time.perf_counter()
    train, evalc = prepare_caches(cfg.data_spec(), d.get("cache_dir", "cache"), progress=progress)
    _log(f"activation caches ready ({time.perf_counter() - t0:.0f}s): train {train.n_tokens:,} tokens "
         f"({train.path}), held-out {evalc.n_tokens:,} tokens ({evalc.path})")
    return train, evalc


# ---- members -----------------------------------------------------------------------------------
def sweep_metadata(cfg: SweepConfig, train_data):
    """The SAEMetadata of the sweep's members: the [data] spec, or what an existing cache records."""
    from ..runs.spec import data_metadata

    if "cache" not in cfg.data:
        return data_metadata(cfg.data_spec(), sweep=cfg.name)
    from ..saes.metadata import SAEMetadata

    m = train_data.manifest
    return SAEMetadata(model_name=m.get("model"), hook_name=m.get("hook"), target_hook_name=m.get("target_hook"),
                       context_length=m.get("context_length"),
                       exclude_special=m.get("exclude_special", True), corpus=m.get("corpus"),
                       holdout_every=m.get("holdout_every"), extra={"sweep": cfg.name})


def is_finished(run_dir: Path) -> bool:
    return (run_dir / METRICS_FILE).is_file()


def _trained(run_dir: Path, total_steps: int) -> bool:
    """Training finished (saved SAE and a checkpoint at the last step) but not yet evaluated."""
    from ..saes.base import CONFIG_FILE, WEIGHTS_FILE
    from ..training.checkpoint import load_checkpoint

    if not ((run_dir / WEIGHTS_FILE).is_file() and (run_dir / CONFIG_FILE).is_file()):
        return False
    state = load_checkpoint(run_dir)
    return state is not None and int(state.get("step", -1)) >= total_steps


# ---- the sweep -----------------------------------------------------------------------------------
def run_sweep(cfg: SweepConfig, out_dir: str | Path, *, only: list[str] | None = None,
              max_members_per_pass: int | None = None, progress: bool = True, dry_run: bool = False,
              command: str | None = None, device: str | None = None,
              on_pass: Callable[[list[str]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep ``cfg`` into ``out_dir``. Returns the sweep summary.

    Each pass goes the way of ``probsae train`` (``probsae.runs.runner``): the members' data
    source, ``train_group``, ``record_group``. The run directories of the selected members are
    locked for the whole call (``probsae.runs.lock``): another sweep (or ``probsae train``/``eval``)
    writing one of them gets ``RunInUseError`` before anything is extracted or written."""
    from ..runs.runner import session
    from ..training import TrainConfig

    out_dir = Path(out_dir)
    members = _selected(cfg.members(), only)
    dirs = {m.name: out_dir / "runs" / m.name for m in members}
    tkw = _train_kwargs(cfg, device, progress)
    group = max_members_per_pass or cfg.sweep.get("max_members_per_pass") or len(members) or 1
    command = command or "probsae sweep " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if dry_run:
        todo, plan = _plan(members, dirs, group)
        return {**plan, "names": [m.name for m in todo]}
    # One writer per run directory: the invocation holds every selected member's lock until it ends
    # (rank 0 under torchrun), so a second sweep on the same members stops at once while one with a
    # disjoint --only may run beside it.
    with session(TrainConfig(**{k: v for k, v in tkw.items() if k != "steps"}),
                 [dirs[m.name] for m in members], command) as ctx:
        return _run_locked(cfg, out_dir, members, dirs, tkw, group, ctx, command, progress, on_pass)


def _selected(members: list[SweepMember], only: list[str] | None) -> list[SweepMember]:
    """The members named by ``--only`` (member names or study labels); all without it."""
    if not only:
        return members
    unknown = [o for o in only if not any(o == m.name or o in m.studies for m in members)]
    if unknown:
        raise ConfigError(f"--only {unknown}: not a member name or study of this sweep")
    return [m for m in members if m.name in only or any(s in only for s in m.studies)]


def _train_kwargs(cfg: SweepConfig, device: str | None, progress: bool) -> dict[str, Any]:
    """The TrainConfig keyword arguments of the sweep's members ([train], with the sweep's
    checkpoint and log intervals unless set)."""
    tkw = train_config_kwargs(cfg.train)
    tkw.setdefault("checkpoint_every", int(cfg.sweep.get("checkpoint_every", DEFAULT_CHECKPOINT_EVERY)))
    tkw.setdefault("log_every", 25)
    if device:
        tkw["device"] = device
    tkw["progress"] = progress
    return tkw


def _plan(members: list[SweepMember], dirs: dict[str, Path], group: int) -> tuple[list[SweepMember], dict[str, Any]]:
    """The members left to run (no metrics.json yet) and the plan's counts."""
    todo = [m for m in members if not is_finished(dirs[m.name])]
    return todo, {"members": len(members), "finished": len(members) - len(todo), "to_run": len(todo),
                  "passes": len(_passes(todo, group)), "max_members_per_pass": group}


@dataclass
class _Sweep:
    """What every pass of one invocation shares."""

    cfg: SweepConfig
    """The sweep's config."""
    source: Any
    """The members' ``DataSource`` (``probsae.runs.source``)."""
    tcfg: Any
    """The members' TrainConfig, with steps resolved."""
    dirs: dict[str, Path]
    """Each selected member's run directory, by member name."""
    main: bool
    """This process writes (rank 0 under torchrun)."""
    data: dict[str, Any]
    """model, hook and corpus, as each metrics.json records them."""

    def evaluate(self, chunk: list[SweepMember], saes: list, seconds: dict[str, float] | None = None,
                 **extra: Any) -> None:
        """Each member's metrics.json (main rank only)."""
        from ..runs.runner import record_group

        if self.main:
            record_group(chunk, [m.name for m in chunk], [self.dirs[m.name] for m in chunk], saes, self.source,
                         self.tcfg, data=self.data, seconds=seconds, studies=lambda i: chunk[i].studies,
                         extra={"train_cache_tokens": self.source.n_train, **extra},
                         batch_size=int(self.cfg.sweep.get("eval_batch_size", 4096)))


def _run_locked(cfg: SweepConfig, out_dir: Path, members: list[SweepMember], dirs: dict[str, Path],
                tkw: dict[str, Any], group: int, ctx, command: str, progress: bool,
                on_pass: Callable[[list[str]], None] | None) -> dict[str, Any]:
    """``run_sweep`` once the members' run directories are locked (what is finished is read only now)."""
    from ..devices import resolve_device

    todo, plan = _plan(members, dirs, group)
    main = ctx.is_main  # under torchrun only rank 0 extracts, evaluates and writes sweep files
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    sw = _open(cfg, out_dir, members, dirs, tkw, ctx, command, progress)
    # on the training device like the members evaluated right after training (load_sae alone gives
    # the CPU, whose metrics differ from CUDA's in rounding and, at near-ties, in the selected latents)
    train_device = str(ctx.device or resolve_device(sw.tcfg.device))
    todo = _evaluate_trained(sw, todo, train_device)
    chunks = _passes(todo, group)
    for i, chunk in enumerate(chunks):
        _run_pass(sw, chunk, f"{i + 1}/{len(chunks)}", on_pass)
    if not main:
        return {**plan, "rank": ctx.rank}
    measure_downstream(cfg, members, dirs, train_device)
    return _close(out_dir, command, plan, t_start)


def _open(cfg: SweepConfig, out_dir: Path, members: list[SweepMember], dirs: dict[str, Path],
          tkw: dict[str, Any], ctx, command: str, progress: bool) -> _Sweep:
    """The sweep's data source and TrainConfig; writes sweep.json (main rank)."""
    from dataclasses import replace

    from ..runs.source import cached_source
    from ..training import TrainConfig, distributed

    train_data, eval_data = distributed.main_first(ctx, lambda: prepare_data(cfg, out_dir, progress=progress and ctx.is_main))
    tkw["extra"] = {**tkw.get("extra", {}), "sweep": cfg.name, "model": train_data.manifest.get("model"),
                    "hook": train_data.manifest.get("hook"), "corpus": cfg.data.get("corpus")}
    tcfg = TrainConfig(**tkw)
    source = cached_source(replace(members[0], train=tcfg, epochs=1.0), train_data, eval_data)
    tcfg.steps = source.steps
    data_info = {"model": train_data.manifest.get("model"), "hook": train_data.manifest.get("hook"),
                 "corpus": cfg.data.get("corpus"), "train_cache": str(train_data.path),
                 "eval_cache": str(eval_data.path), "train_cache_tokens": train_data.n_tokens,
                 "eval_tokens": eval_data.n_tokens, "d_in": train_data.d_in}
    if ctx.is_main:
        _write_sweep_json(out_dir, cfg, members, command, data_info, tcfg)
    return _Sweep(cfg, source, tcfg, dirs, ctx.is_main, {k: data_info[k] for k in ("model", "hook", "corpus")})


def _evaluate_trained(sw: _Sweep, todo: list[SweepMember], device: str) -> list[SweepMember]:
    """Evaluate the members already trained but not evaluated (a kill during evaluation); returns
    the members still to train."""
    from ..saes import load_sae

    left = []
    for m in todo:
        if _trained(sw.dirs[m.name], sw.tcfg.steps):
            sw.evaluate([m], [load_sae(sw.dirs[m.name], device=device)] if sw.main else [])
        else:
            left.append(m)
    return left


def _run_pass(sw: _Sweep, chunk: list[SweepMember], which: str, on_pass: Callable[[list[str]], None] | None) -> None:
    """Train one pass of members together (``probsae.runs.runner``), then evaluate each."""
    from ..runs.runner import build_saes, train_group

    tcfg, n = sw.tcfg, sw.source.n_train
    _log(f"pass {which}: training {len(chunk)} SAEs for {tcfg.steps} steps × {tcfg.batch_size} tokens "
         f"({tcfg.steps * tcfg.batch_size / n:.2f} epochs of {n:,} tokens)")
    if on_pass:
        on_pass([m.name for m in chunk])
    metadata = sweep_metadata(sw.cfg, sw.source.train)
    saes = build_saes(chunk, sw.source, lambda m: metadata)
    trained = train_group(chunk, saes, [sw.dirs[m.name] for m in chunk], sw.source, tcfg)
    _log(f"pass trained in {trained.seconds:.0f}s; evaluating on {sw.source.held().n_tokens:,} held-out tokens")
    sw.evaluate(chunk, saes, seconds={"train": round(trained.seconds, 1)}, pass_members=len(chunk))


def _close(out_dir: Path, command: str, plan: dict[str, Any], t_start: float) -> dict[str, Any]:
    """results.jsonl, this invocation's entry in sweep.json, the summary."""
    results = collect_results(out_dir)
    summary = {**plan, "wall_seconds": round(time.perf_counter() - t_start, 1), "results": len(results)}
    info = _read_json(out_dir / SWEEP_FILE)
    info.setdefault("invocations", []).append({"command": command, **summary,
                                               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    atomic_write_json(out_dir / SWEEP_FILE, info)
    _log(f"done: {len(results)} members with metrics in {out_dir} ({summary['wall_seconds']:.0f}s this invocation)")
    return summary


def measure_downstream(cfg: SweepConfig, members: list[SweepMember], dirs: dict[str, Path], device: str) -> int:
    """CE/KL with each finished member spliced in (causal LMs only), for members whose metrics.json
    has none yet: ``[sweep] downstream_tokens`` held-out positions (default: ``probsae eval``'s;
    0: skip), ``downstream_members_per_pass`` SAEs (default 12) sharing each clean and zero-ablation
    forward. Resumable: each pass writes its members' metrics.json. Returns how many were measured."""
    from ..data.models import is_causal_model
    from ..runs.eval_run import downstream_of
    from ..runs.results import add_downstream
    from ..saes import load_sae

    tokens = cfg.sweep.get("downstream_tokens")
    if tokens == 0 or "cache" in cfg.data:
        return 0
    spec = cfg.data_spec()
    todo = [m for m in members if is_finished(dirs[m.name])
            and read_metrics(dirs[m.name] / METRICS_FILE).get("downstream") is None]
    if not todo or not is_causal_model(spec.model):
        return 0
    per_pass = int(cfg.sweep.get("downstream_members_per_pass", 12))
    handle = spec.load(device)
    for i in range(0, len(todo), per_pass):
        chunk = todo[i:i + per_pass]
        t0 = time.perf_counter()
        _log(f"CE/KL of {len(chunk)} SAEs spliced into {spec.model} at {spec.hook} "
             f"({i + len(chunk)}/{len(todo)})")
        res = downstream_of(handle, spec, {m.name: load_sae(dirs[m.name], device=str(handle.device)) for m in chunk},
                            tokens)
        for m in chunk:
            add_downstream(dirs[m.name], res[m.name])
        n = next(iter(res.values()))
        _log(f"CE/KL pass done in {time.perf_counter() - t0:.0f}s on {int(n['n_tokens']):,} held-out tokens "
             f"({n['n_windows']} windows)")
    return len(todo)


def _passes(todo: list[SweepMember], cap: int) -> list[list[SweepMember]]:
    """Members grouped by their grid ``group`` (ascending), each group cut into passes of ≤ ``cap``."""
    out: list[list[SweepMember]] = []
    for g in sorted({m.group for m in todo}):
        ms = [m for m in todo if m.group == g]
        out += [ms[i:i + cap] for i in range(0, len(ms), cap)]
    return out


def _write_sweep_json(out_dir: Path, cfg: SweepConfig, members: list[SweepMember], command: str,
                      data_info: dict[str, Any], tcfg) -> None:
    path = out_dir / SWEEP_FILE
    old = _read_json(path)
    info = {
        "name": cfg.name, "description": cfg.description, "config": cfg.to_dict(),
        "command": old.get("command", command), "created": old.get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
        "members": [m.summary() for m in members] if not old.get("members") else _merge_members(old["members"], members),
        "data": data_info, "train_config": tcfg.to_dict(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "invocations": old.get("invocations", []),
    }
    atomic_write_json(path, info)  # atomic: invocations with disjoint --only may share a sweep directory


def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path, dict, ConfigError) if path.is_file() else {}


def _merge_members(old: list[dict], members: list[SweepMember]) -> list[dict]:
    by = {m["name"]: m for m in old}
    for m in members:
        by[m.name] = m.summary()
    return list(by.values())


def collect_results(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every member's metrics.json under ``out_dir/runs`` (also rewrites results.jsonl)."""
    out_dir = Path(out_dir)
    res = [m for _, m in read_runs(out_dir / "runs")]
    if out_dir.is_dir():
        atomic_write_jsonl(out_dir / RESULTS_FILE, res)
    return res
