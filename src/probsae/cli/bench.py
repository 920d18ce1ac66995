"""probsae bench: SAEBench-style metrics of trained runs (core, sparse probing, absorption), with the model's
activations extracted once per hook point for all its SAEs."""

from __future__ import annotations

NAME = "bench"
HELP = ("Benchmark runs as SAEBench does: core metrics (L0, FVU, CE recovered and KL with CIs, alive/dead, feature "
        "density), sparse probing (k latents vs a dense probe) on offline tasks and feature absorption (first-letter "
        "task); bench.json per run, a table and figures across runs.")


def add_arguments(p) -> None:
    from ..bench.settings import BenchSettings
    from .options import add_dataclass_options

    p.add_argument("run_dirs", nargs="+", metavar="RUN", help="run directories (probsae train, or sweep members)")
    p.add_argument("--out", default="bench", help="output directory: OUT/<run>/bench.json, OUT/bench.md, figures")
    add_dataclass_options(p, BenchSettings)


def interrupted(args) -> str:
    return ("the runs are unchanged (bench writes only under --out); each run's bench.json keeps the metrics that "
            "finished, and a stopped extraction of held-out activations resumes: run the same command again")


def run(args) -> int:
    import dataclasses
    import shlex
    import sys

    from ..bench.report import REPORT_FILE
    from ..bench.runner import bench
    from ..bench.settings import BenchSettings
    from .options import collect

    settings = BenchSettings(**collect(args, [f.name for f in dataclasses.fields(BenchSettings)]))
    docs = bench(args.run_dirs, args.out, settings, command="probsae " + shlex.join(sys.argv[1:]))
    print(f"wrote {len(docs)} bench.json under {args.out} and {args.out}/{REPORT_FILE}")
    return 0
