"""``probsae eval`` as a function: held-out metrics of a trained run, and downstream CE/KL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .spec import read_spec


def downstream_of(handle, data, saes: dict[str, Any], max_tokens: int | None = None) -> dict[str, dict[str, Any]]:
    """CE/KL (``evaluation.downstream``) of several SAEs trained on the data spec ``data``, on its
    held-out documents windowed as in training, with one clean and one zero-ablation forward per
    window batch shared by all of them. ``saes``: {name: SAE}; ``max_tokens``: CE positions to score
    (default :data:`~probsae.evaluation.downstream.DOWNSTREAM_TOKENS`). Returns {name: result}."""
    import torch

    from ..data.corpus import token_windows
    from ..data.prepare import split_docs
    from ..evaluation.downstream import DOWNSTREAM_TOKENS, downstream_metrics

    windows = token_windows(split_docs(data, "holdout"), handle.tokenizer, data.context_length, batch_size=4,
                            max_length=handle.max_length, exclude_special=data.exclude_special)

    def recon_of(sae):
        sae.to(handle.device).eval()

        def recon_fn(x):
            with torch.no_grad():
                return sae(x.float()).recon.to(x.dtype)
        return recon_fn

    # a transcoder's output replaces the target hook's activation, computed from its input hook's
    target = data.target_hook
    return downstream_metrics(handle, target or data.hook, {name: recon_of(sae) for name, sae in saes.items()}, windows,
                              max_tokens=DOWNSTREAM_TOKENS if max_tokens is None else max_tokens,
                              input_hook=data.hook if target else None, progress=True)


def downstream_line(ds: dict[str, Any]) -> str:
    """``CE recovered 0.971 [0.968, 0.974] · KL 0.52 [0.50, 0.54] on 32,768 tokens (128 windows)``."""
    def fmt(key: str, digits: int) -> str:
        ci = (ds.get("ci") or {}).get(key)
        return f"{ds[key]:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")
    return (f"CE recovered {fmt('ce_recovered', 4)} · KL {fmt('kl', 4)} · ΔCE {fmt('ce_delta', 4)} nats "
            f"(95 % CI over windows) on {int(ds['n_tokens']):,} tokens ({ds.get('n_windows', '?')} windows)")


def eval_run(run_dir: str | Path, eval_tokens: int | None = None, downstream: bool = True,
             downstream_tokens: int | None = None, cache_dir: str | None = None, out: str | Path | None = None,
             device: str | None = None) -> dict[str, Any]:
    """Metrics of the SAE in ``run_dir`` on the held-out tokens of its data spec (the same tokens
    ``train`` evaluated on); for causal LMs also CE with the SAE spliced in, clean CE,
    zero-ablation CE, CE recovered and KL, with 95 % CIs, on ``downstream_tokens`` held-out
    positions (default ``DOWNSTREAM_TOKENS``). Writes ``out`` (default ``run_dir/eval.json``), whose
    directory is checked to be writable before anything is computed.

    ``device``: where the SAE and the model run (default: the run's training device setting,
    e.g. 'auto'); on the device it was trained on, the held-out metrics equal ``train``'s.

    Writing into ``run_dir`` locks it for the whole evaluation (``probsae.runs.lock``), so it never
    runs while a training writes there. A warning is printed when the corpus or the (local) model
    differs from the one recorded in run.json at training, and when the held-out set is tiny."""
    from contextlib import nullcontext

    from ..io import check_writable_dir
    from .lock import RunDirLock

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "eval.json"
    spec = read_spec(run_dir)
    check_writable_dir(out.parent, "directory of the evaluation result")
    writes_into_run = out.absolute().parent == run_dir.absolute()
    with RunDirLock(run_dir, "probsae eval") if writes_into_run else nullcontext():
        return _eval(run_dir, spec, eval_tokens, downstream, downstream_tokens, cache_dir, out, device)


def _eval(run_dir: Path, spec, eval_tokens: int | None, downstream: bool, downstream_tokens: int | None,
          cache_dir: str | None, out: Path, device: str | None) -> dict[str, Any]:
    from ..data.prepare import prepare_caches
    from ..devices import resolve_device
    from ..evaluation.metrics import evaluate
    from ..io import atomic_write_json
    from ..progress import warn
    from ..saes import load_sae
    from .results import heldout_warning
    from .spec import changed_sources, read_sources

    dev = resolve_device(device or spec.train.device)
    sae = load_sae(run_dir, device=str(dev)).eval()
    for w in changed_sources(read_sources(run_dir), spec.data):
        warn(f"{w}: the held-out tokens are taken from what is there now, so these metrics are not comparable "
             "with the training run's")
    (heldout,) = prepare_caches(spec.data, cache_dir or spec.cache_dir, parts=("holdout",), device=dev)
    n_eval = min(heldout.n_tokens, eval_tokens) if eval_tokens else heldout.n_tokens
    w = heldout_warning(n_eval, eval_tokens or spec.data.eval_tokens, spec.data.holdout_every)
    if w:
        warn(w)
    result: dict[str, Any] = {"run_dir": str(run_dir), "heldout": evaluate(sae, heldout, max_tokens=eval_tokens)}
    if downstream:
        handle = spec.data.load(dev)
        if handle.is_causal:
            result["downstream"] = downstream_of(handle, spec.data, {"sae": sae}, downstream_tokens)["sae"]
        else:
            result["downstream"] = None
            result["downstream_note"] = f"{spec.data.model} is not a causal LM: no next-token CE to measure"
    atomic_write_json(out, result)
    return result
