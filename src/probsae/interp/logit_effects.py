"""A latent's direct logit effect: its decoder row read through the causal LM's unembedding with
the final norm folded in (``data.unembed.folded_unembedding``: the gain, and a LayerNorm's centring,
as TransformerLens's ``fold_ln``). Without the fold the ranking of tokens is wrong wherever the
gain is far from 1 (SmolLM2's final RMSNorm gain runs from −2.1 to 3.3: docs/INTERP.md)."""

from __future__ import annotations

import torch

from ..data.errors import UnembeddingError


#: Marks a ``logit_note`` of effects read through the folded unembedding.
FOLDED = "folded into the unembedding"


def logit_note(norm) -> str:
    """The manifest's ``logit_note`` for effects read through ``norm`` (a ``FinalNorm``)."""
    centring = ", centred over d_model" if norm.centred else ""
    return (f"W_dec · diag(g) · W_U, the final {norm.kind} gain g ({norm.path}{centring}) {FOLDED} "
            "(direct effect on the logits, up to a positive factor; the norm's bias is a "
            "constant per token and is left out)")


def stale_logit_note(manifest: dict) -> bool:
    """True for a causal LM's latent cache whose logit effects were written before the fold (no
    final norm: the ranking can be wrong); such a cache is reused with its effects rewritten."""
    return bool(manifest.get("is_causal")) and FOLDED not in str(manifest.get("logit_note", ""))


def top_effects(W_dec: torch.Tensor, W: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
    """Top ``n`` positive and negative entries of ``W_dec @ W.T`` per row (``pos_ids``,
    ``pos_vals``, ``neg_ids``, ``neg_vals``), computed in blocks of ≤ 64M floats."""
    n = min(n, W.shape[0])
    rows = max(1, (1 << 26) // max(1, W.shape[0]))
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("pos_ids", "pos_vals", "neg_ids", "neg_vals")}
    with torch.no_grad():
        for s in range(0, W_dec.shape[0], rows):
            eff = W_dec[s:s + rows].to(W.device) @ W.T
            top, bot = eff.topk(n, dim=-1), (-eff).topk(n, dim=-1)
            out["pos_ids"].append(top.indices.int().cpu())
            out["pos_vals"].append(top.values.cpu())
            out["neg_ids"].append(bot.indices.int().cpu())
            out["neg_vals"].append((-bot.values).cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def logit_effects(sae, handle, n: int = 10) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Top ``n`` positive and negative entries of each latent's direct logit effect (decoder row
    times the folded unembedding: see the module docstring), or (None, why not): an encoder (no
    unembedding), a width that is not the model's, or a final norm that cannot be folded."""
    from ..data.unembed import folded_unembedding

    if not getattr(handle, "is_causal", False):
        return None, f"{handle.name} is not a causal LM (no unembedding): no logit effects"
    try:
        W, norm = folded_unembedding(handle.model)
    except UnembeddingError as e:
        return None, f"{e}: no logit effects"
    if W.shape[1] != sae.d_in:
        return None, f"SAE width {sae.d_in} ≠ unembedding width {W.shape[1]}: no logit effects"
    return top_effects(sae.W_dec.detach().float(), W, n), logit_note(norm)
