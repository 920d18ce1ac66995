"""``probsae eval`` as a function: held-out metrics of a trained run, and downstream CE/KL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import atomic_write_json
from .spec import read_spec


def eval_run(run_dir: str | Path, eval_tokens: int | None = None, downstream: bool = True,
             downstream_batches: int = 8, cache_dir: str | None = None, out: str | Path | None = None,
             device: str | None = None) -> dict[str, Any]:
    """Metrics of the SAE in ``run_dir`` on the held-out tokens of its data spec (the same tokens
    ``train`` evaluated on); for causal LMs also CE with the SAE spliced in, clean CE,
    zero-ablation CE, CE recovered and KL. Writes ``out`` (default ``run_dir/eval.json``), whose
    directory is checked to be writable before anything is computed.

    ``device``: where the SAE and the model run (default: the run's training device setting,
    e.g. 'auto'); on the device it was trained on, the held-out metrics equal ``train``'s."""
    from ..data.prepare import prepare_caches, split_docs
    from ..devices import resolve_device
    from ..evaluation.metrics import evaluate
    from ..io import atomic_write_json, check_writable_dir
    from ..saes import load_sae

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "eval.json"
    spec = read_spec(run_dir)
    check_writable_dir(out.parent, "directory of the evaluation result")
    dev = resolve_device(device or spec.train.device)
    sae = load_sae(run_dir, device=str(dev)).eval()
    (heldout,) = prepare_caches(spec.data, cache_dir or spec.cache_dir, parts=("holdout",), device=dev)
    result: dict[str, Any] = {"run_dir": str(run_dir), "heldout": evaluate(sae, heldout, max_tokens=eval_tokens)}
    if downstream:
        from ..data.corpus import token_windows
        from ..evaluation.downstream import downstream_metrics

        handle = spec.data.load(dev)
        if handle.is_causal:
            import torch

            windows = token_windows(split_docs(spec.data, "holdout"), handle.tokenizer, spec.data.context_length, batch_size=4,
                                    max_length=handle.max_length, exclude_special=spec.data.exclude_special)

            def recon_fn(x):
                with torch.no_grad():
                    return sae(x.float()).recon.to(x.dtype)

            sae.to(handle.device)
            # a transcoder's output replaces the target hook's activation, computed from its input hook's
            target = spec.data.target_hook
            result["downstream"] = downstream_metrics(handle, target or spec.data.hook, recon_fn, windows,
                                                      max_batches=downstream_batches,
                                                      input_hook=spec.data.hook if target else None)
        else:
            result["downstream"] = None
            result["downstream_note"] = f"{spec.data.model} is not a causal LM: no next-token CE to measure"
    atomic_write_json(out, result)
    return result
