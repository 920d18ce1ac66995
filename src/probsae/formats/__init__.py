"""Export to and import from the SAE ecosystem's file formats (see docs/FORMATS.md).

    report = export_saelens(sae, "out/sae")          # sae_weights.safetensors + cfg.json
    sae = import_saelens("out/sae")
    report = export_sparsify(sae, "out/run", hookpoint="layers.8")   # out/run/layers.8/{cfg.json, sae.safetensors}
    sae = import_sparsify("out/run", hookpoint="layers.8")

An export that would change inference raises ``LossyExportError`` unless ``allow_lossy=True``;
every export writes ``PROBSAE_EXPORT.md`` (what changed, what was dropped) next to its files.
"""

from ._common import NOTES_FILE, ExportReport, LossyExportError, run_metadata
from .saelens import export_saelens, import_saelens, saelens_hook_name
from .sparsify import export_sparsify, find_hookpoints, import_sparsify, sparsify_hookpoint

FORMATS = ("saelens", "sparsify")

__all__ = [
    "FORMATS", "NOTES_FILE", "ExportReport", "LossyExportError", "run_metadata",
    "export_saelens", "import_saelens", "saelens_hook_name",
    "export_sparsify", "import_sparsify", "find_hookpoints", "sparsify_hookpoint",
]
