"""``probsae`` entry point. Each subcommand lives in its own module exposing
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``, and optionally
``interrupted(args) -> str``: what Ctrl-C or SIGTERM leaves behind and how to go on (else
:data:`INTERRUPTED`)."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from ..errors import ProbSAEError
from ..io import os_reason

#: What Ctrl-C or SIGTERM leaves behind, for a subcommand without its own ``interrupted(args)``.
INTERRUPTED = ("every file it finished is whole (files are replaced atomically), but its output may be incomplete: "
               "run the same command again")

# Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = [
    "train", "eval", "cache", "corpus", "sweep", "report", "bench", "autointerp", "dashboard", "serve", "export",
    "import_",
]


class Terminated(BaseException):
    """SIGTERM (what ``kill``, Slurm and Kubernetes send), raised in the main thread so that a
    command unwinds (locks released, temporaries removed) and reports as after Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None ("not given")."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or with ``only`` (a subcommand's NAME) the full options of
    that one alone: the others are listed by name and help, without their options, so that
    ``probsae --help`` and ``probsae eval …`` never import the library (and torch) that other
    subcommands' options are built from."""
    parser = argparse.ArgumentParser(
        prog="probsae",
        description="Train and evaluate (Probabilistic TopK) sparse autoencoders on language-model activations.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        mod = importlib.import_module(f"probsae.cli.{name}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP,
                           formatter_class=_HelpFormatter)
        if only is not None and mod.NAME != only:
            continue
        mod.add_arguments(p)
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress on stderr: bars on a terminal; in a log (stderr not a terminal) a status line "
                            "every minute (PROBSAE_LOG_EVERY_S) and at the end of each stage; --no-progress: "
                            "only warnings and errors (default: bars on a terminal, status lines otherwise)")
        p.set_defaults(_run=mod.run, _interrupted=getattr(mod, "interrupted", None))
    return parser


def _command(argv: list[str]) -> str:
    """The subcommand ``argv`` names: its first argument that is not an option ('' for none, e.g.
    ``probsae --help``; an unknown name then gets argparse's 'invalid choice' from the parser)."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from .. import progress

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        with progress.configured(args.progress):
            return int(args._run(args) or 0)
    except ProbSAEError as e:
        print(f"probsae {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file system failure no module turned into a ProbSAEError: still one line
        where = f" {e.filename}" if e.filename else ""
        print(f"probsae {args.command}: error: cannot access{where} ({os_reason(e)})", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as e:
        what = args._interrupted(args) if args._interrupted else INTERRUPTED
        how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"probsae {args.command}: {how}; {what}", file=sys.stderr, flush=True)
        return 128 + signal.SIGTERM if isinstance(e, Terminated) else 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
