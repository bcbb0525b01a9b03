"""Fused LIF/IF over all T steps: one forward pass saving only the pre-reset membrane h (one float
per neuron-step), one reverse-time backward pass. Matches `snnctl.nn.functional.lif` exactly in value
and gradient (tests compare them in float64 for every surrogate and both resets).
"""

from __future__ import annotations

import torch
from torch import Tensor

from snnctl.nn.kernels import clib
from snnctl.nn.surrogate import SURROGATES, Surrogate

_SURROGATE_CODE = {name: i for i, name in enumerate(("atan", "sigmoid", "fast_sigmoid", "triangle"))}
assert set(_SURROGATE_CODE) == set(SURROGATES)


def c_fits(x: Tensor, decay: Tensor, threshold: Tensor) -> bool:
    """The native kernel takes float32 CPU tensors and one decay and threshold per layer."""
    return (
        clib() is not None and x.device.type == "cpu" and x.dtype == torch.float32
        and decay.numel() == 1 and threshold.numel() == 1
    )


def _reset(h: Tensor, threshold: Tensor, reset: str) -> Tensor:
    s = (h >= threshold).to(h.dtype)
    return h - s * threshold if reset == "subtract" else h * (1 - s)


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


class FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, decay, threshold, sg: Surrogate, reset: str, detach_reset: bool, native: bool):  # type: ignore[override]
        x = x.contiguous()
        v0 = v0.contiguous()
        T = x.shape[0]
        if native:
            s, h, v = torch.empty_like(x), torch.empty_like(x), torch.empty_like(v0)
            clib().lif_forward(_ptr(x), _ptr(v0), _ptr(s), _ptr(h), _ptr(v), T, v0.numel(),
                               float(decay), float(threshold), 0 if reset == "subtract" else 1)
        else:
            with torch.no_grad():
                h = torch.empty_like(x)
                v = v0
                for t in range(T):
                    h[t] = decay * v + x[t]
                    v = _reset(h[t], threshold, reset)
                s = (h >= threshold).to(x.dtype)
        ctx.save_for_backward(h, v0, decay, threshold)
        ctx.sg, ctx.reset, ctx.detach_reset, ctx.native = sg, reset, detach_reset, native
        return s, v

    @staticmethod
    def backward(ctx, gs, gv):  # type: ignore[override]
        h, v0, decay, threshold = ctx.saved_tensors
        want_decay = ctx.needs_input_grad[2]
        if gs is None:
            gs = torch.zeros(1, dtype=h.dtype)
        broadcast = ctx.native and gs.numel() > 0 and all(st == 0 for st in gs.stride())  # loss.sum()
        gs = gs.reshape(-1)[:1] if broadcast else gs.contiguous()
        gv = torch.zeros_like(v0) if gv is None else gv.contiguous()
        subtract = ctx.reset == "subtract"
        if ctx.native:
            dx, dv0 = torch.empty_like(h), torch.empty_like(v0)
            dd = clib().lif_backward(
                _ptr(gs), 0 if broadcast else v0.numel(), _ptr(gv), _ptr(h), _ptr(v0), _ptr(dx), _ptr(dv0),
                h.shape[0], v0.numel(),
                float(decay), float(threshold), 0 if subtract else 1, int(ctx.detach_reset),
                _SURROGATE_CODE[ctx.sg.name], float(ctx.sg.width), int(want_decay),
            )
            ddecay = torch.tensor(dd, dtype=decay.dtype) if want_decay else None
            return dx, dv0, ddecay, None, None, None, None, None
        gs = gs.expand_as(h)
        dx = torch.empty_like(h)
        dv = gv
        ddecay = torch.zeros_like(decay) if want_decay else None
        for t in range(h.shape[0] - 1, -1, -1):
            ht = h[t]
            g = ctx.sg.derivative(ht - threshold)
            through_spike = gs[t] if ctx.detach_reset else gs[t] - dv * (threshold if subtract else ht)
            dh = through_spike * g + (dv if subtract else dv * (ht < threshold).to(ht.dtype))
            dx[t] = dh
            if want_decay:
                v_prev = _reset(h[t - 1], threshold, ctx.reset) if t > 0 else v0
                ddecay = ddecay + (dh * v_prev).sum().reshape(decay.shape)
            dv = dh * decay
        return dx, dv, ddecay, None, None, None, None, None


def lif(
    x: Tensor, v0: Tensor, *, decay: Tensor, threshold: Tensor, sg: Surrogate,
    reset: str = "subtract", detach_reset: bool = False, native: bool = False,
) -> tuple[Tensor, Tensor]:
    """Same contract as `snnctl.nn.functional.lif`, with the fused kernels."""
    decay = torch.as_tensor(decay, dtype=x.dtype, device=x.device)
    threshold = torch.as_tensor(threshold, dtype=x.dtype, device=x.device)
    return FusedLIF.apply(x, v0.expand_as(x[0]), decay, threshold, sg, reset, detach_reset, native)
