"""probsae train: one SAE on (model, hook point, corpus) into a run directory (resumable)."""

from __future__ import annotations

import shlex
import sys

from .options import add_dataclass_options, collect, list_valued, parse_assignments

# The library (torch) is imported inside the functions: ``probsae --help`` imports this module for
# NAME and HELP only (cli/main.py).

NAME = "train"
HELP = ("Train an SAE on a model's activations: writes weights, config, run.json, log.jsonl, "
        "metrics.json and training.png into --out, and resumes if --out holds a checkpoint. "
        "Comma lists (--k 4,8,16,24,32, --arch topk,prob_topk, --hook resid_pre.6,resid_pre.8) train one "
        "SAE per combination on one activation stream, each in --out/<name>, named as sweep members are "
        "(topk-k=4; with several hooks resid_pre.6-topk-k=4); a list-valued hyperparameter "
        "(--prefix-fractions 0.0625,0.25,1) takes its whole list.")

_TRAIN_SKIP = {"steps", "log_path", "extra", "progress"}  # progress: the --progress/--no-progress of every command


def hparam_architectures() -> dict[str, tuple[str, ...]]:
    """Every architecture hyperparameter → the architectures whose config class has it (registry
    order), d_in and d_sae excluded: what ``train --help`` groups the flags by."""
    from ..saes.registry import architectures, get_class

    out: dict[str, tuple[str, ...]] = {}
    for name in architectures():
        for f in get_class(name).config_class.__dataclass_fields__:
            if f not in ("d_in", "d_sae"):
                out[f] = out.get(f, ()) + (name,)
    return out


def _group_title(archs: tuple[str, ...]) -> str:
    from ..saes.registry import architectures

    if set(archs) == set(architectures()):
        return "SAE options (every architecture)"
    return f"hyperparameters of {', '.join(archs)} only"


def add_arguments(p) -> None:
    from ..data.prepare import DataSpec
    from ..runs.spec import RunSpec  # the one home of the defaults below
    from ..saes.registry import architectures
    from ..training.config import TrainConfig

    p.add_argument("--arch", default=RunSpec.architecture, type=_arch_list, metavar="{" + ",".join(architectures()) + "}",
                   help="SAE architecture (a comma list: one SAE per architecture)")
    p.add_argument("--out", default="runs/default", help="run directory (resumed if it holds a checkpoint)")
    p.add_argument("--force", action="store_true",
                   help="write into --out (with comma lists: each run directory under it) even when it is "
                        "a non-empty directory that is not a probsae run")
    g = p.add_argument_group("SAE size")
    g.add_argument("--expansion", type=int, default=RunSpec.expansion, help="d_sae = expansion × d_in (the paper: 16)")
    g.add_argument("--d-sae", type=int, default=None, help="number of latents (overrides --expansion)")
    _add_hyperparameters(p)
    g = p.add_argument_group("data")
    add_dataclass_options(g, DataSpec, dest_prefix="data_", skip={"device"})  # extraction uses --device
    g.add_argument("--cache-dir", default=RunSpec.cache_dir, help="root folder of activation caches (shared across runs)")
    g.add_argument("--stream", action="store_true",
                   help="train straight from the model without a cache (the GPU path; several --hook points need it)")
    g.add_argument("--stream-buffer", type=int, default=RunSpec.stream_buffer,
                   help="streaming: shuffle-buffer size on the device, in training batches")
    g.add_argument("--downstream-tokens", type=int, default=None,
                   help="causal LMs: held-out next-token positions for the CE/KL measured at the end of "
                        "training with the SAE spliced in (default: as probsae eval, 32,768; 0: skip)")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=None, help="optimiser steps (default: --epochs passes over the cache)")
    g.add_argument("--epochs", type=float, default=RunSpec.epochs, help="passes over the cached training tokens when --steps is not given")
    add_dataclass_options(g, TrainConfig, skip=_TRAIN_SKIP, dest_prefix="train_",
                          carry_default={"checkpoint_every"})


