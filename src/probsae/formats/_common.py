"""Pieces shared by the SAELens and sparsify converters: the export report and its note file,
folding a constant input scale into the weights, the ``probsae`` provenance block, run metadata."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError, ProbSAEError, SAEFileError
from ..io import atomic_write_text
from ..saes.declarations import Export, Imported, NotExpressible
from ..tensorfile import nonfinite_names

NOTES_FILE = "PROBSAE_EXPORT.md"
BLOCK_KEY = "probsae"  # provenance block inside the target's cfg.json (both targets ignore it)


class LossyExportError(ConfigError):
    """The target format cannot represent this SAE exactly and ``allow_lossy`` was not given."""


@dataclass
class ExportReport:
    """What an export wrote and what it could not carry over."""

    path: Path
    """Directory holding the target's files."""
    target: str
    """'saelens' or 'sparsify'."""
    source_architecture: str
    target_architecture: str
    exact: bool
    """True when the exported SAE gives the same codes and reconstructions at inference (up to
    float rounding and, for SAELens layer_norm, SAELens's eps)."""
    changes: list[str] = field(default_factory=list)
    """How inference in the target differs from probsae's (empty when exact)."""
    dropped: list[str] = field(default_factory=list)
    """State or hyperparameters not written (training-only or not representable)."""
    notes: list[str] = field(default_factory=list)
    """Other facts a user of the exported files must know (normalisation folding, eps, …)."""
    notes_path: Path | None = None

    def write_notes(self, sae) -> Path:
        lines = [
            f"# probsae export to {self.target}",
            "",
            f"- source: probsae `{self.source_architecture}` SAE, d_in={sae.d_in}, d_sae={sae.d_sae}, "
            f"normalize={sae.cfg.normalize!r}",
            f"- target architecture: `{self.target_architecture}`",
            f"- inference identical: {'yes' if self.exact else 'NO (lossy export, --allow-lossy was given)'}",
            "",
        ]
        if self.changes:
            lines += ["## Behaviour that changes at inference", ""] + [f"- {c}" for c in self.changes] + [""]
        if self.dropped:
            lines += ["## Not exported", ""] + [f"- {d}" for d in self.dropped] + [""]
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        lines += ["probsae source config:", "", "```json", json.dumps(sae.config_dict()["config"], indent=2), "```", ""]
        self.notes_path = atomic_write_text(self.path / NOTES_FILE, "\n".join(lines))
        return self.notes_path


def refuse_or_allow(target: str, arch: str, changes: list[str], allow_lossy: bool) -> None:
    if changes and not allow_lossy:
        bullet = "\n  - ".join(changes)
        raise LossyExportError(
            f"{target} cannot represent this probsae {arch!r} SAE exactly; exporting would change inference:\n"
            f"  - {bullet}\nPass allow_lossy=True (CLI: --allow-lossy) to export anyway; the differences are then "
            f"written to {NOTES_FILE} next to the exported files."
        )


def working_state(sae) -> dict[str, Tensor]:
    """The SAE's parameters and buffers, detached float64 CPU copies (folding is done in float64)."""
    return {k: v.detach().cpu().clone().double() if v.is_floating_point() else v.detach().cpu().clone()
            for k, v in sae.state_dict().items()}


def exported_core(state: dict[str, Tensor], export) -> dict[str, Tensor]:
    """W_enc, W_dec and b_dec as the target gets them before any input-scale folding: the
    declaration's ``decoder_scale`` folded into the decoder."""
    s = float(export.decoder_scale)
    return {"W_enc": state["W_enc"], "W_dec": state["W_dec"] * s, "b_dec": state["b_dec"] * s}


def fold_input_scale(state: dict[str, Tensor], c: float) -> dict[str, Tensor]:
    """Re-express an SAE that reads x_n for one that reads c·x_n and returns c·x̂_n:
    W_enc/c, b_dec·c, W_dec·c (codes, thresholds and encoder biases are unchanged)."""
    out = dict(state)
    out["W_enc"] = state["W_enc"] / c
    out["W_dec"] = state["W_dec"] * c
    out["b_dec"] = state["b_dec"] * c
    return out


def unit_to_layernorm_factor(d_in: int) -> float:
    """SAELens's 'layer_norm' input is (x − mean)/std with the unbiased std, i.e. sqrt(d_in − 1)
    times probsae's 'unit' input (x − mean)/‖x − mean‖ (ignoring SAELens's eps of 1e-5)."""
    if d_in < 2:
        raise ConfigError("unit normalisation with d_in < 2 has no SAELens layer_norm equivalent")
    return math.sqrt(d_in - 1)


def provenance(sae) -> dict[str, Any]:
    """The ``probsae`` block written into the target's cfg.json: enough to rebuild the same
    probsae SAE (architecture, hyperparameters, normalisation) on import."""
    from ..version import __version__

    block = {"version": __version__, "architecture": sae.architecture, "config": sae.config_dict()["config"]}
    if sae.cfg.normalize == "scalar":
        block["scale"] = float(sae.normalizer.scale)
    return block


