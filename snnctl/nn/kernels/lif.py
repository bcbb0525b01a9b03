"""Fused LIF/IF over all T steps: one forward pass saving only the pre-reset membrane h (one float
per neuron-step), one reverse-time backward pass. Three implementations of the same algorithm:
`c` (CPU, native, float32), `triton` (CUDA GPUs) and `torch` (PyTorch ops, any device and dtype).
Tests compare each with `snnctl.nn.functional.lif` in value and gradient.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor

from snnctl.nn.kernels import clib
from snnctl.nn.surrogate import SURROGATES, Surrogate

_SURROGATE_CODE = {name: i for i, name in enumerate(("atan", "sigmoid", "fast_sigmoid", "triangle"))}
assert set(_SURROGATE_CODE) == set(SURROGATES)


def _scalar_params(decay: Tensor, threshold: Tensor) -> bool:
    return decay.numel() == 1 and threshold.numel() == 1


def c_fits(x: Tensor, decay: Tensor, threshold: Tensor) -> bool:
    """The native kernel takes float32 CPU tensors and one decay and threshold per layer."""
    return clib() is not None and x.device.type == "cpu" and x.dtype == torch.float32 and _scalar_params(
        decay, threshold
    )


@cache
def triton_module():
    """The Triton kernels, or None where Triton or CUDA is missing (then `torch` is used)."""
    if not torch.cuda.is_available():
        return None
    try:
        from snnctl.nn.kernels import triton_lif
    except ImportError:
        return None
    return triton_lif


def triton_fits(x: Tensor, decay: Tensor, threshold: Tensor) -> bool:
    return x.is_cuda and x.dtype == torch.float32 and _scalar_params(decay, threshold) and triton_module() is not None


def _reset(h: Tensor, threshold: Tensor, reset: str) -> Tensor:
    s = (h >= threshold).to(h.dtype)
    return h - s * threshold if reset == "subtract" else h * (1 - s)


def _is_broadcast_scalar(g: Tensor) -> bool:
    """True for the gradient of `loss = spikes.sum()`: one value expanded over every neuron-step."""
    return g.numel() > 0 and all(st == 0 for st in g.stride())


class FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, decay, threshold, sg: Surrogate, reset: str, detach_reset: bool, impl: str):  # type: ignore[override]
        x, v0 = x.contiguous(), v0.contiguous()
        if impl == "c":
            s, h, v = torch.empty_like(x), torch.empty_like(x), torch.empty_like(v0)
            clib().lif_forward(x.data_ptr(), v0.data_ptr(), s.data_ptr(), h.data_ptr(), v.data_ptr(), x.shape[0],
                               v0.numel(), float(decay), float(threshold), int(reset == "zero"))
        elif impl == "triton":
            s, h, v = triton_module().forward(x, v0, float(decay), float(threshold), reset == "zero")
        else:
            with torch.no_grad():
                h = torch.empty_like(x)
                v = v0
                for t in range(x.shape[0]):
                    h[t] = decay * v + x[t]
                    v = _reset(h[t], threshold, reset)
                s = (h >= threshold).to(x.dtype)
        ctx.save_for_backward(h, v0, decay, threshold)
        ctx.sg, ctx.reset, ctx.detach_reset, ctx.impl = sg, reset, detach_reset, impl
        return s, v

    @staticmethod
    def backward(ctx, gs, gv):  # type: ignore[override]
        h, v0, decay, threshold = ctx.saved_tensors
        want_decay = ctx.needs_input_grad[2]
        subtract = ctx.reset == "subtract"
        gv = torch.zeros_like(v0) if gv is None else gv.contiguous()
        if gs is None:
            gs = torch.zeros(1, dtype=h.dtype, device=h.device).expand_as(h)
        ddecay = None
        if ctx.impl in ("c", "triton"):
            bcast = _is_broadcast_scalar(gs)
            gs = gs.reshape(-1)[:1].contiguous() if bcast else gs.contiguous()
            code, width = _SURROGATE_CODE[ctx.sg.name], float(ctx.sg.width)
            if ctx.impl == "c":
                dx, dv = torch.empty_like(h), torch.empty_like(v0)
                dd = clib().lif_backward(
                    gs.data_ptr(), 0 if bcast else v0.numel(), gv.data_ptr(), h.data_ptr(), v0.data_ptr(),
                    dx.data_ptr(), dv.data_ptr(), h.shape[0], v0.numel(), float(decay), float(threshold),
                    int(not subtract), int(ctx.detach_reset), code, width, int(want_decay),
                )
                ddecay = torch.tensor(dd, dtype=decay.dtype).reshape(decay.shape) if want_decay else None
            else:
                dx, dv = triton_module().backward(gs, bcast, gv, h, float(decay), float(threshold), not subtract,
                                                  ctx.detach_reset, code, width)
                if want_decay:
                    v_prev = torch.cat([v0.unsqueeze(0), _reset(h[:-1], threshold, ctx.reset)])
                    ddecay = (dx * v_prev).sum().reshape(decay.shape)
            return dx, dv, ddecay, None, None, None, None, None
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


def choose(kernel: str, x: Tensor, decay: Tensor, threshold: Tensor) -> str:
    """Resolve a kernel name to an implementation; `auto` picks the fastest one that fits the input."""
    if kernel == "auto":
        if triton_fits(x, decay, threshold):
            return "triton"
        return "c" if c_fits(x, decay, threshold) else "torch"
    if kernel == "c" and not c_fits(x, decay, threshold):
        raise ValueError("kernel 'c' needs the built library, float32 CPU input and scalar decay/threshold")
    if kernel == "triton" and not triton_fits(x, decay, threshold):
        raise ValueError("kernel 'triton' needs CUDA, Triton, float32 input and scalar decay/threshold")
    return kernel


def lif(
    x: Tensor, v0: Tensor, *, decay: Tensor, threshold: Tensor, sg: Surrogate,
    reset: str = "subtract", detach_reset: bool = False, kernel: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Same contract as `snnctl.nn.functional.lif`, through the fused kernels."""
    decay = torch.as_tensor(decay, dtype=x.dtype, device=x.device)
    threshold = torch.as_tensor(threshold, dtype=x.dtype, device=x.device)
    impl = choose(kernel, x, decay, threshold)
    return FusedLIF.apply(x, v0.expand_as(x[0]), decay, threshold, sg, reset, detach_reset, impl)
