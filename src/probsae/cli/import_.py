"""``probsae import SRC --format saelens|sparsify --out RUN_DIR``: load another library's SAE files
as a probsae SAE (see docs/FORMATS.md)."""

from __future__ import annotations

import argparse

NAME = "import"
HELP = ("Import a SAELens or sparsify SAE into a probsae run directory (sae.safetensors + config.json), "
        "usable by probsae eval / load_sae.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC",
                   help="SAELens: a directory with cfg.json + sae_weights.safetensors; sparsify: a hook-point "
                        "directory, or a run directory with --hookpoint")
    p.add_argument("--format", required=True, choices=("saelens", "sparsify"), help="source file format")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="directory to write the probsae SAE into")
    p.add_argument("--hookpoint", default=None, help="sparsify: which hook-point subdirectory of SRC to import")
    p.add_argument("--force", action="store_true",
                   help="write into RUN_DIR even when it already holds an SAE or other files (which may be overwritten)")


def interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves behind (cli.main prints it)."""
    return (f"{args.out} may hold part of the imported SAE (each file is whole: files are replaced atomically): "
            "run the same command again with --force")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from ..formats import import_saelens, import_sparsify
    from ..io import check_output_dir, clean_stale_tmp
    from ..saes.base import CONFIG_FILE

    out = Path(args.out)
    if (out / CONFIG_FILE).is_file() and not args.force:
        raise ConfigError(f"{out} already holds an SAE; pass --force to overwrite it")
    # any other non-empty folder (e.g. a sae.safetensors without config.json, the user's files) is not ours
    check_output_dir(out, lambda _: False, args.force, "probsae SAE directory")
    if args.format == "saelens":
        if args.hookpoint:
            raise ConfigError("--hookpoint applies to --format sparsify only")
        sae = import_saelens(args.src)
    else:
        sae = import_sparsify(args.src, hookpoint=args.hookpoint)
    clean_stale_tmp(out)  # temporaries of an earlier, killed import
    sae.save(out)
    print(f"{args.src} → {out}: probsae {sae.architecture} (d_in={sae.d_in}, d_sae={sae.d_sae}, "
          f"normalize={sae.cfg.normalize!r})")
    return 0
