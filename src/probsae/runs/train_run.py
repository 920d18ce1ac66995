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
from .results import add_downstream, record_run
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
    ``spec.data.device`` 'auto' follows it)."""
    from ..devices import resolve_device
    from ..io import check_output_dir
    from ..training import distributed
    from .lock import locked_run_dirs

    single = isinstance(spec, RunSpec)
    specs = [spec] if single else list(spec)
    dirs = [Path(run_dir)] if single else [Path(d) for d in run_dir]  # type: ignore[union-attr]
    if not specs or len(specs) != len(dirs):
        raise ConfigError(f"got {len(specs)} run specs for {len(dirs)} run directories")
    for s in specs:
        s.validate()
    _check_together(specs)
    for d in dirs:
        check_output_dir(d, _is_run_dir, force, "probsae run directory")
    first = specs[0]
    ctx = distributed.setup(first.train)  # under torchrun: only rank 0 extracts and writes
    device = ctx.device or resolve_device(first.train.device)
    # one writer per run directory, for the whole run (under torchrun the writing rank holds it)
    with locked_run_dirs(dirs if ctx.is_main else [], command):
        results = _train_locked(specs, dirs, command, ctx, device)
    return results[0] if single else results


def _train_locked(specs: list[RunSpec], dirs: list[Path], command: str | None, ctx, device) -> list[dict[str, Any]]:
    from ..data.prepare import model_stream, prepare_caches
    from ..extras import missing_extra_message, plots_available
    from ..io import check_writable_dir
    from ..progress import note, warn
    from ..training import distributed, train
    from .plot import plot_training
    from .results import heldout_warning
    from .spec import changed_sources, data_sources, read_sources

    first = specs[0]
    sources, fingerprints = [], {}
    for s, d in zip(specs, dirs):
        recorded = None
        if (d / RUN_FILE).is_file():
            diff = differences(read_spec(d).comparable(), s.comparable())
            if diff and _only_a_failed_start(d):
                note(f"{d} holds only the run.json of a start that failed before training (it differs in: "
                     f"{', '.join(diff)}); starting this run there instead")
            elif diff:
                raise ConfigError(f"{d} holds a different run (differs in: {', '.join(diff)}); "
                                  "use another --out or delete that directory")
            else:
                _say(f"resuming the run in {d}")
                recorded = read_sources(d)
                for w in changed_sources(recorded, s.data):
                    warn(f"{w}: the resumed steps train on other activations than the earlier ones")
        # the sources the run started from stay recorded, so `probsae eval` compares with those
        key = (s.data.corpus, s.data.text_field, s.data.model)
        if recorded is None and key not in fingerprints:
            fingerprints[key] = data_sources(s.data)
        sources.append(recorded or fingerprints[key])
    if ctx.is_main:
        for d in dirs:
            check_writable_dir(d, "run directory")

    hooks = list(dict.fromkeys(s.data.hook for s in specs))
    batch = first.train.batch_size
    t0 = time.perf_counter()
    stream = None
    if first.stream:
        handle = first.data.load(device)
        train_data = stream = model_stream(first.data, batch, handle, hooks, first.stream_buffer * batch, first.train.seed)
        widths = _hook_widths(handle, hooks, first.data.target_hook)
        # held-out tokens: the small held-out cache `probsae eval` reads too, so both report the same numbers
        eval_data = {h: distributed.main_first(ctx, lambda h=h: prepare_caches(
            replace(first.data, hook=h), first.cache_dir, progress=False, parts=("holdout",), handle=handle))[0]
            for h in hooks}
        steps = first.train.steps or max(1, first.data.max_tokens // batch)
        n_train = None
    else:
        # A causal LM measures CE/KL at the end: load it once, for the extraction and for that.
        handle = first.data.load(device) if ctx.is_main and _wants_downstream(first) else None
        # rank 0 extracts, the others then open the caches (run `probsae cache` first for long extractions)
        train_data, held = distributed.main_first(
            ctx, lambda: prepare_caches(first.data, first.cache_dir, progress=ctx.is_main, device=device, handle=handle))
        eval_data = {hooks[0]: held}
        widths = {hooks[0]: train_data.d_in}
        n_train = train_data.n_tokens
        steps = first.train.steps or max(1, int(first.epochs * n_train) // batch)
        if n_train < batch:
            raise ConfigError(f"the training cache has {n_train} tokens, fewer than batch_size={batch}")
    t_data = time.perf_counter() - t0

    for h in hooks:
        w = heldout_warning(eval_data[h].n_tokens, first.data.eval_tokens, first.data.holdout_every)
        if w and ctx.is_main:
            warn(w)
    saes = [s.build_sae(widths[s.data.hook]) for s in specs]
    for s, sae in zip(specs, saes):
        sae.metadata = data_metadata(s.data)  # saved in config.json: model, hook point, windows, corpus
    if ctx.is_main:  # the model, hook points and SAE shapes are good: now the run directories are written
        for s, d, src in zip(specs, dirs, sources):
            write_spec(d, s, command, src)
    cfg = replace(first.train, steps=steps, extra={**first.train.extra, "model": first.data.model,
                                                    "hooks": hooks, "corpus": first.data.corpus})
    if ctx.is_main:
        what = ", ".join(f"{s.architecture} {s.hparams_dict()} at {s.data.hook}" for s in specs)
        _say(f"training {len(specs)} SAE(s) on {device} ({what}) for {steps} steps × {batch} tokens" +
             (f" ({steps * batch / n_train:.1f} passes over {n_train:,} cached tokens)" if n_train else
              f", straight from the model ({first.data.model}, {first.data.model_dtype} dtype)"))
    done_before = min(_resumed_step(d) for d in dirs)
    titles = [f"{s.architecture} {s.hparams_dict()} — {s.data.model} {s.data.hook}" for s in specs]

    def redraw(i: int, hist) -> None:  # training.png at every checkpoint, not only at the end
        plot_training(hist.records, dirs[i] / PLOT_FILE, titles[i], saes[i].d_sae, architecture=specs[i].architecture,
                      final=False)

    t1 = time.perf_counter()
    histories = train(saes, train_data, cfg, run_dirs=dirs, hooks=[s.data.hook for s in specs] if stream else None,
                      on_checkpoint=redraw if plots_available() else None)
    t_train = time.perf_counter() - t1
    speed = _throughput(stream, (steps - done_before) * batch, t_train)
    if ctx.is_main:
        _say(f"trained {speed['train_tokens']:,} tokens in {t_train:.1f}s: {speed['train_tokens_per_s']:,.0f} tokens/s"
             + (f" end to end (model forward {speed['forward_seconds']:.1f}s, {speed['extract_tokens_per_s']:,.0f} "
                "extracted tokens/s of forward time)" if stream else ""))
    if not ctx.is_main:
        return [{} for _ in specs]

    downstream = _downstream(specs, dirs, saes, handle)
    results = []
    for s, d, sae, history, title in zip(specs, dirs, saes, histories, titles):
        res = record_run(
            d, d.name, s.architecture, s.hparams_dict(), sae, eval_data[s.data.hook], cfg,
            data={"model": s.data.model, "hook": s.data.hook, "corpus": s.data.corpus},
            seconds={"data": round(t_data, 1), "train": round(t_train, 1)},
            throughput={**speed, "saes_on_the_stream": len(specs), "device": str(device)})
        if downstream.get(str(d)) is not None:
            res = add_downstream(d, downstream[str(d)])
        results.append(res)
        if plots_available():
            plot_training(history.records, d / PLOT_FILE, title, sae.d_sae, architecture=s.architecture,
                          heldout_alive=res["heldout"]["alive"])
        else:
            _say(f"{d / PLOT_FILE} not drawn: {missing_extra_message('plot')}")
    return results


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


def _hook_widths(handle, hooks: list[str], target_hook: str | None = None) -> dict[str, int]:
    """Width of the rows at each hook point (one 4-token forward): the activation's, or with a
    ``target_hook`` the [input | target] pair's."""
    import torch

    from ..data.extract import pair_width
    from ..data.hooks import HookPoint, capture_many

    ids = torch.full((1, 4), int(handle.bos_id or handle.cls_id or 0), dtype=torch.long, device=handle.device)
    with torch.inference_mode():
        xs = capture_many(handle, hooks + ([target_hook] if target_hook else []), ids)
    widths = {h: int(xs[str(HookPoint.parse(h))].shape[-1]) for h in hooks}
    if target_hook:
        d_target = int(xs[str(HookPoint.parse(target_hook))].shape[-1])
        widths = {h: pair_width(h, w, target_hook, d_target) for h, w in widths.items()}
    return widths


def _throughput(stream, tokens: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"train_tokens": int(tokens), "train_seconds": round(seconds, 3),
                           "train_tokens_per_s": round(tokens / max(seconds, 1e-9), 1)}
    if stream is not None:
        fwd = stream.forward_seconds
        out.update({"extracted_tokens": stream.tokens_in, "forward_seconds": round(fwd, 3),
                    "extract_tokens_per_s": round(stream.tokens_in / max(fwd, 1e-9), 1)})
    return out