def expressible(export: Export | NotExpressible, target: str, arch: str) -> Export:
    """An architecture's export declaration, or the ConfigError saying why there is none."""
    if isinstance(export, NotExpressible):
        raise ConfigError(f"cannot export probsae {arch!r} to {target}: {export.reason}")
    return export


def readable(fmt: str) -> tuple[str, ...]:
    """The SAE kinds of format ``fmt`` that some registered architecture reads (``reads``)."""
    from ..saes import get_class
    from ..saes.registry import architectures

    return tuple(dict.fromkeys(s for a in architectures() for s in get_class(a).reads.get(fmt, ())))


class _ReadTensors(dict):
    """An imported file's tensors, remembering the names a conversion read."""

    def __init__(self, tensors: dict[str, Tensor]):
        super().__init__(tensors)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Tensor:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        self.read.add(key)
        return super().pop(key, *default)


def read_with(fmt: str, source: str, cfg: dict[str, Any], tensors: dict[str, Tensor], block: dict | None,
              path: Path) -> tuple[str, Imported]:
    """The architecture that reads a ``fmt`` SAE of kind ``source`` and its reading: the one the
    provenance block names first, then every architecture that ``reads`` it, in registry order
    (an architecture may decline a file by returning None). A tensor of the file that the reading
    does not use is an error: the file is not the SAE its config says."""
    from ..saes import get_class
    from ..saes.registry import architectures

    named = (block or {}).get("architecture")
    order = sorted((a for a in architectures() if source in get_class(a).reads.get(fmt, ())), key=lambda a: a != named)
    for arch in order:
        seen = _ReadTensors(tensors)
        try:
            imported = getattr(get_class(arch), f"from_{fmt}")(source, cfg, seen, block)
        except (ConfigError, SAEFileError) as e:
            raise type(e)(f"{path}: {e}") from None
        if imported is not None:
            unused = sorted(set(tensors) - seen.read)
            if unused:
                raise SAEFileError(f"{path} holds tensors a {fmt} {source!r} SAE does not define: {unused}")
            return arch, imported
    raise ConfigError(f"{path}: no probsae architecture reads this {fmt} {source!r} SAE")


def load_imported(arch: str, d_in: int, d_sae: int, normalize: str, c: float, imported: Imported,
                  block: dict | None, path: Path):
    """Build the probsae ``arch`` SAE an import maps to and load its converted tensors, whose input
    scale ``c`` (the factor the target format's input has over probsae's working scale) is undone."""
    tensors = fold_input_scale(imported.tensors, 1.0 / c)
    sae = build_imported(arch, d_in, d_sae, normalize, imported.hparams, block, path)
    tensors["normalizer.scale"] = torch.tensor(1.0 / c if normalize == "scalar" else 1.0)
    tensors["normalizer.fitted"] = torch.tensor(normalize == "scalar")
    load_into(sae, tensors, path)
    bad = nonfinite_names(sae.state_dict())
    if bad:  # finite file weights that overflow once converted (an extreme scale, float32 range)
        raise SAEFileError(f"{path}: the converted weights {bad} hold NaN/inf values (the file's values, scaled "
                           "to probsae's form, overflow its float32 weights)")
    return sae


def build_imported(arch: str, d_in: int, d_sae: int, normalize: str, hparams: dict[str, Any], block: dict | None,
                   path: Path | None = None):
    """Build the probsae SAE an import maps to. The provenance block's hyperparameters are used
    only when it names the same architecture (so a lossy export never comes back disguised); each
    is type-checked first (:func:`checked_hparams`)."""
    from ..saes import build_sae, get_class

    cfg_fields = set(get_class(arch).config_class.field_names()) - {"d_in", "d_sae", "normalize"}
    hp: dict[str, Any] = {}
    if block and block.get("architecture") == arch:
        hp.update({k: v for k, v in (block.get("config") or {}).items() if k in cfg_fields})
    hp.update({k: v for k, v in hparams.items() if k in cfg_fields})
    where = f"{path}: imported hyperparameters" if path is not None else "imported hyperparameters"
    try:
        return build_sae(arch, d_in=d_in, d_sae=d_sae, normalize=normalize, **checked_hparams(arch, hp, where))
    except ConfigError as e:
        raise SAEFileError(f"{where}: {e}") from None


