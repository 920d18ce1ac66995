"""``probsae export RUN_DIR --format saelens|sparsify --out DIR``: write a trained SAE in another
library's file format (see docs/FORMATS.md)."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = ("Export a trained SAE (a run directory, or every run of a sweep directory) to SAELens or sparsify "
        "files. Refuses exports that would change inference unless --allow-lossy.")

DTYPES = ("float32", "bfloat16", "float16")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a directory holding a trained SAE (sae.safetensors + config.json), or a sweep directory "
                        "whose subdirectories do (each is exported to OUT/<name>)")
    p.add_argument("--format", required=True, choices=("saelens", "sparsify"), help="target file format")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--allow-lossy", action="store_true",
                   help="export even when the target cannot reproduce probsae's inference exactly (prob_topk's "
                        "gate, 'unit' normalisation for sparsify, …); the differences go to PROBSAE_EXPORT.md")
    p.add_argument("--hook-name", default=None,
                   help="SAELens hook name or probsae hook point (resid_post.8 → blocks.8.hook_resid_post); "
                        "default: the SAE's metadata (config.json), else the run log's hook point")
    p.add_argument("--model-name", default=None, help="model name for the metadata (default: the run log's)")
    p.add_argument("--hookpoint", default=None,
                   help="sparsify: name of the hook-point folder (default: from the run's hook point, e.g. "
                        "resid_post.8 → layers.8, or 'sae')")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="dtype of the written weights")
    p.add_argument("--force", action="store_true",
                   help="write into --out even when it is a non-empty directory that no probsae export wrote")


def _holds_export(path) -> bool:
    """A directory an earlier export wrote (its notes file at the top or one level down)."""
    from ..formats import NOTES_FILE

    return any(next(path.glob(pattern), None) for pattern in (NOTES_FILE, f"*/{NOTES_FILE}", f"*/*/{NOTES_FILE}"))


def _runs(root):
    from pathlib import Path

    from ..errors import SAEFileError
    from ..saes.base import CONFIG_FILE

    root = Path(root)
    if (root / CONFIG_FILE).is_file():
        return [(None, root)]
    subs = sorted(p for p in root.iterdir() if (p / CONFIG_FILE).is_file()) if root.is_dir() else []
    if not subs:
        raise SAEFileError(f"{root} holds no trained SAE (no {CONFIG_FILE}), nor subdirectories that do")
    return [(p.name, p) for p in subs]


def interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves behind (cli.main prints it)."""
    return (f"{args.out} may hold part of the export (each file is whole: files are replaced atomically): "
            "run the same command again with --force")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import torch

    from ..io import check_output_dir, clean_stale_tmp
    from ..formats import export_saelens, export_sparsify, run_metadata, sparsify_hookpoint
    from ..formats._common import pick
    from ..saes import load_sae

    dtype = getattr(torch, args.dtype)
    runs = _runs(args.run_dir)
    check_output_dir(args.out, _holds_export, args.force, "probsae export")
    for name, run_dir in runs:
        sae = load_sae(run_dir)
        meta = run_metadata(run_dir)
        hook = args.hook_name or sae.metadata.hook_name or pick(meta, "hook_name", "hook_point", "hook")
        model = args.model_name or sae.metadata.model_name or pick(meta, "model_name", "model")
        unknown = [(what, flag) for what, flag, v in (("hook point", "--hook-name", hook), ("model", "--model-name", model))
                   if v is None]
        if unknown:
            print(f"probsae export: warning: {run_dir} records no {' and no '.join(w for w, _ in unknown)} (neither "
                  f"config.json's metadata, run.json nor the log's start record): the exported metadata says null; "
                  f"pass {' and '.join(f for _, f in unknown)}", file=sys.stderr)
        out = Path(args.out) / name if name else Path(args.out)
        if args.format == "saelens":
            report = export_saelens(sae, out, hook_name=hook, model_name=model, allow_lossy=args.allow_lossy,
                                    dtype=dtype)
        else:
            hp = args.hookpoint or sparsify_hookpoint(hook, model, sae.metadata.target_hook_name) or "sae"
            report = export_sparsify(sae, out, hookpoint=hp, allow_lossy=args.allow_lossy, dtype=dtype)
        clean_stale_tmp(report.path)  # temporaries of an earlier, killed export
        status = "exact" if report.exact else "LOSSY"
        print(f"{run_dir} → {report.path} ({args.format} {report.target_architecture}, {status}); "
              f"notes: {report.notes_path}")
        for c in report.changes:
            print(f"  changed: {c}")
    return 0
