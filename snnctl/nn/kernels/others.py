"""Fused adaptive-LIF and graded neurons in PyTorch ops: forward without autograd, saving at most two
floats per neuron-step, and one hand-derived reverse-time backward. Same values and gradients as
`snnctl.nn.functional.adaptive_lif` / `graded_lif` (tests compare them in float64).
"""

from __future__ import annotations

import torch
from torch import Tensor

from snnctl.nn.surrogate import Surrogate


class FusedAdaptiveLIF(torch.autograd.Function):
    """Saves h_t and theta_t. Backward carries two state gradients: membrane v and trace a.

    theta_t = threshold + scale * a_{t-1};  v_t = h_t - s_t * theta_t  (or h_t * (1 - s_t));
    a_t = rho * a_{t-1} + s_t.
    """

    @staticmethod
    def forward(ctx, x, v0, a0, decay, threshold, rho: float, scale: float, sg: Surrogate, reset: str,  # type: ignore[override]
                detach_reset: bool):
        with torch.no_grad():
            h, theta = torch.empty_like(x), torch.empty_like(x)
            v, a = v0, a0
            spikes = torch.empty_like(x)
            for t in range(x.shape[0]):
                theta[t] = threshold + scale * a
                h[t] = decay * v + x[t]
                s = (h[t] >= theta[t]).to(x.dtype)
                v = h[t] - s * theta[t] if reset == "subtract" else h[t] * (1 - s)
                a = rho * a + s
                spikes[t] = s
        ctx.save_for_backward(h, theta, decay)
        ctx.rho, ctx.scale, ctx.sg, ctx.reset, ctx.detach_reset = rho, scale, sg, reset, detach_reset
        return spikes, v, a

    @staticmethod
    def backward(ctx, gs, gv, ga):  # type: ignore[override]
        h, theta, decay = ctx.saved_tensors
        subtract = ctx.reset == "subtract"
        gs = torch.zeros_like(h) if gs is None else gs.expand_as(h)
        dv = torch.zeros_like(h[0]) if gv is None else gv
        da = torch.zeros_like(h[0]) if ga is None else ga
        dx = torch.empty_like(h)
        for t in range(h.shape[0] - 1, -1, -1):
            ht, th = h[t], theta[t]
            s = (ht >= th).to(ht.dtype)
            g = ctx.sg.derivative(ht - th)
            total = gs[t] + da
            if not ctx.detach_reset:
                total = total - dv * (th if subtract else ht)
            dh = total * g + (dv if subtract else dv * (1 - s))
            dtheta = -total * g - (dv * s if subtract else 0)
            dx[t] = dh
            dv = dh * decay
            da = ctx.rho * da + ctx.scale * dtheta
        return dx, dv, da, None, None, None, None, None, None, None


class FusedGraded(torch.autograd.Function):
    """Saves h_t only: k_t = clamp(floor(h_t / theta), 0, levels) is recomputed in backward."""

    @staticmethod
    def forward(ctx, x, v0, decay, threshold, levels: int, sg: Surrogate, reset: str, detach_reset: bool):  # type: ignore[override]
        with torch.no_grad():
            h, counts = torch.empty_like(x), torch.empty_like(x)
            v = v0
            for t in range(x.shape[0]):
                h[t] = decay * v + x[t]
                k = torch.floor(h[t] / threshold).clamp(0, levels)
                v = h[t] - k * threshold if reset == "subtract" else h[t] * (k == 0).to(x.dtype)
                counts[t] = k
        ctx.save_for_backward(h, decay, threshold)
        ctx.levels, ctx.sg, ctx.reset, ctx.detach_reset = levels, sg, reset, detach_reset
        return counts, v

    @staticmethod
    def backward(ctx, gk, gv):  # type: ignore[override]
        h, decay, threshold = ctx.saved_tensors
        subtract = ctx.reset == "subtract"
        gk = torch.zeros_like(h) if gk is None else gk.expand_as(h)
        dv = torch.zeros_like(h[0]) if gv is None else gv
        dx = torch.empty_like(h)
        for t in range(h.shape[0] - 1, -1, -1):
            ht = h[t]
            g = sum(ctx.sg.derivative(ht - j * threshold) for j in range(1, ctx.levels + 1))
            total = gk[t] - (dv * threshold if subtract and not ctx.detach_reset else 0)
            direct = dv if subtract else dv * (torch.floor(ht / threshold).clamp(0, ctx.levels) == 0).to(ht.dtype)
            dh = total * g + direct
            dx[t] = dh
            dv = dh * decay
        return dx, dv, None, None, None, None, None, None


def adaptive_lif(x: Tensor, v: Tensor, a: Tensor, *, decay: Tensor, threshold: Tensor, adapt_decay: float,
                 adapt_scale: float, sg: Surrogate, reset: str = "subtract",
                 detach_reset: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    return FusedAdaptiveLIF.apply(x.contiguous(), v.expand_as(x[0]), a.expand_as(x[0]), decay, threshold,
                                  adapt_decay, adapt_scale, sg, reset, detach_reset)


def graded_lif(x: Tensor, v: Tensor, *, decay: Tensor, threshold: Tensor, levels: int, sg: Surrogate,
               reset: str = "subtract", detach_reset: bool = False) -> tuple[Tensor, Tensor]:
    return FusedGraded.apply(x.contiguous(), v.expand_as(x[0]), decay, threshold, levels, sg, reset, detach_reset)
