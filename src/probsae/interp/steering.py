"""Steering a causal LM with one SAE latent: greedy generation with and without the latent's
decoder direction added at the SAE's hook point, side by side.

The direction added at a token is what the SAE itself writes when the latent fires there with code
``value`` — through the SAE's own decode, including its input normalisation:

    delta_t = decode(value · e_i; stats_t) − decode(0; stats_t)

With ``unit`` normalisation (the default) that is ``value · W_dec[i] · ‖x_t − mean(x_t)‖``, so the
push scales with the token's own activation norm as the latent's reconstruction does; with
``scalar`` it is ``value · W_dec[i] / s``; with ``none`` ``value · W_dec[i]``. It is added at every
position the SAE would encode: the prompt (special tokens such as BOS left alone, as training never
encoded them) and every generated token. ``probsae serve`` gives ``value`` as a *strength* times
the latent's max activation over the run's latent cache (:func:`steering_value`), so strength 1
adds what the latent writes at its strongest.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass
class Steered:
    """Both greedy continuations of one prompt."""

    prompt: str
    latent: int
    value: float
    """The latent code added (``strength`` × the latent's max activation in the browser)."""
    baseline: str
    """The model's own continuation (decoded generated tokens)."""
    steered: str
    """The continuation with the latent's direction added."""
    baseline_ids: list[int]
    steered_ids: list[int]
    baseline_logits: torch.Tensor
    """(vocab,) next-token logits after the prompt, unsteered."""
    steered_logits: torch.Tensor
    """(vocab,) next-token logits after the prompt, steered."""


def steering_value(strength: float, max_act: float) -> float:
    """The code added for a ``strength`` in units of the latent's max activation ``max_act``."""
    return float(strength) * float(max_act)


def check_steerable(sae, handle) -> None:
    """Raise :class:`ConfigError` unless ``handle`` is a causal LM and ``sae`` reconstructs its own
    input (an SAE that ``predicts_target`` writes to another hook point than it reads)."""
    if not getattr(handle, "is_causal", False):
        raise ConfigError(f"steering needs a causal LM; {handle.name} is an encoder (it generates no text)")
    if sae.predicts_target:
        raise ConfigError("steering an SAE that predicts another hook point's activation is not supported: its "
                          "decoder writes to its target hook point, not to the hook point it reads")


def latent_delta(sae, latent: int, value: float, x: torch.Tensor) -> torch.Tensor:
    """(…, d_in) what the SAE writes at activations ``x`` (…, d_in) when ``latent`` has code
    ``value``: ``decode(value·e_i) − decode(0)`` with the statistics of ``x`` (module docstring)."""
    lead, flat = x.shape[:-1], x.reshape(-1, x.shape[-1]).to(sae.W_dec.device, sae.W_dec.dtype)
    _, stats = sae.normalizer(flat)
    codes = torch.zeros(flat.shape[0], sae.d_sae, dtype=sae.W_dec.dtype, device=sae.W_dec.device)
    with torch.no_grad():
        zero = sae.decode(codes, stats=stats)
        codes[:, int(latent)] = float(value)
        return (sae.decode(codes, stats=stats) - zero).reshape(*lead, -1).to(x.device)


@contextmanager
def steering(handle, hook, sae, latent: int, value: float, skip: torch.Tensor | None = None) -> Iterator[None]:
    """Within the context every forward pass adds the latent's delta at ``hook`` to every position
    except the first ``len(skip)`` positions where ``skip`` is True (the prompt's special tokens)."""
    from ..data.hooks import splice

    def add(x: torch.Tensor) -> torch.Tensor:
        d = latent_delta(sae, latent, value, x)
        if skip is not None and skip.any():
            keep = torch.ones(x.shape[1], dtype=torch.bool)
            n = min(len(skip), x.shape[1])
            keep[:n] = ~skip[:n]
            d = d * keep.to(d.device, d.dtype).unsqueeze(-1)
        return x + d.to(x.dtype)

    with splice(handle, hook, add):
        yield


def prompt_ids(handle, prompt: str, prepend_bos: bool = True) -> torch.Tensor:
    """(1, T) token ids of ``prompt``: its text tokens, after BOS (EOS where the model has no BOS)
    when ``prepend_bos``, as training's causal windows start."""
    ids = list(handle.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    start = handle.bos_id if handle.bos_id is not None else handle.eos_id
    if prepend_bos and start is not None:
        ids = [start] + ids
    if not ids:
        raise ConfigError("steering needs a non-empty prompt")
    return torch.tensor([ids], dtype=torch.long)


@torch.no_grad()
def greedy(handle, ids: torch.Tensor, max_new_tokens: int) -> tuple[list[int], torch.Tensor]:
    """(generated ids, next-token logits after the prompt): greedy decoding, stopping at EOS or
    after ``max_new_tokens``. Each step runs the whole sequence again (no KV cache: the same call
    on every transformers version, and the steering hook sees every position each time; a few
    dozen tokens cost seconds on a CPU)."""
    x, out, first = ids.to(handle.device), [], None
    for _ in range(max_new_tokens):
        logits = handle.model(input_ids=x, use_cache=False).logits[0, -1].float()
        first = logits.cpu() if first is None else first
        nxt = int(logits.argmax())
        out.append(nxt)
        if nxt == handle.eos_id:
            break
        x = torch.cat([x, torch.tensor([[nxt]], device=x.device)], dim=1)
    return out, first


def steered_generate(handle, hook, sae, latent: int, value: float, prompt: str, max_new_tokens: int = 20,
                     prepend_bos: bool = True) -> Steered:
    """Greedy continuations of ``prompt`` without and with ``latent`` (code ``value``) added at
    ``hook`` (module docstring); the hook is removed afterwards."""
    check_steerable(sae, handle)
    if not 0 <= int(latent) < sae.d_sae:
        raise ConfigError(f"latent {latent} out of range 0..{sae.d_sae - 1}")
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be ≥ 1, got {max_new_tokens}")
    ids = prompt_ids(handle, prompt, prepend_bos)
    structural = {handle.bos_id, handle.eos_id, handle.pad_id, handle.cls_id, handle.sep_id} - {None}
    skip = torch.tensor([int(t) in structural for t in ids[0]])   # never encoded in training either
    base, base_logits = greedy(handle, ids, max_new_tokens)
    with steering(handle, hook, sae, latent, value, skip):
        steer, steer_logits = greedy(handle, ids, max_new_tokens)
    text = (lambda t: handle.tokenizer.decode(t, skip_special_tokens=True))
    return Steered(prompt, int(latent), float(value), text(base), text(steer), base, steer, base_logits, steer_logits)
