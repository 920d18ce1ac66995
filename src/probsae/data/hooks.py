"""Hook points: where activations are read from (capture) and written back to (splice).

Syntax (see docs/DATA.md):

* ``resid_pre.L``  — the residual stream entering block ``L`` (= ``hidden_states[L]``).
* ``resid_post.L`` — the residual stream leaving block ``L`` (= ``hidden_states[L+1]``, except
  for the last block of GPT-2/Llama-like models, whose ``hidden_states[-1]`` has the final norm
  applied; ``resid_post`` never does).
* ``resid_mid.L`` — the residual stream between block ``L``'s attention and its MLP.
* ``mlp_in.L`` — what block ``L``'s MLP reads (after its norm, for pre-norm blocks).
* ``mlp_out.L`` — what block ``L``'s MLP writes (before it is added to the residual stream).
* ``module:<dotted.name>`` — the output (first element if a tuple) of any named submodule.
* TransformerLens/SAELens hook names (what ``probsae export`` writes into a SAELens ``cfg.json``)
  are accepted where they name one of these: ``blocks.L.hook_resid_pre`` = ``resid_pre.L``,
  ``blocks.L.hook_resid_mid`` = ``resid_mid.L``, ``blocks.L.hook_resid_post`` = ``resid_post.L``,
  ``blocks.L.hook_mlp_out`` = ``mlp_out.L`` (:data:`TL_HOOKS`). Other TransformerLens names are
  refused with the probsae equivalent where there is one. In BERT-style (post-norm) blocks
  TransformerLens's ``hook_resid_mid``/``hook_resid_post`` sit before the block's LayerNorms while
  probsae's (HF module outputs) sit after them, so those two names are refused for such models.

The three MLP names are defined per model family (:data:`MLP_SITES`, docs/DATA.md): GPT-2,
Llama/Qwen-style (pre-norm) and BERT-style (post-norm) blocks; other blocks are refused with the
reason (use ``module:``).

Capture runs the model only up to the hook point: the hook raises a private exception that
stops the forward pass, so later blocks (and the LM head) never run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from probsae.data.errors import HookPointError
from probsae.data.models import ModelHandle

#: The hook kinds that take a block index (``kind.L``); besides them ``module:<dotted.name>``.
LAYER_KINDS = ("resid_pre", "resid_post", "resid_mid", "mlp_in", "mlp_out")
_RESID = re.compile(rf"^({'|'.join(LAYER_KINDS)})\.(-?\d+)$")
#: TransformerLens hook names (``blocks.L.hook_<name>``) that are a probsae hook point: name → kind.
TL_HOOKS = {"hook_resid_pre": "resid_pre", "hook_resid_mid": "resid_mid", "hook_resid_post": "resid_post",
            "hook_mlp_out": "mlp_out"}
_TL_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
#: TransformerLens names with no probsae hook point, and what to use instead.
_TL_OTHERS = {
    "hook_mlp_in": "it is the residual stream before ln2, i.e. probsae's resid_mid.{L} (probsae's mlp_in.{L} "
                   "is after the norm)",
    "ln2.hook_normalized": "TransformerLens folds ln2's affine into the MLP by default, so no hook of it holds "
                           "the HF norm's output, which is probsae's mlp_in.{L}",
}
_MLP_KINDS = ("resid_mid", "mlp_in", "mlp_out")

#: Per family, where each MLP hook point sits in a block: ``(submodule, "pre" | "post" | "mid")``.
#: "pre": the submodule's input; "post": its output (first element of a tuple); "mid": the sum of
#: the block's input and the submodule's (attention's) output, i.e. the stream the block forms
#: between attention and MLP (spliced by rewriting the attention output, so the MLP *and* the
#: residual add see the replacement). BERT is post-norm: the attention sublayer already ends in
#: its LayerNorm, so resid_mid is that sublayer's output, mlp_in is the same tensor as read by the
#: MLP (``intermediate``; splicing it changes only what the MLP reads) and mlp_out is
#: ``output.dense`` (before dropout, the residual add and the LayerNorm).
MLP_SITES: dict[str, dict[str, tuple[str, str]]] = {
    "gpt2": {"resid_mid": ("attn", "mid"), "mlp_in": ("ln_2", "post"), "mlp_out": ("mlp", "post")},
    "llama": {"resid_mid": ("self_attn", "mid"), "mlp_in": ("post_attention_layernorm", "post"),
              "mlp_out": ("mlp", "post")},
    "bert": {"resid_mid": ("attention", "post"), "mlp_in": ("intermediate", "pre"),
             "mlp_out": ("output.dense", "post")},
}


@dataclass(frozen=True)
class HookPoint:
    """A parsed hook point.

    Attributes:
        kind: ``"resid_pre"``, ``"resid_post"``, ``"resid_mid"``, ``"mlp_in"``, ``"mlp_out"`` or
            ``"module"``.
        layer: block index for the layer kinds, None for ``module``.
        module: dotted module name for ``module``, None otherwise.
    """

    kind: str
    layer: int | None = None
    module: str | None = None
    alias: str | None = field(default=None, compare=False)
    """The TransformerLens name this hook point was given as (None for probsae's own syntax)."""

    @classmethod
    def parse(cls, spec: "str | HookPoint") -> "HookPoint":
        """Parse ``resid_pre.L``, ``resid_post.L``, ``resid_mid.L``, ``mlp_in.L``, ``mlp_out.L``,
        ``module:<name>`` or a TransformerLens hook name that is one of them (:data:`TL_HOOKS`)."""
        if isinstance(spec, HookPoint):
            return spec
        s = spec.strip()
        m = _RESID.match(s)
        if m:
            return cls(kind=m.group(1), layer=int(m.group(2)))
        if s.startswith("module:") and len(s) > len("module:"):
            return cls(kind="module", module=s[len("module:"):])
        tl = cls._transformer_lens(s)
        if tl is not None:
            return tl
        raise HookPointError(f"invalid hook point {spec!r}: expected 'resid_pre.L', 'resid_post.L', "
                             "'resid_mid.L', 'mlp_in.L', 'mlp_out.L' (L a block index), "
                             "'module:<dotted.module.name>' or a TransformerLens name of one of them "
                             "('blocks.L.hook_resid_pre', …)")

    @classmethod
    def _transformer_lens(cls, s: str) -> "HookPoint | None":
        """The hook point a TransformerLens name stands for; None when ``s`` is no such name; a
        ``HookPointError`` naming probsae's equivalent for TransformerLens hooks probsae lacks."""
        m = _TL_BLOCK.match(s)
        if m and m.group(2) in TL_HOOKS:
            return cls(kind=TL_HOOKS[m.group(2)], layer=int(m.group(1)), alias=s)
        if m and m.group(2) in _TL_OTHERS:
            raise HookPointError(f"TransformerLens hook name {s!r} is not a probsae hook point: "
                                 + _TL_OTHERS[m.group(2)].format(L=m.group(1)))
        if (m and ".hook_" in "." + m.group(2)) or re.fullmatch(r"(hook_\w+|ln_final\.hook_\w+)", s):
            names = ", ".join(f"blocks.L.{n} (= {k}.L)" for n, k in TL_HOOKS.items())
            raise HookPointError(f"TransformerLens hook name {s!r} has no probsae hook point; the TransformerLens "
                                 f"names probsae reads are {names}. For another site, name the Hugging Face "
                                 "module whose output it is with 'module:<dotted.module.name>'")
        return None

    def __str__(self) -> str:
        return f"module:{self.module}" if self.kind == "module" else f"{self.kind}.{self.layer}"

    def validate(self, handle: ModelHandle) -> None:
        """Raise :class:`HookPointError` if this hook point does not exist in ``handle``'s model."""
        if self.kind == "module":
            try:
                handle.model.get_submodule(self.module or "")
            except AttributeError as e:
                raise HookPointError(f"hook point {self}: model {handle.name!r} has no submodule "
                                     f"{self.module!r}") from e
            return
        self._check_layer(handle)
        if self.alias and handle.family == "bert" and self.kind in ("resid_mid", "resid_post"):
            raise HookPointError(
                f"hook point {self.alias!r}: in BERT-style (post-norm) blocks TransformerLens's {self.kind} is the sum "
                f"before the block's LayerNorm, which no probsae hook point reads; probsae's {self} (the HF "
                f"module output, after the LayerNorm) is TransformerLens's "
                + ("blocks.L.ln1.hook_normalized" if self.kind == "resid_mid" else "blocks.L.hook_normalized_resid_post")
                + f": give '{self}' if that is what you want")
        if self.kind in _MLP_KINDS:
            self.site(handle)

    def _check_layer(self, handle: ModelHandle) -> None:
        assert self.layer is not None
        if not 0 <= self.layer < handle.n_layers:
            raise HookPointError(f"hook point {self}: layer {self.layer} out of range; model "
                                 f"{handle.name!r} has {handle.n_layers} layers, valid layers are "
                                 f"0..{handle.n_layers - 1}")

    def site(self, handle: ModelHandle) -> tuple[nn.Module, str]:
        """The module the hook attaches to and how: ``"pre"`` (its input), ``"post"`` (its
        output) or ``"mid"`` (block input + its output; ``resid_mid`` of pre-norm blocks)."""
        if self.kind not in _MLP_KINDS:
            self.validate(handle)
            if self.kind == "module":
                return handle.model.get_submodule(self.module or ""), "post"
            return handle.blocks[self.layer], "pre" if self.kind == "resid_pre" else "post"
        self._check_layer(handle)
        sites = MLP_SITES.get(handle.family)
        if sites is None:
            raise HookPointError(f"hook point {self}: the MLP hook points are defined for GPT-2, Llama/Qwen-style "
                                 f"and BERT-style blocks; model {handle.name!r} (model_type "
                                 f"{handle.model_type!r}) is none of them: name the module with 'module:'")
        block = handle.blocks[self.layer]
        if hasattr(block, "post_feedforward_layernorm"):
            raise HookPointError(f"hook point {self}: blocks of model_type {handle.model_type!r} normalise the "
                                 "MLP's output again before adding it to the residual stream (and may have no "
                                 "pre-MLP norm), so the MLP hook points have no single meaning there: name the "
                                 "module with 'module:'")
        name, mode = sites[self.kind]
        try:
            return block.get_submodule(name), mode
        except AttributeError as e:
            raise HookPointError(f"hook point {self}: block {self.layer} of model {handle.name!r} (model_type "
                                 f"{handle.model_type!r}) has no submodule {name!r}, where this hook point sits "
                                 "in its family: name the module with 'module:'") from e


class _StopForward(Exception):
    """Raised inside a capture hook to abandon the rest of the forward pass."""


def _first_tensor(x: Any) -> torch.Tensor:
    if torch.is_tensor(x):
        return x
    if isinstance(x, (tuple, list)) and x and torch.is_tensor(x[0]):
        return x[0]
    if hasattr(x, "last_hidden_state"):
        return x.last_hidden_state
    raise HookPointError(f"hooked module returned {type(x).__name__}, not a tensor or a tuple "
                         "starting with a tensor")


def _replace_first(x: Any, new: torch.Tensor) -> Any:
    if torch.is_tensor(x):
        return new
    if isinstance(x, tuple):
        return (new, *x[1:])
    if isinstance(x, list):
        return [new, *x[1:]]
    raise HookPointError(f"cannot splice into a module output of type {type(x).__name__}")


def _input_of(hook: HookPoint, args: tuple, kwargs: dict) -> torch.Tensor:
    if args:
        return args[0]
    if "hidden_states" not in kwargs:
        raise HookPointError(f"hook point {hook}: module received no hidden_states")
    return kwargs["hidden_states"]


@contextmanager
def _hooked(hook: HookPoint, handle: ModelHandle, fn: Callable[[torch.Tensor], torch.Tensor | None]
            ) -> Iterator[None]:
    """Register ``fn`` at ``hook``; if ``fn`` returns a tensor, it replaces the activation."""
    module, mode = hook.site(handle)
    handles = []
    if mode == "pre":
        def pre(mod: nn.Module, args: tuple, kwargs: dict) -> tuple | None:
            new = fn(_input_of(hook, args, kwargs))
            if new is None:
                return None
            return ((new, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": new})
        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
    elif mode == "mid":  # resid_mid of a pre-norm block: block input + attention output
        block_in: list[torch.Tensor] = []

        def keep(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            block_in[:] = [_input_of(hook, args, kwargs)]

        def mid(mod: nn.Module, args: tuple, out: Any) -> Any:
            a = _first_tensor(out)
            new = fn(a + block_in[0])  # the block's own sum (addition is commutative in floats)
            return None if new is None else _replace_first(out, new - block_in[0])
        handles.append(handle.blocks[hook.layer].register_forward_pre_hook(keep, with_kwargs=True))
        handles.append(module.register_forward_hook(mid))
    else:
        def post(mod: nn.Module, args: tuple, out: Any) -> Any:
            new = fn(_first_tensor(out))
            return None if new is None else _replace_first(out, new)
        handles.append(module.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def capture(handle: ModelHandle, hook: str | HookPoint, input_ids: torch.Tensor,
            attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Run the model on a batch up to ``hook`` and return the activation there, shape (B, T, d).

    The forward pass stops at the hook point: blocks after it and the LM head never run.
    Call under ``torch.inference_mode()`` (or ``no_grad``) for extraction. The result lives on the
    model's device, in the model's dtype.
    """
    hp = HookPoint.parse(hook)
    return capture_many(handle, [hp], input_ids, attention_mask)[str(hp)]


def capture_many(handle: ModelHandle, hooks: "list[str | HookPoint]", input_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One forward pass, the activations at several hook points: ``{str(hook): (B, T, d)}``.

    The forward pass stops as soon as every hook point has fired (after the deepest one), so
    capturing ``resid_pre.6`` and ``resid_pre.8`` costs one forward through 8 blocks. Each
    activation equals what :func:`capture` returns for that hook alone.
    """
    hps = list(dict.fromkeys(HookPoint.parse(h) for h in hooks))
    if not hps:
        raise HookPointError("capture_many: no hook points given")
    box: dict[str, torch.Tensor] = {}

    def grabber(key: str) -> Callable[[torch.Tensor], None]:
        def grab(x: torch.Tensor) -> None:
            box.setdefault(key, x)
            if len(box) == len(hps):
                raise _StopForward

        return grab

    with ExitStack() as stack:
        for hp in hps:
            stack.enter_context(_hooked(hp, handle, grabber(str(hp))))
        try:
            extra = {"use_cache": False} if handle.is_causal else {}
            handle.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        except _StopForward:
            pass
    missing = [str(hp) for hp in hps if str(hp) not in box]
    if missing:
        raise HookPointError(f"hook point(s) {', '.join(missing)} never reached in the forward pass of "
                             f"{handle.name!r}")
    return {str(hp): box[str(hp)] for hp in hps}


@contextmanager
def splice(handle: ModelHandle, hook: str | HookPoint, fn: Callable[..., torch.Tensor],
           source: str | HookPoint | None = None) -> Iterator[None]:
    """Within the context, every forward pass replaces the activation ``x`` at ``hook`` by ``fn(x)``.

    ``fn`` receives the (B, T, d) activation and must return a tensor of the same shape. With
    ``source`` (a hook point the forward reaches before ``hook``, e.g. an MLP's input when ``hook``
    is its output: a transcoder) ``fn(x, s)`` also receives the activation ``s`` at ``source`` of
    the same forward pass.
    """
    hp = HookPoint.parse(hook)
    src = HookPoint.parse(source) if source is not None else None
    seen: list[torch.Tensor] = []

    def sub(x: torch.Tensor) -> torch.Tensor:
        if src is not None and not seen:
            raise HookPointError(f"splice at {hp}: source hook point {src} was not reached before it")
        y = fn(x) if src is None else fn(x, seen.pop())
        if y.shape != x.shape:
            raise HookPointError(f"splice at {hp}: replacement has shape {tuple(y.shape)}, "
                                 f"activation has {tuple(x.shape)}")
        return y.to(x.dtype)

    def keep(s: torch.Tensor) -> None:
        seen[:] = [s]

    with ExitStack() as stack:
        if src is not None:
            stack.enter_context(_hooked(src, handle, keep))
        stack.enter_context(_hooked(hp, handle, sub))
        yield
