"""``probsae report SWEEP_DIR``: Pareto frontier, alive latents, ablations, temperature study and a
Markdown table of every run, from a sweep directory written by ``probsae sweep``."""

from __future__ import annotations

import argparse
import shlex

NAME = "report"
HELP = ("Write PNG figures and a Markdown report (Pareto frontier, alive latents, ablations, "
        "temperature, all final metrics) of a sweep directory.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a directory written by 'probsae sweep' (a sweep with a "
                   "seed axis or [sweep] budgets gets the multi-seed report with confidence intervals)")
    p.add_argument("--out", default=None, help="output directory (default: SWEEP_DIR/report)")
    p.add_argument("--title", default=None, help="report title")
    p.add_argument("--notes", default=None, help="a Markdown file inlined into the report as its 'Notes' section "
                   "(interpretation, follow-ups)")
    p.add_argument("--force", action="store_true",
                   help="write into --out even when it is a non-empty folder that holds no report (its report.md, "
                        "figures and metrics.csv are then overwritten)")


def run(args: argparse.Namespace) -> int:
    from ..experiments.report import make_report
    from ..experiments.when import is_when_sweep, make_when_report

    cmd = ["probsae", "report", args.sweep_dir]
    if args.out:
        cmd += ["--out", args.out]
    if args.title:
        cmd += ["--title", args.title]
    if args.notes:
        cmd += ["--notes", args.notes]
    make = make_when_report if is_when_sweep(args.sweep_dir) else make_report  # seeds or budgets: paired CIs
    path = make(args.sweep_dir, args.out, command=" ".join(shlex.quote(c) for c in cmd), title=args.title,
                notes=args.notes, force=args.force)
    print(f"report written to {path}")
    return 0
