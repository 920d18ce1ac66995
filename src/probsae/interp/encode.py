"""Token windows → sparse SAE codes at a hook point: the one encode path shared by the latent
cache (dashboards, autointerp) and ``Run.encode_text`` / ``Run.top_examples``.

Codes stay sparse: ``(token, latent, value)`` triplets of the latents that fire (code ≠ 0), from
the SAE's sparse encoder (``encode_sparse``) where it has one; a dense (tokens, d_sae) matrix is
only built for architectures without one (ReLU family), one row chunk at a time. One encoder pass
per token also yields the architecture's extra per-token outputs (:func:`token_outputs`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

ROW_CHUNK = 2048
"""Tokens encoded at once (bounds the (rows, d_sae) temporaries)."""


def token_outputs(sae) -> tuple[str, ...]:
    """Extra per-token outputs stored next to each firing code, per architecture.

    prob_topk: ``gate_logit`` = LayerNorm(a) of the firing latent, the gate's pre-temperature
    score (σ(gate_logit/β) is the gate probability at temperature β). Others: none.
    (The one place that knows this; to be replaced by the architecture's own declaration.)"""
    return ("gate_logit",) if hasattr(sae, "gate_logits") else ()


@torch.no_grad()
def sparse_codes(sae, x: Tensor) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
    """Inference codes of raw activations ``x`` (N, d_in) as triplets ``(rows, latents, values)``
    of the firing latents (value ≠ 0, signed), plus each extra output of :func:`token_outputs`
    at the same triplets. One encoder pass per row."""
    rows, lats, vals = [], [], []
    extras: dict[str, list[Tensor]] = {name: [] for name in token_outputs(sae)}
    for start in range(0, x.shape[0], ROW_CHUNK):
        chunk = x[start:start + ROW_CHUNK]
        values, indices, extra = _select(sae, chunk)
        r, j = (values != 0).nonzero(as_tuple=True)
        rows.append(r + start)
        lats.append(indices[r, j])
        vals.append(values[r, j].float())
        for name, t in extra.items():
            extras[name].append(t[r, j].float())
    cat = (lambda ts, dt: torch.cat(ts) if ts else torch.zeros(0, dtype=dt))
    return (cat(rows, torch.long), cat(lats, torch.long), cat(vals, torch.float32),
            {k: cat(v, torch.float32) for k, v in extras.items()})


def _select(sae, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """(values, indices, extras) each (n, K'), from one encoder pass over ``x``."""
    if "gate_logit" in token_outputs(sae):
        x_n, _ = sae._inference_input(x)
        a = sae.pre_acts(x_n)
        values, indices, _ = sae.select(a, noisy=False)
        return values, indices, {"gate_logit": sae.gate_logits(a).gather(-1, indices)}
    if hasattr(sae, "encode_sparse"):
        values, indices = sae.encode_sparse(x)
        return values, indices, {}
    dense = sae.encode(x)
    width = max(1, int((dense != 0).sum(-1).max())) if dense.numel() else 1
    values, indices = dense.abs().topk(min(width, dense.shape[-1]), dim=-1)
    return dense.gather(-1, indices), indices, {}


@dataclass
class EncodedBatch:
    """Sparse codes of one batch of windows.

    ``input_ids``/``attention_mask``/``keep`` (B, T): the windows and which positions were encoded
    (not special, not padding, as in training). Triplets: ``window`` (index in the whole stream),
    ``pos`` (position in the window), ``latent``, ``act`` (signed code), sorted by window then
    position; ``extras`` holds the architecture's per-token outputs at the same triplets."""

    input_ids: Tensor
    attention_mask: Tensor
    keep: Tensor
    first_window: int
    window: Tensor
    pos: Tensor
    latent: Tensor
    act: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.keep.sum())


def encode_windows(sae, handle, hook, batches: Iterable, max_windows: int | None = None) -> Iterator[EncodedBatch]:
    """Run the model to ``hook`` on each :class:`~probsae.data.WindowBatch` and encode the kept
    positions with ``sae``; stops after ``max_windows`` windows."""
    from ..data.hooks import capture

    sae_dev = next(sae.parameters()).device
    done = 0
    with torch.inference_mode():
        for wb in batches:
            if max_windows is not None and done >= max_windows:
                return
            take = len(wb) if max_windows is None else min(len(wb), max_windows - done)
            ids, att, keep = wb.input_ids[:take], wb.attention_mask[:take], wb.token_mask[:take]
            x = capture(handle, hook, ids.to(handle.device), att.to(handle.device))
            pos_w, pos_t = keep.nonzero(as_tuple=True)
            rows, lat, act, extras = sparse_codes(sae, x[keep.to(x.device)].float().to(sae_dev))
            rows, lat, act = rows.cpu(), lat.cpu(), act.cpu()
            yield EncodedBatch(ids, att, keep, wb.first_window, pos_w[rows] + wb.first_window, pos_t[rows], lat, act,
                               {k: v.cpu() for k, v in extras.items()})
            done += take
