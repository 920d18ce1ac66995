"""Atomic, resumable checkpoints of one SAE's training state."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SAEFileError
from ..io import atomic_write

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(run_dir: Path, step: int, sae, optimizer, liveness, extra: dict | None = None) -> None:
    """Write ``run_dir/checkpoint.pt`` (tmp file + rename: a kill never leaves a torn checkpoint)."""
    state = {
        "step": step,
        "architecture": sae.architecture,
        "sae": sae.state_dict(),
        "optimizer": optimizer.state_dict(),
        "liveness": liveness.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "extra": extra or {},
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))


def load_checkpoint(run_dir: Path) -> dict | None:
    """The checkpoint in ``run_dir``, or None if there is none. A corrupt file is an error."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001  (torch raises many types for a torn file)
        raise SAEFileError(f"corrupt checkpoint {path}: {e}. Delete it to restart the run from scratch.") from None


def restore(state: dict, sae, optimizer, liveness) -> int:
    """Load a checkpoint into live objects; returns the step to continue from."""
    if state.get("architecture") != sae.architecture:
        raise SAEFileError(
            f"checkpoint is for architecture {state.get('architecture')!r}, not {sae.architecture!r}"
        )
    try:
        sae.load_state_dict(state["sae"])
    except RuntimeError as e:
        raise SAEFileError(f"checkpoint does not match this SAE's shape/config: {e}") from None
    optimizer.load_state_dict(state["optimizer"])
    liveness.load_state_dict(state["liveness"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"])
