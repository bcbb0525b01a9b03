"""Fast multi-step neuron kernels, selected automatically; the reference loops stay the definition.

`kernel` names, for modules and `--kernel`:
- `auto` (default): the native C kernel when it is built and the input fits it, else `torch`.
- `c`: fused forward/backward in C with OpenMP (built by `make setup`; float32, CPU).
- `torch`: the same fused algorithm in PyTorch ops: forward under no_grad saving only h, one
  reverse-time backward loop. Any dtype and device.
- `reference`: autograd through `snnctl.nn.functional`, the readable definition.
"""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path

KERNELS = ("auto", "c", "torch", "reference")
_LIB = Path(__file__).with_name("_lif.so")
_default = {"kernel": "auto"}


def set_default(kernel: str) -> None:
    """Choose the kernel every neuron uses unless it names its own (`--kernel` sets this)."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel '{kernel}'; known: {', '.join(KERNELS)}")
    _default["kernel"] = kernel


def default() -> str:
    return _default["kernel"]


@cache
def clib() -> ctypes.CDLL | None:
    """The native library, or None where the set-up did not build it (then `torch` is used)."""
    if not _LIB.is_file():
        return None
    lib = ctypes.CDLL(str(_LIB))
    i64, f32, i32, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_int, ctypes.c_void_p
    lib.lif_forward.argtypes = [ptr, ptr, ptr, ptr, ptr, i64, i64, f32, f32, i32]
    lib.lif_forward.restype = None
    lib.lif_backward.argtypes = [ptr, ptr, ptr, ptr, ptr, ptr, i64, i64, f32, f32, i32, i32, i32, f32, i32]
    lib.lif_backward.restype = ctypes.c_double
    return lib
