"""``probsae sweep CONFIG``: train a grid of SAEs on one activation stream (see docs/EXPERIMENTS.md)."""

from __future__ import annotations

import argparse
import json
import shlex

NAME = "sweep"
HELP = ("Train a grid of SAEs (architectures × K/λ × hyperparameters) on one activation stream, "
        "resumably, and evaluate each on held-out tokens.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG",
                   help="a sweep TOML file, or the name of a preset shipped with probsae (minilm-cpu, offline-en-cpu, offline-en-gpu, paper-gpt2, ...)")
    p.add_argument("--out", default=None, help="sweep directory (default: runs/<config name>)")
    p.add_argument("--only", default=None,
                   help="comma-separated member names or study labels (pareto, ablation, temperature) to run")
    p.add_argument("--max-members-per-pass", type=int, default=None,
                   help="train at most this many SAEs at once (memory); the rest in later passes")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.tokens=200000 --set sae.d_sae=1536 "
                        "(VALUE is TOML: 3, 1e-3, true, \"text\", [4, 8])")
    p.add_argument("--device", default=None, help="training device (default: the config's, else auto)")
    p.add_argument("--dry-run", action="store_true", help="print the members and what would run, train nothing")


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    import tomllib

    from ..errors import ConfigError

    for ov in overrides:
        key, sep, value = ov.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {ov!r}: expected SECTION.KEY=VALUE, e.g. train.tokens=200000")
        try:
            val = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            val = value  # a bare string
        section, _, name = key.partition(".")
        raw.setdefault(section, {})[name] = val
    return raw


def run(args: argparse.Namespace) -> int:
    import sys
    import tomllib
    from pathlib import Path

    from .. import progress
    from ..experiments.presets import budget_configs, parse_config, resolve_config_path
    from ..experiments.sweep import run_sweep

    path = resolve_config_path(args.config)
    raw = apply_overrides(tomllib.loads(path.read_text()), args.overrides)
    cfg = parse_config(raw, source=str(path))
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    only = [s for s in (args.only or "").split(",") if s] or None
    command = "probsae sweep " + " ".join(shlex.quote(a) for a in (sys.argv[2:] if sys.argv[1:2] == ["sweep"]
                                                                      else _argv(args)))
    for sub, bcfg in budget_configs(cfg):  # [sweep] budgets: one sweep per budget, in OUT/tokens=B
        bout = out / sub if sub else out
        summary = run_sweep(bcfg, bout, only=only, max_members_per_pass=args.max_members_per_pass,
                            progress=progress.enabled(), dry_run=args.dry_run, command=command,
                            device=args.device)
        if args.dry_run:
            print(json.dumps({"budget": sub or None, **summary}, indent=2))
        else:
            print(f"sweep {cfg.name}{' ' + sub if sub else ''}: {summary['results']} members with metrics in "
                  f"{bout} (this invocation {summary['wall_seconds']:.0f}s)")
    if not args.dry_run:
        print(f"Next: probsae report {out}")
    return 0


def interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves behind (cli.main prints it)."""
    return ("members with a metrics.json are kept, the others resume from their last checkpoint ([sweep] "
            "checkpoint_every steps) and a stopped extraction resumes too: run the same command again to continue")


def _argv(args: argparse.Namespace) -> list[str]:
    """A reconstruction of the arguments (when called through ``main([...])``, not the shell)."""
    out = [args.config]
    if args.out:
        out += ["--out", args.out]
    if args.only:
        out += ["--only", args.only]
    if args.max_members_per_pass:
        out += ["--max-members-per-pass", str(args.max_members_per_pass)]
    for ov in args.overrides:
        out += ["--set", ov]
    if args.device:
        out += ["--device", args.device]
    return out