def checked_hparams(arch: str, hp: dict[str, Any], where: str) -> dict[str, Any]:
    """``hp`` (hyperparameters read from an imported, untrusted file) with each value checked to
    have its config field's type: a bool for bool fields, a 64-bit integer for int fields, a finite
    float of sane magnitude (``declarations.finite_float``) for float fields, a string for str
    fields, a list of such floats for tuple fields. A wrong value is a ``SAEFileError`` naming the
    field; the config's own ``validate`` then checks the ranges."""
    from dataclasses import fields

    from ..saes import get_class
    from ..saes.declarations import finite_float

    types = {f.name: str(f.type) for f in fields(get_class(arch).config_class)}
    wanted = {"bool": "true or false", "int": "a 64-bit integer", "str": "a string",
              "tuple[float, ...]": "a list of at most 1024 numbers"}
    out: dict[str, Any] = {}
    for name, v in hp.items():
        kind = types.get(name, "")
        if kind == "bool":
            ok = isinstance(v, bool)
        elif kind == "int":
            ok = isinstance(v, int) and not isinstance(v, bool) and -(1 << 63) <= v < 1 << 63
        elif kind == "float":
            v, ok = finite_float(v, name, where), True
        elif kind == "str":
            ok = isinstance(v, str)
        elif kind == "tuple[float, ...]":
            ok = isinstance(v, (list, tuple)) and len(v) <= 1024
            if ok:
                v = tuple(finite_float(x, f"{name}[{i}]", where) for i, x in enumerate(v))
        else:
            ok = True  # a field type this check does not know: the config's validate() decides
        if not ok:
            raise SAEFileError(f"{where}: {name} must be {wanted.get(kind, kind)}, got {v!r:.60}")
        out[name] = v
    return out


def block_scale(block: dict, where: Path) -> float:
    """The probsae 'scalar' normalisation factor recorded in a provenance block: a positive, finite
    float of sane magnitude (it is inverted and folded into the weights)."""
    from ..saes.declarations import finite_float

    return finite_float(block.get("scale"), f"{BLOCK_KEY}.scale", where, positive=True, limits=SCALE_RANGE)


SCALE_RANGE = (1e-12, 1e12)
"""The 'scalar' normalisation factors an import accepts: that factor brings E‖x‖² to d_in, so real
activations give values many orders of magnitude inside this range."""


def load_into(sae, tensors: dict[str, Tensor], source: Path) -> None:
    """Copy converted tensors (any float dtype) into ``sae``; shapes must match exactly."""
    state = sae.state_dict()
    missing = sorted(set(state) - set(tensors))
    extra = sorted(set(tensors) - set(state))
    if missing or extra:
        raise SAEFileError(f"{source}: converted weights do not fit probsae {sae.architecture!r}: "
                           f"missing {missing}, unexpected {extra}")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise SAEFileError(f"{source}: weight {k!r} has shape {tuple(v.shape)}, expected {tuple(state[k].shape)}")
        tensors[k] = v.to(state[k].dtype)
    sae.load_state_dict(tensors)
    sae.eval()


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise SAEFileError(f"{path} does not exist")
    from ..io import read_json as read

    return read(path, dict, SAEFileError)


def read_safetensors(path: Path, allowed: set[str] | None = None) -> dict[str, Tensor]:
    """The tensors of an imported weight file: floating point, finite, and (with ``allowed``)
    no tensor the source format does not define."""
    from ..tensorfile import load_tensors, read_header

    if not path.is_file():
        raise SAEFileError(f"{path} does not exist")
    header = read_header(path, SAEFileError)
    extra = sorted(set(header.entries) - allowed) if allowed is not None else []
    if extra:
        raise SAEFileError(f"{path} holds tensors this format does not define: {extra}")
    return load_tensors(path, header=header, floating=True, finite=True, cls=SAEFileError)[0]


def write_safetensors(path: Path, tensors: dict[str, Tensor]) -> None:
    from ..tensorfile import save_tensors

    save_tensors(path, tensors)


def provenance_block(obj: Any) -> dict | None:
    """The ``probsae`` provenance block of a cfg.json (or its metadata), if well formed."""
    block = obj.get(BLOCK_KEY) if isinstance(obj, dict) else None
    return block if isinstance(block, dict) and isinstance(block.get("config", {}), dict) else None


def malformed_files_are_errors(fn):
    """An importer whose untrusted cfg.json holds a value of the wrong type raises
    ``SAEFileError`` naming the directory, not a TypeError/KeyError traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
        try:
            return fn(path, *args, **kwargs)
        except ProbSAEError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError, RecursionError) as e:
            raise SAEFileError(f"{path}: malformed SAE files ({type(e).__name__}: {e})") from None

    return wrapper


def run_metadata(run_dir: str | Path) -> dict[str, Any]:
    """Model/hook/dataset facts of a run directory: its ``run.json`` data spec, else its
    ``log.jsonl`` start event (``TrainConfig.extra``), e.g. ``{"model": "gpt2", "hook": "resid_post.8"}``;
    {} when it has neither. A corrupt file is an error, not silently missing metadata."""
    from ..io import read_jsonl
    from ..runs.spec import RUN_FILE, read_spec

    run_dir = Path(run_dir)
    if (run_dir / RUN_FILE).is_file():
        data = read_spec(run_dir).data
        return {"model": data.model, "hook": data.hook, "corpus": data.corpus}
    for rec in read_jsonl(run_dir / "log.jsonl", SAEFileError):
        if rec.get("event") == "start":
            extra = (rec.get("train_config") or {}).get("extra") or {}
            return dict(extra) if isinstance(extra, dict) else {}
    return {}


def pick(meta: dict[str, Any], *keys: str):
    for k in keys:
        if meta.get(k) not in (None, ""):
            return meta[k]
    return None