def _add_hyperparameters(p) -> None:
    """The architectures' hyperparameter flags and --hparam; a scalar one takes a comma list."""
    from ..saes.registry import architectures, get_class

    # One group per set of architectures a hyperparameter applies to (from the config classes), in
    # the registry's order: --arch refuses a flag of another architecture.
    owners = hparam_architectures()
    groups: dict[tuple[str, ...], object] = {}
    seen: set[str] = {"seed"}  # the SAE's init seed follows --seed (TrainConfig)
    whole = _list_valued()
    for name in architectures():
        cls = get_class(name).config_class
        names = [f for f in cls.__dataclass_fields__ if f not in ("d_in", "d_sae") and f not in seen]
        seen.update(names)
        for archs in dict.fromkeys(owners[f] for f in names):
            if archs not in groups:
                groups[archs] = p.add_argument_group(_group_title(archs))
            part = {f for f in names if owners[f] == archs}
            add_dataclass_options(groups[archs], cls, skip=set(cls.__dataclass_fields__) - part, dest_prefix="hp_",
                                  comma_lists=True, whole=whole)  # a scalar's comma list: one SAE per value
    g = groups.get(tuple(architectures())) or p.add_argument_group("SAE options (every architecture)")
    g.add_argument("--hparam", action="append", metavar="KEY=VALUE", help="any other hyperparameter (repeatable)")


def _list_valued() -> set[str]:
    """Hyperparameters whose value is a list in some architecture (``prefix_fractions``)."""
    from ..saes.registry import architectures, get_class

    return set().union(*(list_valued(get_class(a).config_class) for a in architectures()))


def _arch_list(text: str):
    """--arch: a registered architecture name, or a comma list of them (then a list)."""
    import argparse

    from ..saes.registry import architectures

    names = [t.strip() for t in text.split(",")]
    for n in names:
        if n not in architectures():
            raise argparse.ArgumentTypeError(f"invalid choice: {n!r} (choose from "
                                             f"{', '.join(repr(a) for a in architectures())})")
    return names if len(names) > 1 else names[0]



def specs_from_args(args) -> list[tuple[str, "object"]]:
    """One (name, RunSpec) per member of the grid the comma lists make (--arch, the scalar
    hyperparameters, --hook), expanded as a sweep's [[grid]] block is
    (``probsae.experiments.presets.expand_grid``) and named as a sweep names its members
    (``topk-k=4``; with several hook points ``resid_pre.6-topk-k=4``); "" for one run."""
    from dataclasses import replace

    from ..data.prepare import DataSpec
    from ..runs.spec import RunSpec
    from ..training.config import TrainConfig

    archs = args.arch if isinstance(args.arch, list) else [args.arch]
    hparams = _hparams(args, archs)
    data = DataSpec(**collect(args, [a[5:] for a in vars(args) if a.startswith("data_")], "data_"))
    train = TrainConfig(steps=args.steps, **collect(args, [a[6:] for a in vars(args) if a.startswith("train_")], "train_"))
    hooks = [h.strip() for h in data.hook.split(",") if h.strip()]
    grid = _grid(archs, hparams)
    out = []
    for hook in hooks:
        for name, arch, hp in grid:
            name = run_dir_name(([hook] if len(hooks) > 1 else []) + ([name] if len(grid) > 1 or len(hooks) > 1 else []))
            out.append((name, RunSpec(architecture=arch, hparams=hp, expansion=args.expansion, d_sae=args.d_sae,
                                      epochs=args.epochs, stream=args.stream, stream_buffer=args.stream_buffer,
                                      cache_dir=args.cache_dir, downstream_tokens=args.downstream_tokens,
                                      data=replace(data, hook=hook), train=train)))
    _check_names(out)
    return out


def _hparams(args, archs: list[str]) -> dict:
    """The hyperparameters given (flags, --seed, --hparam), each flag checked to apply to every --arch."""
    from ..saes.registry import get_class

    given = collect(args, [a[3:] for a in vars(args) if a.startswith("hp_")], "hp_")
    valid = [set(get_class(a).config_class.__dataclass_fields__) for a in archs]
    for arch, fields in zip(archs, valid):
        foreign = sorted(set(given) - fields)
        if foreign:
            from ..errors import ConfigError

            raise ConfigError(f"option(s) {', '.join('--' + f.replace('_', '-') for f in foreign)} do not apply to "
                              f"--arch {arch}")
    hparams = {k: v for k, v in given.items() if k in _SHARED or all(k in f for f in valid)}
    hparams.update(parse_assignments(args.hparam))
    return hparams


