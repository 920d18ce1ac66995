"""probsae train: one SAE on (model, hook point, corpus) into a run directory (resumable)."""

from __future__ import annotations

import shlex
import sys

from ..data.prepare import DataSpec
from ..saes.registry import architectures, get_class
from ..training.config import TrainConfig
from .options import add_dataclass_options, collect, parse_assignments

NAME = "train"
HELP = ("Train an SAE on a model's activations: writes weights, config, run.json, log.jsonl, "
        "metrics.json and training.png into --out, and resumes if --out holds a checkpoint.")

_TRAIN_SKIP = {"steps", "log_path", "extra", "progress"}  # progress: the --progress/--no-progress of every command


def _hparam_fields() -> dict[str, type]:
    """Union of every architecture's hyperparameters (each flag applies to the archs that have it)."""
    out = {}
    for name in architectures():
        for f in get_class(name).config_class.__dataclass_fields__.values():
            if f.name not in ("d_in", "d_sae"):
                out.setdefault(f.name, get_class(name).config_class)
    return out


def add_arguments(p) -> None:
    p.add_argument("--arch", default="prob_topk", choices=architectures(), help="SAE architecture")
    p.add_argument("--out", default="runs/default", help="run directory (resumed if it holds a checkpoint)")
    g = p.add_argument_group("SAE size")
    g.add_argument("--expansion", type=int, default=16, help="d_sae = expansion × d_in (the paper: 16)")
    g.add_argument("--d-sae", type=int, default=None, help="number of latents (overrides --expansion)")
    g = p.add_argument_group("architecture hyperparameters (each applies to the architectures that have it)")
    seen: set[str] = {"seed"}  # the SAE's init seed follows --seed (TrainConfig)
    for name in architectures():
        cls = get_class(name).config_class
        names = [f for f in cls.__dataclass_fields__ if f not in ("d_in", "d_sae") and f not in seen]
        seen.update(names)
        add_dataclass_options(g, cls, skip=set(cls.__dataclass_fields__) - set(names), dest_prefix="hp_")
    g.add_argument("--hparam", action="append", metavar="KEY=VALUE", help="any other hyperparameter (repeatable)")
    g = p.add_argument_group("data")
    add_dataclass_options(g, DataSpec, dest_prefix="data_", skip={"device"})  # extraction uses --device
    g.add_argument("--cache-dir", default="cache", help="root folder of activation caches (shared across runs)")
    g.add_argument("--stream", action="store_true", help="train straight from the model without a cache")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=None, help="optimiser steps (default: --epochs passes over the cache)")
    g.add_argument("--epochs", type=float, default=1.0, help="passes over the cached training tokens when --steps is not given")
    add_dataclass_options(g, TrainConfig, skip=_TRAIN_SKIP, dest_prefix="train_")


def spec_from_args(args):
    from ..runs.spec import RunSpec

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
    train_kw.setdefault("checkpoint_every", 100)
    train = TrainConfig(steps=args.steps, **train_kw)
    from ..training.loop import resolve_device

    data.device = str(resolve_device(train.device))
    return RunSpec(architecture=args.arch, hparams=hparams, expansion=args.expansion, d_sae=args.d_sae,
                   epochs=args.epochs, stream=args.stream, cache_dir=args.cache_dir, data=data, train=train)


def print_metrics(result: dict, file=None) -> None:
    file = file or sys.stdout
    m = result["heldout"]
    print(f"held-out tokens     {m['n_tokens']:,}", file=file)
    print(f"MSE                 {m['mse']:.5f}", file=file)
    print(f"FVU                 {m['fvu']:.4f}", file=file)
    print(f"explained variance  {m['explained_variance']:.4f}", file=file)
    print(f"L0                  {m['l0']:.2f}", file=file)
    print(f"alive latents       {m['alive']} / {m['alive'] + m['dead']}  (dead {m['dead']})", file=file)


def run(args) -> int:
    from ..runs import train_run

    spec = spec_from_args(args)
    result = train_run(spec, args.out, command="probsae " + shlex.join(sys.argv[1:]))
    if not result:  # a non-zero rank under torchrun: rank 0 reports
        return 0
    print(f"\n{spec.architecture} {spec.hparams} on {spec.data.model} {spec.data.hook} ({spec.data.corpus}), "
          f"trained on {result['train_final'].get('tokens', 0):,} tokens")
    print_metrics(result)
    print(f"run directory       {args.out}")
    print(f"training curves     {args.out}/training.png")
    return 0
