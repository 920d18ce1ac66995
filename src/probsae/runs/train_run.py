"""``probsae train`` as a function: prepare activations, train with resume, evaluate, plot.

One call trains one run, or several runs on one activation stream (``train_run([spec, …],
[dir, …])``): the specs may differ in their SAE (architecture, hyperparameters such as K) and,
when streaming, in their hook point; one model forward then feeds every SAE."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..progress import say as _say
from .results import add_downstream
from .spec import PLOT_FILE, RUN_FILE, RunSpec, data_metadata, differences, read_spec, write_spec


def _check_together(specs: list[RunSpec]) -> None:
    """Runs trained together share everything but the SAE and (streaming) the hook point."""
    first = specs[0].to_dict()
    for s in specs[1:]:
        d = s.to_dict()
        for part in (d, first):
            part.pop("architecture", None), part.pop("hparams", None), part.pop("expansion", None), part.pop("d_sae", None)
            part["data"] = {k: v for k, v in part["data"].items() if k != "hook"}
        diff = differences(first, d)
        if diff:
            raise ConfigError(f"runs trained together must share data and training settings; they differ in: {', '.join(diff)}")
    if not specs[0].stream and len({s.data.hook for s in specs}) > 1:
        raise ConfigError("several hook points need --stream (an activation cache holds one hook point)")


def _resumed_step(run_dir: Path) -> int:
    """The last logged step of an earlier attempt (0 for a fresh run), for the throughput report."""
    from ..training.logger import JsonlLogger, step_records
    from ..training.member import LOG_FILE

    return max((r["step"] for r in step_records(JsonlLogger(run_dir / LOG_FILE).read())), default=0)


def _contents(run_dir: Path) -> set[str] | None:
    """Names in ``run_dir`` besides temporaries and the lock file (None when it cannot be listed)."""
    from ..io import TMP_MARKER
    from .lock import LOCK_FILE

    try:
        return {e.name for e in run_dir.iterdir() if TMP_MARKER not in e.name and e.name != LOCK_FILE}
    except OSError:
        return None


def _only_a_failed_start(run_dir: Path) -> bool:
    """True when ``run_dir`` holds nothing but ``run.json`` (and temporaries or the lock file): a
    start that failed before training wrote a checkpoint, a log or weights."""
    return _contents(run_dir) == {RUN_FILE}


def _is_run_dir(run_dir: Path) -> bool:
    """A probsae run directory: it holds run.json, or only a lock file (a start killed before it
    wrote anything)."""
    return (run_dir / RUN_FILE).is_file() or _contents(run_dir) == set()


def train_run(spec: RunSpec | list[RunSpec], run_dir: str | Path | list[str | Path],
              command: str | None = None, force: bool = False) -> dict[str, Any] | list[dict[str, Any]]:
    """Train ``spec`` into ``run_dir``: weights + config.json, run.json, log.jsonl,
    checkpoint.safetensors, metrics.json (held-out evaluation, ``probsae.runs.results``) and
    training.png; returns the metrics. Resumes from the run directory's checkpoint when there is
    one; refuses a run directory that holds a different run (except one that holds only the
    run.json of a start that failed before training: it is reused, with a note), and a non-empty
    directory that is not a probsae run unless ``force``. Every option is validated before any
    activation is extracted, and nothing is written into the run directory before the model, the
    hook points and the SAE's shape have been checked (a failed start leaves no folder behind).

    The run directory is locked for the whole call (``probsae.runs.lock``): a second process
    training or evaluating into it gets ``RunInUseError`` and writes nothing.

    Lists of specs and run directories train several SAEs on one activation stream (see the
    module docstring) and return one result per run; the checks above apply to every run
    directory. The model and the SAEs run on the training device (``spec.train.device``;
    ``spec.data.device`` 'auto' follows it). The steps are those of ``probsae.runs.runner``."""
    from ..devices import resolve_device
    from .runner import session

    single = isinstance(spec, RunSpec)
    specs = [spec] if single else list(spec)
    dirs = [Path(run_dir)] if single else [Path(d) for d in run_dir]  # type: ignore[union-attr]
    _validate(specs, dirs, force)
    with session(specs[0].train, dirs, command) as ctx:  # one writer per run directory, for the whole run
        results = _train_locked(specs, dirs, command, ctx, ctx.device or resolve_device(specs[0].train.device))
    return results[0] if single else results


# ---- validation ---------------------------------------------------------------------------------
def _validate(specs: list[RunSpec], dirs: list[Path], force: bool) -> None:
    """Every option of every spec, the specs against each other, and the run directories."""
    from ..io import check_output_dir

    if not specs or len(specs) != len(dirs):
        raise ConfigError(f"got {len(specs)} run specs for {len(dirs)} run directories")
    for s in specs:
        s.validate()
    _check_together(specs)
    for d in dirs:
        check_output_dir(d, _is_run_dir, force, "probsae run directory")


def _prior_sources(spec: RunSpec, run_dir: Path) -> dict[str, Any] | None:
    """The data sources recorded by the run already in ``run_dir`` when this is a resume of it
    (None for a fresh start); refuses a directory that holds a different run."""
    from ..progress import note, warn
    from .spec import changed_sources, read_sources

    if not (run_dir / RUN_FILE).is_file():
        return None
    diff = differences(read_spec(run_dir).comparable(), spec.comparable())
    if diff and _only_a_failed_start(run_dir):
        note(f"{run_dir} holds only the run.json of a start that failed before training (it differs in: "
             f"{', '.join(diff)}); starting this run there instead")
        return None
    if diff:
        raise ConfigError(f"{run_dir} holds a different run (differs in: {', '.join(diff)}); "
                          "use another --out or delete that directory")
    _say(f"resuming the run in {run_dir}")
    recorded = read_sources(run_dir)
    for w in changed_sources(recorded, spec.data):
        warn(f"{w}: the resumed steps train on other activations than the earlier ones")
    return recorded


def _run_sources(specs: list[RunSpec], dirs: list[Path]) -> list[dict[str, Any]]:
    """What run.json records as each run's sources: those the run started from when resumed (so
    `probsae eval` compares with those), else today's fingerprints (computed once per data)."""
    from .spec import data_sources

    out, fingerprints = [], {}
    for s, d in zip(specs, dirs):
        recorded = _prior_sources(s, d)
        key = (s.data.corpus, s.data.text_field, s.data.model)
        if recorded is None and key not in fingerprints:
            fingerprints[key] = data_sources(s.data)
        out.append(recorded or fingerprints[key])
    return out