_SHARED = ("normalize", "seed")  # settings every member shares, as a sweep's [sae] (not in the names)


def _grid(archs: list[str], hparams: dict) -> list[tuple[str, str, dict]]:
    """(member name, architecture, hyperparameters) of every member: the sweep's grid expander on
    one block, each member keeping the hyperparameters as given (run.json compares them on resume)
    with its own value of every comma-list one."""
    from ..experiments.presets import expand_grid
    from ..saes.registry import hyperparameters

    whole = _list_valued()  # a list given to one of these (--hparam prefix_fractions=[…]) is its value
    varying = [k for k, v in hparams.items() if isinstance(v, list) and k not in whole]
    block = {"architecture": archs, **{k: list(v) if isinstance(v, tuple) else v  # TOML's form of a sequence
                                       for k, v in hparams.items() if k not in _SHARED or k in varying}}
    out = []
    for m in expand_grid([block]):
        defaults = hyperparameters(m.architecture)
        out.append((m.name, m.architecture, {**hparams, **{k: m.hparams.get(k, defaults.get(k)) for k in varying}}))
    return out


def _check_names(named: list) -> None:
    """Two members may not share a run directory (hook points that differ only in other characters)."""
    seen: dict[str, str] = {}
    for (name, spec) in named:
        if name in seen:
            from ..errors import ConfigError

            raise ConfigError(f"runs {seen[name]!r} and {spec.data.hook!r} {spec.hparams_dict()} would share the run "
                              f"directory name {name!r}; give hook points that differ in letters or digits")
        seen[name] = f"{spec.data.hook} {spec.hparams_dict()}"


def run_dir_name(parts: list[str]) -> str:
    """The directory name of one member of a comma-list grid: its parts (hook point, sweep member
    name) joined by '-', with every character but letters, digits and ``._=+,-`` made '_' and no
    leading dot, so the name is one plain path component (a hook such as ``module:../../x`` cannot
    leave --out); "" for a single run (no parts)."""
    import re

    if not parts:
        return ""
    name = re.sub(r"[^A-Za-z0-9._=+,-]", "_", "-".join(parts))
    return re.sub(r"^\.+", lambda m: "_" * len(m.group()), name) or "_"


def resumable_names(out, named: list) -> list:
    """``named`` with the run directory name an earlier probsae gave a grid member (its varying
    values only: ``k4``, ``resid_pre.6-k4``) kept where that directory holds a run and the sweep
    name (``topk-k=4``) is free, so a grid started before the names changed resumes in place."""
    from pathlib import Path

    from ..progress import note
    from ..runs.spec import RUN_FILE

    specs = [s for _, s in named]
    if len({s.architecture for s in specs}) > 1:  # lists of architectures came with the sweep names
        return named
    hooks = len({s.data.hook for s in specs}) > 1
    varying = [k for k in specs[0].hparams_dict() if len({repr(s.hparams_dict().get(k)) for s in specs}) > 1]
    out_named = []
    for name, s in named:
        old = run_dir_name(([s.data.hook] if hooks else []) + [f"{k}{s.hparams_dict()[k]}" for k in varying])
        if old != name and (Path(out) / old / RUN_FILE).is_file() and not (Path(out) / name).exists():
            note(f"{Path(out) / old} holds this run under the name an earlier probsae gave it: resuming it there "
                 f"(a new grid names it {name})")
            name = old
        out_named.append((name, s))
    return out_named


def _inside(out, names: list[str]):
    """The member directories ``out/<name>``, each checked to lie directly inside ``out``."""
    from pathlib import Path

    from ..errors import ConfigError

    root = Path(out).resolve()
    dirs = [Path(out) / n for n in names]
    for d in dirs:
        if d.resolve().parent != root:
            raise ConfigError(f"run directory {d} would lie outside --out {out}")
    return dirs


def print_metrics(result: dict, file=None) -> None:
    file = file or sys.stdout
    m = result["heldout"]
    print(f"held-out tokens     {m['n_tokens']:,}", file=file)
    print(f"MSE                 {m['mse']:.5f}", file=file)
    print(f"FVU                 {m['fvu']:.4f}", file=file)
    print(f"explained variance  {m['explained_variance']:.4f}", file=file)
    print(f"L0                  {m['l0']:.2f}", file=file)
    print(f"alive latents       {m['alive']} / {m['alive'] + m['dead']}  (dead {m['dead']})", file=file)


