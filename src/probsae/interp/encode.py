"""Token windows → sparse SAE codes at a hook point: the one encode path shared by the latent
cache (dashboards, autointerp) and ``Run.encode_text`` / ``Run.top_examples``.

Codes stay sparse: ``(token, latent, value)`` triplets of the latents that fire (code ≠ 0), from
the SAE's ``encode_sparse`` (every architecture has one; those with dense codes build them one
row chunk at a time). The architecture's declared extra outputs (``extra_outputs``, served by
``sae.extras``) are stored at the same triplets (:func:`token_outputs`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

ROW_CHUNK = 2048
"""Tokens encoded at once (bounds the (rows, d_sae) temporaries)."""


def token_outputs(sae) -> tuple[str, ...]:
    """Extra per-token outputs stored next to each firing code: the per-latent ``extra_outputs``
    the SAE's architecture declares (``sae.extras``), read at the firing latents, e.g.
    ``gate_probs`` σ(LayerNorm(a)/β) and ``gate_logits`` LayerNorm(a), the gate's score before the
    temperature (informative where the gate probabilities saturate at a small β). Others: none."""
    return tuple(type(sae).extra_outputs)


@torch.no_grad()
def sparse_codes(sae, x: Tensor) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
    """Inference codes of raw activations ``x`` (N, d_in) as triplets ``(rows, latents, values)``
    of the firing latents (value ≠ 0, signed), plus each extra output of :func:`token_outputs`
    at the same triplets. Sparse codes from ``sae.encode_sparse`` (no dense (N, d_sae) code
    matrix where the architecture selects sparsely); the extras from ``sae.extras``, computed only for architectures
    that declare some."""
    rows, lats, vals = [], [], []
    names = token_outputs(sae)
    extras: dict[str, list[Tensor]] = {name: [] for name in names}
    for start in range(0, x.shape[0], ROW_CHUNK):
        chunk = x[start:start + ROW_CHUNK]
        values, indices = sae.encode_sparse(chunk)
        at_codes = {name: t.gather(-1, indices) for name, t in sae.extras(chunk).items()} if names else {}
        r, j = (values != 0).nonzero(as_tuple=True)
        rows.append(r + start)
        lats.append(indices[r, j])
        vals.append(values[r, j].float())
        for name, t in at_codes.items():
            extras[name].append(t[r, j].float())
    cat = (lambda ts, dt: torch.cat(ts) if ts else torch.zeros(0, dtype=dt))
    return (cat(rows, torch.long), cat(lats, torch.long), cat(vals, torch.float32),
            {k: cat(v, torch.float32) for k, v in extras.items()})


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
