"""probsae eval: metrics of a trained run on its held-out tokens (+ downstream CE/KL for causal LMs)."""

from __future__ import annotations

NAME = "eval"
HELP = ("Evaluate a run directory on held-out tokens: MSE, FVU, explained variance, L0, alive/dead; "
        "for causal LMs also CE with the SAE spliced in, clean CE, zero-ablation CE, CE recovered and KL.")


DOWNSTREAM_TOKENS = 32_768  # evaluation.downstream.DOWNSTREAM_TOKENS (tested equal; not imported: --help stays torch-free)


def add_arguments(p) -> None:
    p.add_argument("run_dir", help="a run directory written by probsae train")
    p.add_argument("--eval-tokens", type=int, default=None, help="evaluate on at most this many held-out tokens")
    p.add_argument("--no-downstream", action="store_true", help="skip the CE/KL evaluation")
    p.add_argument("--downstream-tokens", type=int, default=None,
                   help="held-out next-token positions CE/KL rest on (whole windows; default "
                        f"{DOWNSTREAM_TOKENS:,}); the result gives 95 %% CIs over windows")
    p.add_argument("--cache-dir", default=None, help="activation cache root (default: the run's)")
    p.add_argument("--out", default=None, help="where to write the result JSON (default: RUN_DIR/eval.json)")
    p.add_argument("--device", default=None,
                   help="device of the SAE and the model (default: the run's training device setting, e.g. auto)")


def interrupted(args) -> str:
    """What Ctrl-C leaves behind (cli.main prints it)."""
    return ("no result was written (it is written at the end) and the run directory is unchanged; a stopped "
            "extraction of held-out activations resumes: run the same command again")


def run(args) -> int:
    from ..runs import eval_run
    from .train import print_downstream, print_metrics

    result = eval_run(args.run_dir, eval_tokens=args.eval_tokens, downstream=not args.no_downstream,
                      downstream_tokens=args.downstream_tokens, cache_dir=args.cache_dir, out=args.out,
                      device=args.device)
    print_metrics(result)
    print_downstream(result)
    return 0
