"""Downstream metrics: next-token CE and KL of a causal LM with an SAE reconstruction spliced in.

For each window batch three forward passes run: clean; with the activation ``x`` at the hook
replaced by ``recon_fn(x)`` (an SAE with a separate input hook: the activation at the target hook replaced by
``recon_fn`` of the activation at its input hook); with it replaced by zeros. Splicing touches only the positions the
SAE was trained on (``token_mask``: non-pad, non-special tokens) unless ``splice_special``; BOS,
EOS separators and padding pass through unchanged, in both the SAE and the zero-ablation pass.
Several SAEs of one hook point share the clean and zero-ablation forwards (pass a dict of
``recon_fn``), so scoring N SAEs costs N + 2 forwards per window batch, not 3N. Every figure comes
with a 95 % bootstrap CI over windows (the unit the held-out text is sampled in: tokens of one
window are not independent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from probsae.data.corpus import WindowBatch
from probsae.data.errors import DataError
from probsae.data.hooks import HookPoint, splice
from probsae.data.models import ModelHandle
from probsae.progress import bar
from probsae.stats import bootstrap_counts, percentile_interval


def _logits(handle: ModelHandle, wb: WindowBatch) -> torch.Tensor:
    dev = handle.device
    out = handle.model(input_ids=wb.input_ids.to(dev), attention_mask=wb.attention_mask.to(dev),
                       use_cache=False)
    return out.logits.float()


def _replacer(mask: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]
              ) -> Callable[..., torch.Tensor]:
    """Replaces the masked positions of the activation ``x`` by ``fn`` of the masked positions of
    ``source`` (the activation at the input hook point; ``x`` itself when there is none)."""
    def sub(x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        y = x.clone()
        sel = (x if source is None else source)[mask]
        new = fn(sel.float())
        if new.shape != x[mask].shape:
            raise DataError(f"recon_fn returned shape {tuple(new.shape)} for input "
                            f"{tuple(sel.shape)}; it must map (N, d) to (N, d)")
        y[mask] = new.to(x.dtype)
        return y
    return sub


#: Default number of held-out CE positions ``probsae eval`` and ``train`` score (windows of the
#: run's context length, until at least this many next-token positions are scored). Every result
#: carries its bootstrap CIs; the SmolLM2 report gives their measured widths at this size.
DOWNSTREAM_TOKENS = 32_768

#: Bootstrap resamples (over windows) behind every CI of :func:`downstream_metrics`.
BOOTSTRAP_RESAMPLES = 2000

_SUMS = ("ce_clean", "ce_sae", "ce_zero", "kl", "kl_zero")


def downstream_metrics(handle: ModelHandle, hook: str | HookPoint,
                       recon_fn: Callable[[torch.Tensor], torch.Tensor] | dict[str, Callable[[torch.Tensor], torch.Tensor]],
                       windows: Iterable[WindowBatch], max_batches: int | None = None,
                       splice_special: bool = False, input_hook: str | HookPoint | None = None,
                       max_tokens: int | None = None, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """CE and KL of ``handle``'s causal LM with ``recon_fn`` spliced in at ``hook``.

    Args:
        handle: a causal LM (``handle.is_causal``).
        hook: where to splice.
        recon_fn: maps raw activations (N, d) to raw-scale reconstructions (N, d); or a dict
            ``{name: recon_fn}`` of several SAEs at the same hook point, scored on the same tokens
            with one clean and one zero-ablation forward per window batch (returns ``{name: result}``).
        windows: window batches (e.g. from ``token_windows`` over held-out documents).
        max_batches: stop after this many window batches.
        splice_special: also splice special-token positions (default: pass them through).
        input_hook: where ``recon_fn`` reads its input when that is not ``hook`` (e.g. an SAE that
            reads an MLP's input and its output replaces the MLP's output at ``hook``); None: at ``hook``.
        max_tokens: stop once at least this many CE positions are scored (whole batches).
        seed: seed of the bootstrap.
        progress: show a bar of scored positions (``probsae.progress``; a status line in a log).

    Returns:
        ``ce_clean``, ``ce_sae``, ``ce_zero`` (mean next-token CE in nats over positions whose
        input and target are both non-pad), ``ce_recovered`` = (ce_zero - ce_sae) /
        (ce_zero - ce_clean) (NaN if ce_zero == ce_clean), ``ce_delta`` = ce_sae - ce_clean,
        ``kl`` = mean over non-pad positions of KL(p_clean || p_sae), ``kl_zero`` likewise for the
        ablation, ``n_tokens`` (CE positions), ``n_windows`` and ``n_spliced`` (positions
        replaced), and ``ci`` (95 % percentile-bootstrap intervals over windows, the unit the
        tokens are sampled in, of ``ce_recovered``, ``ce_delta``, ``kl`` and ``ce_sae``: a pair
        ``[low, high]`` each, None with fewer than 2 windows).
    """
    if not handle.is_causal:
        raise DataError(f"downstream CE is only defined for causal LMs; model {handle.name!r} "
                        f"({handle.model_type}) is not one")
    single = not isinstance(recon_fn, dict)
    fns = {"": recon_fn} if single else dict(recon_fn)
    hp = HookPoint.parse(hook)
    hp.validate(handle)
    if input_hook is not None:
        HookPoint.parse(input_hook).validate(handle)
    # per window: [ce_clean, ce_zero, kl_zero, n_ce, n_kl] shared, and [ce_sae, kl] per recon_fn
    shared: list[list[float]] = []
    own: dict[str, list[list[float]]] = {name: [] for name in fns}
    n_ce = n_spliced = 0
    shown = bar(total=max_tokens, desc=f"CE/KL of {len(fns)} SAE(s)" if len(fns) > 1 else "CE/KL", unit="tok",
                requested=progress)
    with shown, torch.inference_mode():
        for b, wb in enumerate(windows):
            if (max_batches is not None and b >= max_batches) or (max_tokens is not None and n_ce >= max_tokens):
                break
            dev = handle.device
            att = wb.attention_mask.to(dev).bool()
            mask = att if splice_special else wb.token_mask.to(dev)
            tgt = wb.input_ids.to(dev)[:, 1:]
            ce_mask = att[:, 1:] & att[:, :-1]
            clean = _Clean(F.log_softmax(_logits(handle, wb), -1))
            with splice(handle, hp, _replacer(mask, torch.zeros_like)):
                zero = F.log_softmax(_logits(handle, wb), -1)
            rows = zip(_window_ce(clean.lp, tgt, ce_mask), _window_ce(zero, tgt, ce_mask), clean.window_kl(zero, att),
                       ce_mask.sum(1).tolist(), att.sum(1).tolist())
            del zero
            shared += [[float(v) for v in row] for row in rows]
            for name, fn in fns.items():
                with splice(handle, hp, _replacer(mask, fn), source=input_hook):
                    lp = F.log_softmax(_logits(handle, wb), -1)
                own[name] += [[float(v) for v in row] for row in zip(_window_ce(lp, tgt, ce_mask), clean.window_kl(lp, att))]
                del lp
            n_ce += int(ce_mask.sum())
            n_spliced += int(mask.sum())
            shown.update(int(ce_mask.sum()))
    if n_ce == 0:
        raise DataError("downstream_metrics: no tokens to score (empty windows, or windows of "
                        "length 1)")
    base = np.asarray(shared, np.float64)
    out = {name: _summarise(base, np.asarray(rows, np.float64), n_spliced, seed) for name, rows in own.items()}
    return out[""] if single else out


def _window_ce(lp: torch.Tensor, tgt: torch.Tensor, ce_mask: torch.Tensor) -> list[float]:
    """Sum of next-token CE over each window's scored positions, from log-probabilities (B, T, V)."""
    ce = -lp[:, :-1].gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    return (ce * ce_mask).sum(1).tolist()


