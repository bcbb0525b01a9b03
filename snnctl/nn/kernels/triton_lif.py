"""Fused LIF/IF forward and backward on CUDA GPUs, in Triton.

One program per block of neurons loops over T with the membrane in registers: forward reads x_t and
writes s_t and h_t (12 bytes per neuron-step in float32), backward reads the spike gradient and h_t and
writes dx_t (12 bytes), the memory-traffic floor for an exact-reset LIF. Imported only when CUDA and
Triton are both present; `snnctl.nn.kernels.lif` falls back cleanly otherwise.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024
HALF_PI = 1.5707963267948966


@triton.jit
def _surrogate(a, inv_w, KIND: tl.constexpr):
    if KIND == 0:
        z = 1.5707963267948966 * a
        g = 0.5 * inv_w / (1.0 + z * z)
    elif KIND == 1:
        g = inv_w / ((1.0 + tl.exp(-a)) * (1.0 + tl.exp(a)))
    elif KIND == 2:
        d = 1.0 + tl.abs(a)
        g = 0.5 * inv_w / (d * d)
    else:
        g = tl.maximum(1.0 - tl.abs(a), 0.0) * inv_w
    return g


@triton.jit
def _forward(x_ptr, v0_ptr, s_ptr, h_ptr, v_ptr, T, M, decay, threshold,
             RESET_ZERO: tl.constexpr, BLOCK_SIZE: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < M
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    for t in range(T):
        x = tl.load(x_ptr + t * M + offs, mask=mask, other=0.0).to(tl.float32)
        h = decay * v + x
        s = (h >= threshold).to(tl.float32)
        tl.store(h_ptr + t * M + offs, h, mask=mask)
        tl.store(s_ptr + t * M + offs, s, mask=mask)
        if RESET_ZERO:
            v = h * (1.0 - s)
        else:
            v = h - s * threshold
    tl.store(v_ptr + offs, v, mask=mask)


@triton.jit
def _backward(gs_ptr, gv_ptr, h_ptr, dx_ptr, dv0_ptr, T, M, decay, threshold, inv_w,
              KIND: tl.constexpr, RESET_ZERO: tl.constexpr, DETACH: tl.constexpr, BCAST: tl.constexpr,
              BLOCK_SIZE: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < M
    dv = tl.load(gv_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g0 = tl.load(gs_ptr).to(tl.float32)
    for i in range(T):
        t = T - 1 - i
        h = tl.load(h_ptr + t * M + offs, mask=mask, other=0.0)
        if BCAST:
            gs = g0
        else:
            gs = tl.load(gs_ptr + t * M + offs, mask=mask, other=0.0).to(tl.float32)
        s = (h >= threshold).to(tl.float32)
        g = _surrogate((h - threshold) * inv_w, inv_w, KIND)
        if RESET_ZERO:
            through = 0.0 if DETACH else dv * h
            dh = (gs - through) * g + dv * (1.0 - s)
        else:
            through = 0.0 if DETACH else dv * threshold
            dh = (gs - through) * g + dv
        tl.store(dx_ptr + t * M + offs, dh, mask=mask)
        dv = dh * decay
    tl.store(dv0_ptr + offs, dv, mask=mask)


def forward(x: torch.Tensor, v0: torch.Tensor, decay: float, threshold: float, reset_zero: bool):
    T, M = x.shape[0], v0.numel()
    s, h, v = torch.empty_like(x), torch.empty_like(x), torch.empty_like(v0)
    _forward[(triton.cdiv(M, BLOCK),)](x, v0, s, h, v, T, M, decay, threshold,
                                       RESET_ZERO=reset_zero, BLOCK_SIZE=BLOCK)
    return s, h, v


def backward(gs: torch.Tensor, bcast: bool, gv: torch.Tensor, h: torch.Tensor, decay: float, threshold: float,
             reset_zero: bool, detach: bool, kind: int, width: float):
    T, M = h.shape[0], gv.numel()
    dx, dv0 = torch.empty_like(h), torch.empty_like(gv)
    _backward[(triton.cdiv(M, BLOCK),)](gs, gv, h, dx, dv0, T, M, decay, threshold, 1.0 / width,
                                        KIND=kind, RESET_ZERO=reset_zero, DETACH=detach, BCAST=bcast,
                                        BLOCK_SIZE=BLOCK)
    return dx, dv0
