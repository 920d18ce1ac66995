"""Downstream metrics: next-token CE and KL of a causal LM with an SAE reconstruction spliced in.

For each window batch three forward passes run: clean; with the activation ``x`` at the hook
replaced by ``recon_fn(x)`` (a transcoder: the activation at the target hook replaced by
``recon_fn`` of the activation at its input hook); with it replaced by zeros. Splicing touches only the positions the
SAE was trained on (``token_mask``: non-pad, non-special tokens) unless ``splice_special``; BOS,
EOS separators and padding pass through unchanged, in both the SAE and the zero-ablation pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from probsae.data.corpus import WindowBatch
from probsae.data.errors import DataError
from probsae.data.hooks import HookPoint, splice
from probsae.data.models import ModelHandle


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


def downstream_metrics(handle: ModelHandle, hook: str | HookPoint,
                       recon_fn: Callable[[torch.Tensor], torch.Tensor],
                       windows: Iterable[WindowBatch], max_batches: int | None = None,
                       splice_special: bool = False, input_hook: str | HookPoint | None = None) -> dict[str, float]:
    """CE and KL of ``handle``'s causal LM with ``recon_fn`` spliced in at ``hook``.

    Args:
        handle: a causal LM (``handle.is_causal``).
        hook: where to splice.
        recon_fn: maps raw activations (N, d) to raw-scale reconstructions (N, d).
        windows: window batches (e.g. from ``token_windows`` over held-out documents).
        max_batches: stop after this many window batches.
        splice_special: also splice special-token positions (default: pass them through).
        input_hook: where ``recon_fn`` reads its input when that is not ``hook`` (a transcoder
            reads an MLP's input and its output replaces the MLP's output at ``hook``); None: at ``hook``.

    Returns:
        ``ce_clean``, ``ce_sae``, ``ce_zero`` (mean next-token CE in nats over positions whose
        input and target are both non-pad), ``ce_recovered`` = (ce_zero - ce_sae) /
        (ce_zero - ce_clean) (NaN if ce_zero == ce_clean), ``ce_delta`` = ce_sae - ce_clean,
        ``kl`` = mean over non-pad positions of KL(p_clean || p_sae), ``kl_zero`` likewise for the
        ablation, ``n_tokens`` (CE positions) and ``n_spliced`` (positions replaced).
    """
    if not handle.is_causal:
        raise DataError(f"downstream CE is only defined for causal LMs; model {handle.name!r} "
                        f"({handle.model_type}) is not one")
    hp = HookPoint.parse(hook)
    hp.validate(handle)
    if input_hook is not None:
        HookPoint.parse(input_hook).validate(handle)
    sums = {"ce_clean": 0.0, "ce_sae": 0.0, "ce_zero": 0.0, "kl": 0.0, "kl_zero": 0.0}
    n_ce = n_kl = n_spliced = 0
    with torch.inference_mode():
        for b, wb in enumerate(windows):
            if max_batches is not None and b >= max_batches:
                break
            dev = handle.device
            att = wb.attention_mask.to(dev).bool()
            mask = att if splice_special else wb.token_mask.to(dev)
            clean = _logits(handle, wb)
            with splice(handle, hp, _replacer(mask, recon_fn), source=input_hook):
                sae = _logits(handle, wb)
            with splice(handle, hp, _replacer(mask, torch.zeros_like)):
                zero = _logits(handle, wb)
            tgt = wb.input_ids.to(dev)[:, 1:]
            ce_mask = att[:, 1:] & att[:, :-1]
            for key, lg in (("ce_clean", clean), ("ce_sae", sae), ("ce_zero", zero)):
                ce = F.cross_entropy(lg[:, :-1].transpose(1, 2), tgt, reduction="none")
                sums[key] += float(ce[ce_mask].sum())
            lp_clean = F.log_softmax(clean, -1)
            for key, lg in (("kl", sae), ("kl_zero", zero)):
                kl = (lp_clean.exp() * (lp_clean - F.log_softmax(lg, -1))).sum(-1)
                sums[key] += float(kl[att].sum())
            n_ce += int(ce_mask.sum())
            n_kl += int(att.sum())
            n_spliced += int(mask.sum())
    if n_ce == 0:
        raise DataError("downstream_metrics: no tokens to score (empty windows, or windows of "
                        "length 1)")
    res = {k: v / (n_ce if k.startswith("ce") else n_kl) for k, v in sums.items()}
    denom = res["ce_zero"] - res["ce_clean"]
    res["ce_recovered"] = (res["ce_zero"] - res["ce_sae"]) / denom if denom != 0 else float("nan")
    res["ce_delta"] = res["ce_sae"] - res["ce_clean"]
    res["n_tokens"] = float(n_ce)
    res["n_spliced"] = float(n_spliced)
    return res