# ---- the run -------------------------------------------------------------------------------------
def _train_locked(specs: list[RunSpec], dirs: list[Path], command: str | None, ctx, device) -> list[dict[str, Any]]:
    from ..io import check_writable_dir
    from .runner import build_saes, train_group
    from .source import open_source

    first = specs[0]
    sources = _run_sources(specs, dirs)
    if ctx.is_main:
        for d in dirs:
            check_writable_dir(d, "run directory")
    source = open_source(specs, ctx, device, keep_model=not first.stream and _wants_downstream(first))
    _warn_small_heldout(first, source, ctx)
    saes = build_saes(specs, source, lambda s: data_metadata(s.data))
    if ctx.is_main:  # the model, hook points and SAE shapes are good: now the run directories are written
        for s, d, src in zip(specs, dirs, sources):
            write_spec(d, s, command, src)
    cfg = replace(first.train, steps=source.steps, extra={**first.train.extra, "model": first.data.model,
                                                          "hooks": source.hooks, "corpus": first.data.corpus})
    if ctx.is_main:
        _announce(specs, source, device)
    done_before = min(_resumed_step(d) for d in dirs)
    trained = train_group(specs, saes, dirs, source, cfg, on_checkpoint=_redraw(specs, dirs, saes))
    speed = _report_speed(source, (source.steps - done_before) * first.train.batch_size, trained.seconds, ctx)
    if not ctx.is_main:
        return [{} for _ in specs]
    return _finish(specs, dirs, trained, source, cfg, speed, device)


def _warn_small_heldout(first: RunSpec, source, ctx) -> None:
    from ..progress import warn
    from .results import heldout_warning

    for cache in source.heldout.values():
        w = heldout_warning(cache.n_tokens, first.data.eval_tokens, first.data.holdout_every)
        if w and ctx.is_main:
            warn(w)


def _announce(specs: list[RunSpec], source, device) -> None:
    """The line that says what trains, where, for how long."""
    first, steps, n_train = specs[0], source.steps, source.n_train
    batch = first.train.batch_size
    what = ", ".join(f"{s.architecture} {s.hparams} at {s.data.hook}" for s in specs)
    _say(f"training {len(specs)} SAE(s) on {device} ({what}) for {steps} steps × {batch} tokens" +
         (f" ({steps * batch / n_train:.1f} passes over {n_train:,} cached tokens)" if n_train else
          f", straight from the model ({first.data.model}, {first.data.model_dtype} dtype)"))


