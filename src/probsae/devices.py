"""Devices, model dtypes and deterministic mode: the one home of "where does this run".

* :func:`resolve_device` turns ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` … into a
  ``torch.device`` and checks it exists (a clear :class:`~probsae.errors.ConfigError` instead of
  "invalid device ordinal" from deep inside CUDA).
* :func:`resolve_model_dtype` picks the language model's dtype for extraction (``"auto"``): bfloat16
  on a CUDA device that supports it, and on a CPU with bfloat16 instructions (AVX512-BF16 or AMX)
  for causal LMs (measured on SmolLM2: docs/results/speed-cpu.md); float32 elsewhere; or what the
  user names.
* :func:`deterministic_mode` is what ``TrainConfig.deterministic`` switches on: deterministic
  algorithms, a fixed cuBLAS workspace and no TF32, so a run replays bit for bit.

See docs/DEVICES.md for where every public function's results live.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from .errors import ConfigError

#: Model dtypes accepted by ``DataSpec.model_dtype`` (besides ``"auto"``).
MODEL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: cuBLAS workspace setting that makes cuBLAS deterministic (NVIDIA's documented value).
CUBLAS_DETERMINISTIC = ":4096:8"


def cuda_count() -> int:
    """Number of visible CUDA devices (0 without CUDA). Does not initialise a CUDA context."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(name: str | torch.device, local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` named by ``name``, checked to exist in this torch build and on this
    machine.

    ``"auto"``: CUDA if available, else CPU. Under torchrun (``local_rank`` given), ``"auto"`` and
    ``"cuda"`` mean ``cuda:LOCAL_RANK``. Raises ConfigError for an unknown name, CUDA without a
    usable GPU, a device index beyond the visible devices, or MPS/another backend this machine
    lacks — before any CUDA call.
    """
    text = str(name)
    if text == "auto":
        text = "cuda" if cuda_count() else "cpu"
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        n = cuda_count()
        if n == 0:
            build = ("without CUDA" if torch.version.cuda is None
                     else f"with CUDA {torch.version.cuda} but sees no GPU")
            raise ConfigError(f"device {name!r}: no CUDA GPU is usable (this torch {torch.__version__} was built "
                              f"{build}); use --device cpu")
        if dev.index is None and local_rank is not None:
            dev = torch.device("cuda", local_rank)
        index = dev.index if dev.index is not None else 0
        if index >= n:
            who = (f"WORLD_SIZE={os.environ.get('WORLD_SIZE', '?')}/LOCAL_RANK={local_rank} needs cuda:{index}"
                   if local_rank is not None else f"device {name!r}")
            fix = ("launch at most that many processes per node (torchrun --nproc-per-node "
                   f"{n}), or train on the CPU with --device cpu" if local_rank is not None
                   else f"use cuda:0 … cuda:{n - 1}")
            raise ConfigError(f"{who}, but only {n} CUDA device(s) are visible: {fix}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device {name!r}: MPS (Apple GPU) is not available on this machine")
    elif dev.type not in ("cpu", "meta"):
        backend = getattr(torch, dev.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise ConfigError(f"device {name!r}: {dev.type} is not available in this torch build")
    return dev


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU has bfloat16 dot-product instructions (x86 ``avx512_bf16`` or
    ``amx_bf16`` in /proc/cpuinfo), where oneDNN runs bfloat16 matmuls natively; False elsewhere
    (where bfloat16 would be emulated, and slower than float32). ``PROBSAE_CPU_BF16=0/1`` overrides."""
    forced = os.environ.get("PROBSAE_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_model_dtype(name: str, device: torch.device | str, causal: bool | Callable[[], bool] = False) -> torch.dtype:
    """The language model's dtype, else one of :data:`MODEL_DTYPES`. ``"auto"``: bfloat16 on a
    CUDA device that supports it (``torch.cuda.is_bf16_supported()``); bfloat16 on a CPU with
    bfloat16 instructions (:func:`cpu_has_native_bf16`) for a causal LM (``causal``: a bool, or a
    function asked only then), where it extracted SmolLM2's activations 4–5× faster than float32
    with the SAEs' held-out FVU unchanged within 1 % (docs/results/smollm2-dtype); float32 otherwise
    (encoders such as MiniLM were not measured and keep float32)."""
    if name == "auto":
        dev = torch.device(device)
        if dev.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if dev.type == "cpu" and cpu_has_native_bf16() and (causal() if callable(causal) else causal):
            return torch.bfloat16
        return torch.float32
    if name not in MODEL_DTYPES:
        raise ConfigError(f"unknown model dtype {name!r}: use 'auto' or one of {', '.join(MODEL_DTYPES)}")
    return MODEL_DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


@contextmanager
def deterministic_mode(enabled: bool = True) -> Iterator[None]:
    """Within the block: ``torch.use_deterministic_algorithms(True)`` (warn-only: an op without a
    deterministic implementation warns and names itself), ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` if
    unset, TF32 off for matmuls and cuDNN, cuDNN deterministic and not benchmarking. Restores the
    previous settings on exit. ``enabled=False`` changes nothing.

    ``CUBLAS_WORKSPACE_CONFIG`` takes effect only if no cuBLAS call ran earlier in the process: for
    a guarantee, export it before starting Python (``probsae train --deterministic true`` sets it
    before anything touches CUDA).
    """
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    import torch.utils.deterministic as tud

    cudnn = torch.backends.cudnn
    old = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.get_float32_matmul_precision(), cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark,
           tud.fill_uninitialized_memory)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_float32_matmul_precision("highest")  # no TF32 in fp32 matmuls
    cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark = False, True, False
    tud.fill_uninitialized_memory = False  # exactness does not need it; it costs a fill per empty()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.set_float32_matmul_precision(old[2])
        cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark = old[3], old[4], old[5]
        tud.fill_uninitialized_memory = old[6]
