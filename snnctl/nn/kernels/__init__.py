"""Fast multi-step neuron kernels, selected automatically; the reference loops stay the definition.

`kernel` names, for modules and `--kernel`:
- `auto` (default): `triton` for CUDA input, `c` for CPU input, where they fit; else `torch`.
- `triton`: fused forward/backward on CUDA GPUs (float32), when Triton is installed.
- `c`: fused forward/backward in C with OpenMP (built by `make setup`; float32, CPU).
- `torch`: the same fused algorithm in PyTorch ops: forward under no_grad saving only h, one
  reverse-time backward loop. Any dtype and device.
- `reference`: autograd through `snnctl.nn.functional`, the readable definition.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache
from pathlib import Path

KERNELS = ("auto", "c", "triton", "torch", "reference")
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
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS after each step.

    A fused kernel streams through fresh [T, B, N] buffers; with glibc's defaults every one of them is
    unmapped when freed and page-faulted in again next time, which cost about half the neuron time
    (benchmarks/results/kernels.json). Peak memory is unchanged; resident memory no longer shrinks
    after a peak. SNNCTL_KEEP_FREED_MEMORY=0 turns this off; it does nothing off glibc.
    """
    if os.environ.get("SNNCTL_KEEP_FREED_MEMORY", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_trim_threshold, 2**31 - 1)) and bool(mallopt(m_mmap_threshold, 2**30))


@cache
def clib() -> ctypes.CDLL | None:
    """The native library, or None where the set-up did not build it (then `torch` is used)."""
    if not _LIB.is_file():
        return None
    keep_freed_memory()
    lib = ctypes.CDLL(str(_LIB))
    i64, f32, i32, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_int, ctypes.c_void_p
    lib.lif_forward.argtypes = [ptr, ptr, ptr, ptr, ptr, i64, i64, f32, f32, i32]
    lib.lif_forward.restype = None
    lib.lif_backward.argtypes = [ptr, i64, ptr, ptr, ptr, ptr, ptr, i64, i64, f32, f32, i32, i32, i32, f32, i32]
    lib.lif_backward.restype = ctypes.c_double
    lib.event_linear.argtypes = [ptr, i64, ptr, i64, ptr, ptr, i64, ptr]
    lib.event_linear.restype = i64
    lib.ternary_accumulate.argtypes = [ptr, i64, i64, ptr, i64, ptr, ptr]
    lib.ternary_accumulate.restype = None
    return lib