def _finish(specs: list[RunSpec], dirs: list[Path], trained, source, cfg, speed, device) -> list[dict[str, Any]]:
    """Held-out metrics, CE/KL (with the model loaded for training) and the final training.png."""
    from .runner import record_group

    downstream = _downstream(specs, dirs, trained.saes, source.handle)
    results = record_group(
        specs, [d.name for d in dirs], dirs, trained.saes, source, cfg,
        data=lambda i: {"model": specs[i].data.model, "hook": specs[i].data.hook, "corpus": specs[i].data.corpus},
        seconds={"data": round(source.seconds, 1), "train": round(trained.seconds, 1)},
        throughput={**speed, "saes_on_the_stream": len(specs), "device": str(device)})
    for i, d in enumerate(dirs):
        if downstream.get(str(d)) is not None:
            results[i] = add_downstream(d, downstream[str(d)])
    _plot_final(specs, dirs, trained, results)
    return results


# ---- logging and throughput ---------------------------------------------------------------------
def _report_speed(source, tokens: int, seconds: float, ctx) -> dict[str, Any]:
    """The group's throughput (``runner.throughput``), printed by the main rank."""
    from .runner import throughput

    speed = throughput(source, tokens, seconds)
    if ctx.is_main:
        _say(f"trained {speed['train_tokens']:,} tokens in {seconds:.1f}s: {speed['train_tokens_per_s']:,.0f} tokens/s"
             + (f" end to end (model forward {speed['forward_seconds']:.1f}s, {speed['extract_tokens_per_s']:,.0f} "
                "extracted tokens/s of forward time)" if source.stream is not None else ""))
    return speed


# ---- plots ---------------------------------------------------------------------------------------
def _title(spec: RunSpec) -> str:
    return f"{spec.architecture} {spec.hparams} — {spec.data.model} {spec.data.hook}"


def _redraw(specs: list[RunSpec], dirs: list[Path], saes: list):
    """training.png at every checkpoint, not only at the end (None without the plot extra)."""
    from ..extras import plots_available
    from .plot import plot_training

    def redraw(i: int, hist) -> None:
        plot_training(hist.records, dirs[i] / PLOT_FILE, _title(specs[i]), saes[i].d_sae,
                      architecture=specs[i].architecture, final=False)

    return redraw if plots_available() else None


def _plot_final(specs: list[RunSpec], dirs: list[Path], trained, results: list[dict[str, Any]]) -> None:
    from ..extras import missing_extra_message, plots_available
    from .plot import plot_training

    for s, d, sae, history, res in zip(specs, dirs, trained.saes, trained.histories, results):
        if plots_available():
            plot_training(history.records, d / PLOT_FILE, _title(s), sae.d_sae, architecture=s.architecture,
                          heldout_alive=res["heldout"]["alive"])
        else:
            _say(f"{d / PLOT_FILE} not drawn: {missing_extra_message('plot')}")


# ---- CE/KL ---------------------------------------------------------------------------------------
def _wants_downstream(spec: RunSpec) -> bool:
    """CE/KL at the end of training: asked for (not 0) and the model is a causal LM."""
    from ..data.models import is_causal_model

    return spec.downstream_tokens != 0 and is_causal_model(spec.data.model)


def _downstream(specs: list[RunSpec], dirs: list[Path], saes: list, handle) -> dict[str, Any]:
    """{run dir: CE/KL result} of the trained SAEs, grouped by hook point (one shared clean and
    zero-ablation pass per group), with the model loaded for training; {} when not measured."""
    from .eval_run import downstream_line, downstream_of

    if handle is None or not handle.is_causal or specs[0].downstream_tokens == 0:
        return {}
    out: dict[str, Any] = {}
    for hook in dict.fromkeys(s.data.hook for s in specs):
        group = {str(d): sae for s, d, sae in zip(specs, dirs, saes) if s.data.hook == hook}
        data = next(s.data for s in specs if s.data.hook == hook)
        _say(f"measuring CE/KL with {len(group)} SAE(s) spliced in at {hook} "
             f"({specs[0].downstream_tokens or 'default'} held-out tokens)")
        t0 = time.perf_counter()
        res = downstream_of(handle, data, group, specs[0].downstream_tokens)
        for name, ds in res.items():
            _say(f"{Path(name).name or name}: {downstream_line(ds)}")
        _say(f"CE/KL took {time.perf_counter() - t0:.0f}s")
        out.update(res)
    return out
