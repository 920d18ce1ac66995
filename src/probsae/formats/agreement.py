"""How closely a lossy export reproduces the SAE it came from, measured on activations.

    stats = inference_agreement(sae, import_saelens(export_dir), x)

``exported`` is a probsae SAE that computes what the target library computes (the import of the
export: probsae's ``topk`` for a SAELens/sparsify TopK file). Used by
``scripts/ecosystem/prob_topk_export_agreement.py`` and quoted in docs/FORMATS.md.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def inference_agreement(source, exported, x: Tensor, batch_size: int = 4096) -> dict[str, float]:
    """On activations ``x`` (N, d_in): ``same_set``, the fraction of tokens whose active latents
    (non-zero codes) are the same set under both SAEs; ``same_codes``, the fraction whose codes
    are equal (within 1e-5 of their scale); ``negative_codes``, the fraction of ``source``'s
    non-zero codes that are negative; and ``fvu_source``/``fvu_exported``, each SAE's fraction of
    variance unexplained, sum‖x − x̂‖² / sum‖x − mean(x)‖²."""
    x = x.reshape(-1, x.shape[-1]).float()
    n = same_set = same_codes = neg = nonzero = 0
    sse_a = sse_b = 0.0
    mean = x.mean(0)
    tss = float((x - mean).pow(2).sum())
    for s in range(0, x.shape[0], batch_size):
        xb = x[s:s + batch_size]
        ca, cb = source.encode(xb), exported.encode(xb)
        ra, rb = source.decode(ca), exported.decode(cb)
        same_set += int(((ca != 0) == (cb != 0)).all(-1).sum())
        tol = 1e-5 * ca.abs().amax(-1, keepdim=True).clamp_min(1e-12)
        same_codes += int(((ca - cb).abs() <= tol).all(-1).sum())
        neg += int((ca < 0).sum())
        nonzero += int((ca != 0).sum())
        sse_a += float((xb - ra).pow(2).sum())
        sse_b += float((xb - rb).pow(2).sum())
        n += xb.shape[0]
    return {"tokens": n, "same_set": same_set / n, "same_codes": same_codes / n,
            "negative_codes": neg / max(nonzero, 1), "fvu_source": sse_a / tss, "fvu_exported": sse_b / tss}
