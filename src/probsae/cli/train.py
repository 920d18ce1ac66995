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
        "Comma lists (--k 4,8,16,24,32, --hook resid_pre.6,resid_pre.8) train one SAE per "
        "combination on one activation stream, each in --out/<name>; a list-valued hyperparameter "
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
    from ..saes.registry import architectures, get_class
    from ..training.config import TrainConfig

    p.add_argument("--arch", default=RunSpec.architecture, choices=architectures(), help="SAE architecture")
    p.add_argument("--out", default="runs/default", help="run directory (resumed if it holds a checkpoint)")
    p.add_argument("--force", action="store_true",
                   help="write into --out (with comma lists: each run directory under it) even when it is "
                        "a non-empty directory that is not a probsae run")
    g = p.add_argument_group("SAE size")
    g.add_argument("--expansion", type=int, default=RunSpec.expansion, help="d_sae = expansion × d_in (the paper: 16)")
    g.add_argument("--d-sae", type=int, default=None, help="number of latents (overrides --expansion)")
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


def _list_valued() -> set[str]:
    """Hyperparameters whose value is a list in some architecture (``prefix_fractions``)."""
    from ..saes.registry import architectures, get_class

    return set().union(*(list_valued(get_class(a).config_class) for a in architectures()))


def specs_from_args(args) -> list[tuple[str, "object"]]:
    """One (name, RunSpec) per combination of the comma lists among the hyperparameters and
    --hook; the name (e.g. ``k4`` or ``resid_pre.6-k4``) names the varying values ("" for one run)."""
    import itertools
    from dataclasses import replace

    from ..data.prepare import DataSpec
    from ..runs.spec import RunSpec
    from ..saes.registry import get_class
    from ..training.config import TrainConfig

    hp_names = [a[3:] for a in vars(args) if a.startswith("hp_")]
    given = collect(args, hp_names, "hp_")
    valid = set(get_class(args.arch).config_class.__dataclass_fields__)
    foreign = sorted(set(given) - valid)
    if foreign:
        from ..errors import ConfigError

        raise ConfigError(f"option(s) {', '.join('--' + f.replace('_', '-') for f in foreign)} do not apply to "
                          f"--arch {args.arch}")
    hparams = {k: v for k, v in given.items() if k in ("normalize", "seed") or k in valid}
    if args.train_seed is not None:
        hparams["seed"] = args.train_seed
    hparams.update(parse_assignments(args.hparam))
    data = DataSpec(**collect(args, [a[5:] for a in vars(args) if a.startswith("data_")], "data_"))
    train_kw = collect(args, [a[6:] for a in vars(args) if a.startswith("train_")], "train_")
    train = TrainConfig(steps=args.steps, **train_kw)
    hooks = [h.strip() for h in data.hook.split(",") if h.strip()]
    whole = _list_valued()  # a list given to one of these (--hparam prefix_fractions=[…]) is its value
    grid = {k: v for k, v in hparams.items() if isinstance(v, list) and k not in whole}
    out = []
    for hook, values in itertools.product(hooks, itertools.product(*grid.values())):
        hp = {**hparams, **dict(zip(grid, values))}
        name = member_name(([hook] if len(hooks) > 1 else []) + [f"{k}{v}" for k, v in zip(grid, values)])
        out.append((name, RunSpec(architecture=args.arch, hparams=hp, expansion=args.expansion, d_sae=args.d_sae,
                                  epochs=args.epochs, stream=args.stream, stream_buffer=args.stream_buffer,
                                  cache_dir=args.cache_dir, downstream_tokens=args.downstream_tokens,
                                  data=replace(data, hook=hook), train=train)))
    seen: dict[str, str] = {}
    for (name, spec) in out:
        if name in seen:
            from ..errors import ConfigError

            raise ConfigError(f"runs {seen[name]!r} and {spec.data.hook!r} {spec.hparams} would share the run "
                              f"directory name {name!r}; give hook points that differ in letters or digits")
        seen[name] = f"{spec.data.hook} {spec.hparams}"
    return out


def member_name(parts: list[str]) -> str:
    """The directory name of one member of a comma-list grid: its varying values joined by '-',
    with every character but letters, digits and ``._=+-`` made '_' and no leading dot, so the name
    is one plain path component (a hook such as ``module:../../x`` cannot leave --out); "" for a
    single run (no varying values)."""
    import re

    if not parts:
        return ""
    name = re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join(parts))
    return re.sub(r"^\.+", lambda m: "_" * len(m.group()), name) or "_"


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
        print(f"\n{spec.architecture} {spec.hparams} on {spec.data.model} {spec.data.hook} ({spec.data.corpus}), "
              f"trained on {result['train_final'].get('tokens', 0):,} tokens")
        print_metrics(result)
        print_downstream(result)
        print(f"run directory       {args.out}")
        print(f"training curves     {args.out}/training.png")
        return 0
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
