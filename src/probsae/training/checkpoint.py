"""Atomic, resumable, pickle-free checkpoints of one SAE's training state.

``checkpoint.safetensors`` is an ordinary safetensors file written by ``probsae.tensorfile``: every
tensor of the state (SAE weights and buffers, Adam moments, liveness counters, RNG states, the
partial log sums) is a named tensor, and everything else (step, architecture, optimiser
hyperparameters, ``extra``) is JSON in the file's metadata, with ``{"$tensor": name}`` where a
tensor sat. The file carries a CRC-32 that is checked on load, so a flipped byte is an error, not
a silently different run. Nothing is ever unpickled: a ``checkpoint.pt`` written by probsae ≤ 0.1
(a pickle) is refused, because unpickling a file can run arbitrary code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import SAEFileError, TrainingDivergedError
from ..io import dumps_json
from ..tensorfile import load_tensors, nonfinite_names, save_tensors

CHECKPOINT_FILE = "checkpoint.safetensors"
LEGACY_CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_KEY = "probsae_checkpoint"
FORMAT_VERSION = 2


# ---- a state tree ⇄ (JSON skeleton, named tensors) -----------------------------------------------

def _child(path: str, key: Any) -> str:
    return f"{path}/{key}" if path else str(key)


def _encode(obj: Any, tensors: dict[str, Tensor], path: str) -> Any:
    """A JSON skeleton of ``obj``; its tensors go into ``tensors`` under their path ("sae/W_dec")."""
    if isinstance(obj, Tensor):
        tensors[path] = obj
        return {"$tensor": path}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"$float": repr(obj)}
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, tensors, _child(path, i)) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, _child(path, i)) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, tensors, _child(path, k)) for k, v in obj.items()}
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in obj):
            raise TypeError(f"checkpoint state at {path!r} has a key that is neither str nor int")
        return {"$items": [[k, _encode(v, tensors, _child(path, k))] for k, v in obj.items()]}
    raise TypeError(f"cannot store a {type(obj).__name__} at {path!r} in a checkpoint (tensors, numbers, "
                    "strings, lists, tuples and dicts only)")


def _decode(obj: Any, tensors: dict[str, Tensor], path: Path) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, path) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (k, v), = obj.items()
        if k == "$tensor":
            if v not in tensors:
                raise SAEFileError(f"checkpoint {path} refers to a tensor {v!r} it does not hold")
            return tensors[v]
        if k == "$float":
            return float(v)
        if k == "$tuple":
            return tuple(_decode(x, tensors, path) for x in v)
        if k == "$items":
            return {key: _decode(x, tensors, path) for key, x in v}
    return {k: _decode(v, tensors, path) for k, v in obj.items()}


# ---- public API ---------------------------------------------------------------------------------

def save_checkpoint(run_dir: Path, step: int, sae, optimizer, liveness, extra: dict | None = None,
                    log_state: dict | None = None) -> None:
    """Write ``run_dir/checkpoint.safetensors`` atomically (a kill never leaves a torn checkpoint).

    ``extra``: JSON-serialisable values and tensors (e.g. the ranks' RNG states, a stream
    position). ``log_state``: the log sums accumulated since the last log record, so that averages
    logged after a resume equal an uninterrupted run's. Refuses (``TrainingDivergedError``) to
    write weights holding NaN/inf, so the checkpoint on disk is always the last good one."""
    bad = nonfinite_names(sae.state_dict())
    if bad:
        raise TrainingDivergedError(f"not writing a checkpoint at step {step}: {', '.join(bad)} hold NaN/inf "
                                    f"(the previous checkpoint in {run_dir}, if any, is kept)")
    state = {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "architecture": sae.architecture,
        "sae": sae.state_dict(),
        "optimizer": optimizer.state_dict(),
        "liveness": liveness.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "extra": extra or {},
        "log_state": log_state,
    }
    tensors: dict[str, Tensor] = {}
    skeleton = _encode(state, tensors, "")
    save_tensors(Path(run_dir) / CHECKPOINT_FILE, tensors, {FORMAT_KEY: dumps_json(skeleton, indent=None)})


def load_checkpoint(run_dir: Path) -> dict | None:
    """The checkpoint in ``run_dir``, or None if there is none. An unreadable, corrupt or
    old-format (pickle) file is a ``SAEFileError`` saying which."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        legacy = run_dir / LEGACY_CHECKPOINT_FILE
        if legacy.exists():
            raise SAEFileError(
                f"{legacy} is a checkpoint in the old pickle format, which probsae no longer opens: unpickling a "
                "file can run arbitrary code. Resume that run with the probsae version that wrote it, or move the "
                "file out of the run directory to train this run from step 0")
        return None
    tensors, meta = load_tensors(path, checksum=True, cls=SAEFileError)
    if FORMAT_KEY not in meta:
        raise SAEFileError(f"{path} is a safetensors file but not a probsae checkpoint (no {FORMAT_KEY!r} metadata)")
    try:
        skeleton = json.loads(meta[FORMAT_KEY])
    except json.JSONDecodeError as e:
        raise SAEFileError(f"checkpoint {path} has invalid state metadata ({e})") from None
    state = _decode(skeleton, tensors, path)
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise SAEFileError(f"checkpoint {path} has format version {state.get('format_version') if isinstance(state, dict) else None!r}, "
                           f"this probsae reads version {FORMAT_VERSION}")
    bad = nonfinite_names(state.get("sae") or {})
    if bad:
        raise SAEFileError(f"checkpoint {path}: {', '.join(bad)} hold NaN/inf")
    return state


def _match_state_layout(optimizer) -> None:
    """Give every restored optimiser state tensor its parameter's memory layout. Files store
    tensors contiguous, while a parameter may be a transpose view (W_enc is stored latent-major);
    fused Adam walks a parameter, its gradient and its moments as flat memory, so the three must
    share one layout or the moments pair with the wrong weights."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, v in optimizer.state.get(p, {}).items():
                if isinstance(v, Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    optimizer.state[p][key] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def restore(state: dict, sae, optimizer, liveness) -> int:
    """Load a checkpoint into live objects; returns the step to continue from."""
    if state.get("architecture") != sae.architecture:
        raise SAEFileError(
            f"checkpoint is for architecture {state.get('architecture')!r}, not {sae.architecture!r}"
        )
    live_lrs = [g["lr"] for g in optimizer.param_groups]
    try:
        sae.load_state_dict(state["sae"])
        optimizer.load_state_dict(state["optimizer"])
        liveness.load_state_dict(state["liveness"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise SAEFileError(f"checkpoint does not match this SAE's shape/config: {e}") from None
    _match_state_layout(optimizer)
    for group, lr in zip(optimizer.param_groups, live_lrs):
        if isinstance(lr, Tensor):  # a device learning rate (the CUDA-graph step reads it there) stays that tensor
            lr.fill_(float(group["lr"]))
            group["lr"] = lr
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"])