class _Clean:
    """The clean pass's log-probabilities with what every KL against them reuses: p_clean and
    Σ p_clean log p_clean, computed once per batch (KL = that − Σ p_clean log p, one contraction
    over the vocabulary per SAE instead of an exp, a subtraction and a product)."""

    def __init__(self, lp: torch.Tensor):
        self.lp = lp
        self.p = lp.exp()
        self.neg_entropy = torch.einsum("btv,btv->bt", self.p, lp)

    def window_kl(self, lp: torch.Tensor, att: torch.Tensor) -> list[float]:
        """Sum of KL(p_clean || p) over each window's non-pad positions."""
        kl = self.neg_entropy - torch.einsum("btv,btv->bt", self.p, lp)
        return (kl * att).sum(1).tolist()


def _ratios(s: np.ndarray, o: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics from sums over windows: ``s`` (..., 5) of the shared columns, ``o`` (..., 2) of
    the SAE's (a leading axis: one row per bootstrap resample)."""
    ce_clean, ce_zero, kl_zero, n_ce, n_kl = (s[..., i] for i in range(5))
    ce_sae, kl = o[..., 0] / n_ce, o[..., 1] / n_kl
    ce_clean, ce_zero, kl_zero = ce_clean / n_ce, ce_zero / n_ce, kl_zero / n_kl
    denom = ce_zero - ce_clean
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = np.where(denom != 0, (ce_zero - ce_sae) / denom, np.nan)
    return {"ce_clean": ce_clean, "ce_sae": ce_sae, "ce_zero": ce_zero, "ce_recovered": rec,
            "ce_delta": ce_sae - ce_clean, "kl": kl, "kl_zero": kl_zero}


def _summarise(base: np.ndarray, own: np.ndarray, n_spliced: int, seed: int) -> dict[str, Any]:
    point = {k: float(v) for k, v in _ratios(base.sum(0), own.sum(0)).items()}
    n_w = base.shape[0]
    res: dict[str, Any] = {**point, "n_tokens": float(base[:, 3].sum()), "n_windows": n_w,
                           "n_spliced": float(n_spliced)}
    ci: dict[str, list[float] | None] = {k: None for k in ("ce_recovered", "ce_delta", "kl", "ce_sae")}
    if n_w >= 2:
        counts = bootstrap_counts(n_w, BOOTSTRAP_RESAMPLES, seed)
        boot = _ratios(counts @ base, counts @ own)  # each resample: windows drawn with replacement
        for k in ci:
            ci[k] = percentile_interval(boot[k])
    res["ci"] = ci
    return res