def print_downstream(result) -> None:
    """The CE/KL lines of ``probsae eval`` and ``probsae train`` (with CIs and token counts)."""
    ds = result.get("downstream")
    if ds:
        def ci(key: str) -> str:
            c = (ds.get("ci") or {}).get(key)
            return f"  [{c[0]:.4f}, {c[1]:.4f}]" if c else ""
        print(f"CE clean            {ds['ce_clean']:.4f}")
        print(f"CE with SAE         {ds['ce_sae']:.4f}{ci('ce_sae')}")
        print(f"CE zero-ablation    {ds['ce_zero']:.4f}")
        print(f"CE recovered        {ds['ce_recovered']:.4f}{ci('ce_recovered')}")
        print(f"KL(clean ‖ SAE)     {ds['kl']:.4f}{ci('kl')}")
        print(f"CE/KL rest on       {int(ds['n_tokens']):,} held-out tokens in {ds.get('n_windows', '?')} windows "
              "(95 % CIs: bootstrap over windows)")
    elif result.get("downstream_note"):
        print(f"downstream          n/a: {result['downstream_note']}")


def run(args) -> int:
    named = specs_from_args(args)
    if named[0][1].train.deterministic:  # before the first cuBLAS call of the process, so it takes effect
        import os

        from ..devices import CUBLAS_DETERMINISTIC

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    command = "probsae " + shlex.join(sys.argv[1:])
    return _train(args, named, command)


def interrupted(args) -> str:
    """What Ctrl-C or SIGTERM leaves behind (cli.main prints it)."""
    every = args.train_checkpoint_every
    kept = (f"{args.out} resumes from its last checkpoint (one every {every} steps)" if every else
            f"no checkpoint is written before the end (--checkpoint-every 0), so {args.out} trains from step 0")
    return f"{kept}: run the same command again to continue"


def _train(args, named, command: str) -> int:
    from ..runs import train_run

    if len(named) == 1:
        spec = named[0][1]
        result = train_run(spec, args.out, command=command, force=args.force)
        if not result:  # a non-zero rank under torchrun: rank 0 reports
            return 0
        print(f"\n{spec.architecture} {spec.hparams_dict()} on {spec.data.model} {spec.data.hook} ({spec.data.corpus}), "
              f"trained on {result['train_final'].get('tokens', 0):,} tokens")
        print_metrics(result)
        print_downstream(result)
        print(f"run directory       {args.out}")
        print(f"training curves     {args.out}/training.png")
        return 0
    named = resumable_names(args.out, named)
    dirs = _inside(args.out, [name for name, _ in named])
    results = train_run([s for _, s in named], dirs, command=command, force=args.force)
    if not results or not results[0]:
        return 0
    speed = results[0]["throughput"]
    print(f"\n{len(named)} SAEs on one activation stream of {named[0][1].data.model}, "
          f"{speed['train_tokens']:,} tokens at {speed['train_tokens_per_s']:,.0f} tokens/s")
    ce = any(r.get("downstream") for r in results)
    print(f"{'run':24s} {'EV':>7s} {'FVU':>7s} {'L0':>7s} {'alive':>12s}" + ("  CE rec.    KL" if ce else "") + "  directory")
    for (name, _), r, d in zip(named, results, dirs):
        m, ds = r["heldout"], r.get("downstream")
        print(f"{name:24s} {m['explained_variance']:7.4f} {m['fvu']:7.4f} {m['l0']:7.2f} "
              f"{m['alive']:>5d}/{m['alive'] + m['dead']:<6d}"
              + (f"  {ds['ce_recovered']:7.4f} {ds['kl']:7.4f}" if ds else ("  " + " " * 15 if ce else "")) + f"  {d}")
    if ce:
        n = next(r["downstream"] for r in results if r.get("downstream"))
        print(f"CE/KL rest on {int(n['n_tokens']):,} held-out tokens ({n.get('n_windows', '?')} windows); "
              "95 % CIs in each metrics.json")
    return 0
