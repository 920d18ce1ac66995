"""Hook points: where activations are read from (capture) and written back to (splice).

Syntax (see docs/DATA.md):

* ``resid_pre.L``  — the residual stream entering block ``L`` (= ``hidden_states[L]``).
* ``resid_post.L`` — the residual stream leaving block ``L`` (= ``hidden_states[L+1]``, except
  for the last block of GPT-2/Llama-like models, whose ``hidden_states[-1]`` has the final norm
  applied; ``resid_post`` never does).
* ``module:<dotted.name>`` — the output (first element if a tuple) of any named submodule.

Capture runs the model only up to the hook point: the hook raises a private exception that
stops the forward pass, so later blocks (and the LM head) never run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from probsae.data.errors import HookPointError
from probsae.data.models import ModelHandle

_RESID = re.compile(r"^(resid_pre|resid_post)\.(-?\d+)$")


@dataclass(frozen=True)
class HookPoint:
    """A parsed hook point.

    Attributes:
        kind: ``"resid_pre"``, ``"resid_post"`` or ``"module"``.
        layer: block index for the residual kinds, None for ``module``.
        module: dotted module name for ``module``, None otherwise.
    """

    kind: str
    layer: int | None = None
    module: str | None = None

    @classmethod
    def parse(cls, spec: "str | HookPoint") -> "HookPoint":
        """Parse ``resid_pre.L``, ``resid_post.L`` or ``module:<name>``."""
        if isinstance(spec, HookPoint):
            return spec
        s = spec.strip()
        m = _RESID.match(s)
        if m:
            return cls(kind=m.group(1), layer=int(m.group(2)))
        if s.startswith("module:") and len(s) > len("module:"):
            return cls(kind="module", module=s[len("module:"):])
        raise HookPointError(f"invalid hook point {spec!r}: expected 'resid_pre.L', 'resid_post.L' "
                             "(L a block index) or 'module:<dotted.module.name>'")

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
        assert self.layer is not None
        if not 0 <= self.layer < handle.n_layers:
            raise HookPointError(f"hook point {self}: layer {self.layer} out of range; model "
                                 f"{handle.name!r} has {handle.n_layers} layers, valid layers are "
                                 f"0..{handle.n_layers - 1}")

    def module_of(self, handle: ModelHandle) -> nn.Module:
        """The module the hook attaches to (a block for residual kinds)."""
        self.validate(handle)
        if self.kind == "module":
            return handle.model.get_submodule(self.module or "")
        return handle.blocks[self.layer]


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


@contextmanager
def _hooked(hook: HookPoint, handle: ModelHandle, fn: Callable[[torch.Tensor], torch.Tensor | None]
            ) -> Iterator[None]:
    """Register ``fn`` at ``hook``; if ``fn`` returns a tensor, it replaces the activation."""
    module = hook.module_of(handle)
    if hook.kind == "resid_pre":
        def pre(mod: nn.Module, args: tuple, kwargs: dict) -> tuple | None:
            if args:
                new = fn(args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            if "hidden_states" not in kwargs:
                raise HookPointError(f"hook point {hook}: block received no hidden_states")
            new = fn(kwargs["hidden_states"])
            return None if new is None else (args, {**kwargs, "hidden_states": new})
        h = module.register_forward_pre_hook(pre, with_kwargs=True)
    else:
        def post(mod: nn.Module, args: tuple, out: Any) -> Any:
            new = fn(_first_tensor(out))
            return None if new is None else _replace_first(out, new)
        h = module.register_forward_hook(post)
    try:
        yield
    finally:
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
