"""A causal LM's unembedding as a latent's direct logit effect reads it: the LM head's weights with
the final norm's gain folded in (and, for a LayerNorm, its centring), as TransformerLens's
``fold_ln`` does for ``ln_final`` and ``W_U``.

The residual stream ``x`` reaches the logits through ``W_U · norm(x) (+ b_U)``. For a direction
``d`` added to ``x``, in the linear limit and for the part of ``d`` orthogonal to ``x`` (the
norm's own scale change, a projection on ``x``, is left out, as everywhere in SAE tooling):

* RMSNorm:   ``Δlogits ∝ W_U · (g ⊙ d)``
* LayerNorm: ``Δlogits ∝ W_U · (g ⊙ (d − mean(d)))``

the positive factor being ``1/rms(x)`` (``1/std(x)``), the same for every token. So the folded
unembedding is ``W_U · diag(g)``, its rows centred over d_model for a LayerNorm. The norm's bias
(and the head's bias) add the same constant to a token's logit whatever the direction: they do not
depend on the latent and are left out. A nonlinearity after the head (Gemma 2's logit softcap) is
not folded either.

The gain is read from the norm module by probing it (``norm(u)`` at a zero-mean ±1 vector ``u``),
not from an attribute name, so variants such as Gemma's ``(1 + weight)`` come out right; the probe
also checks that the module is an elementwise-affine RMSNorm or LayerNorm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from probsae.data.errors import UnembeddingError

#: Known paths of the final norm (GPT-2, GPT-J, Bloom: ``transformer.ln_f``; Llama, Qwen, Mistral,
#: Gemma: ``model.norm``; then GPT-NeoX, OPT, Falcon, Phi, Mamba), tried before the generic search.
FINAL_NORM_PATHS = ("transformer.ln_f", "model.norm", "gpt_neox.final_layer_norm",
                    "model.decoder.final_layer_norm", "transformer.norm_f", "model.final_layernorm",
                    "backbone.norm_f")


@dataclass(frozen=True)
class FinalNorm:
    """What the final norm does to a direction, read off the module."""

    path: str
    """The module's path in the model (``model.norm``)."""
    gain: torch.Tensor
    """(d_model,) its elementwise gain, float32 on the CPU."""
    centred: bool
    """True for a LayerNorm (the mean over d_model is subtracted), False for an RMSNorm."""

    @property
    def kind(self) -> str:
        return "LayerNorm" if self.centred else "RMSNorm"


def find_final_norm(model: nn.Module) -> tuple[str, nn.Module]:
    """The path and module of a causal LM's final norm: one of :data:`FINAL_NORM_PATHS`, else the
    last direct child of ``model.base_model`` whose class name contains "norm"."""
    for path in FINAL_NORM_PATHS:
        try:
            return path, model.get_submodule(path)
        except AttributeError:
            continue
    base = getattr(model, "base_model", None)
    if isinstance(base, nn.Module) and base is not model:
        prefix = getattr(model, "base_model_prefix", "")
        norms = [(n, m) for n, m in base.named_children() if "norm" in type(m).__name__.lower()]
        if norms:
            name, mod = norms[-1]
            return (f"{prefix}.{name}" if prefix else name), mod
    raise UnembeddingError(f"cannot find the final norm of {type(model).__name__} (looked for "
                           f"{', '.join(FINAL_NORM_PATHS)} and a *Norm child of its base model)")


def _zero_mean_signs(d: int, shift: int) -> torch.Tensor:
    """(d,) alternating ±1 over an even number of entries, the remaining one (d odd) 0, rolled by
    ``shift``: mean 0."""
    u = torch.zeros(d, dtype=torch.float64)
    even = d - d % 2
    u[:even] = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(even // 2)
    return torch.roll(u, shift)


def probe_norm(path: str, module: nn.Module, d_model: int) -> FinalNorm:
    """Read the gain and the centring of an elementwise-affine norm ``module`` (see the module
    docstring); :class:`UnembeddingError` when it does not behave like one."""
    p = next(module.parameters(), None)
    dtype, device = (p.dtype, p.device) if p is not None else (torch.float32, torch.device("cpu"))

    def f(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x.to(device=device, dtype=dtype).view(1, 1, d_model)).double().cpu().view(d_model)

    gain = torch.zeros(d_model, dtype=torch.float64)
    for shift in (0, 1) if d_model % 2 else (0,):
        u = _zero_mean_signs(d_model, shift)
        g = (f(u) - f(-u)) * u.pow(2).mean().sqrt() / 2     # φ(u) = u / rms(u) for both kinds
        on = u != 0
        gain[on] = g[on] * u[on]
        scale_free = torch.allclose(f(2 * u), f(u), rtol=1e-2, atol=1e-3 * float(f(u).abs().max()) + 1e-6)
        if not scale_free:
            raise UnembeddingError(f"the final norm {path} ({type(module).__name__}) is not scale-invariant: "
                                   "not an RMSNorm or LayerNorm, no folded unembedding")
    ones = torch.ones(d_model, dtype=torch.float64)
    centred = bool(torch.allclose(f(ones), f(-ones), atol=1e-3 * float(gain.abs().max()) + 1e-6))
    return FinalNorm(path, gain.float(), centred)


def folded_unembedding(model: nn.Module) -> tuple[torch.Tensor, FinalNorm]:
    """(vocab, d_model) float32 ``W_U · diag(g)`` (rows centred over d_model for a LayerNorm), on
    the head's device, and the final norm it folds; :class:`UnembeddingError` when the model has no
    output embedding or no final norm that can be folded."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or getattr(head, "weight", None) is None:
        raise UnembeddingError(f"{type(model).__name__} has no output embedding (LM head)")
    W_U = head.weight.detach().float()
    norm = probe_norm(*find_final_norm(model), W_U.shape[1])
    W = W_U * norm.gain.to(W_U.device)
    if norm.centred:
        W = W - W.mean(dim=1, keepdim=True)
    return W, norm
