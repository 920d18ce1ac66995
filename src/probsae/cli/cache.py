"""probsae cache: extract a model's activations once into an on-disk cache (resumable)."""

from __future__ import annotations

from .options import add_dataclass_options, collect

NAME = "cache"
HELP = ("Extract activations at a hook point over a corpus into sharded caches (train and held-out "
        "splits); a killed extraction resumes where it stopped.")


def add_arguments(p) -> None:
    from ..data.prepare import DataSpec
    from ..runs.spec import RunSpec

    add_dataclass_options(p, DataSpec, dest_prefix="data_")
    p.add_argument("--cache-dir", default=RunSpec.cache_dir, help="root folder of activation caches")
    p.add_argument("--split", choices=["train", "holdout", "both"], default="both", help="which split(s) to extract")


def interrupted(args) -> str:
    """What Ctrl-C leaves behind (cli.main prints it)."""
    return "the extraction resumes after its last finished shard: run the same command again to continue"


def run(args) -> int:
    from ..data.prepare import DataSpec, prepare_caches

    spec = DataSpec(**collect(args, [a[5:] for a in vars(args) if a.startswith("data_")], "data_"))
    parts = ("train", "holdout") if args.split == "both" else (args.split,)
    for part, cache in zip(parts, prepare_caches(spec, args.cache_dir, parts=parts)):
        print(f"{part:8s} {cache.n_tokens:>12,} tokens  d={cache.d_in}  {cache.path}")
    return 0
