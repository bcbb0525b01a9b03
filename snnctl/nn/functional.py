"""Reference neuron dynamics: pure functions, state in, state out, time-major `[T, B, ...]`.

These loops are the readable definition of every neuron; faster kernels must match them. Each step:

    h_t = decay * v_{t-1} + x_t            (charge; decay = 1 is IF)
    s_t = Heaviside(h_t - threshold)       (fire; surrogate gradient backward)
    v_t = h_t - s_t * threshold            (reset by subtraction)  or  h_t * (1 - s_t)  (reset to zero)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from snnctl.nn.surrogate import Surrogate, graded_spike, spike

Reset = Literal["subtract", "zero"]
Scalar = float | Tensor


def _reset(h: Tensor, s: Tensor, threshold: Scalar, reset: Reset, detach: bool) -> Tensor:
    r = s.detach() if detach else s
    if reset == "subtract":
        return h - r * threshold
    return h * (1 - r)


def lif(
    x: Tensor,
    v: Tensor,
    *,
    decay: Scalar,
    threshold: Scalar,
    sg: Surrogate,
    reset: Reset = "subtract",
    detach_reset: bool = False,
) -> tuple[Tensor, Tensor]:
    """Leaky integrate-and-fire over all T steps of `x`; returns (spikes, final membrane)."""
    spikes = []
    for xt in x.unbind(0):  # unbind, not x[t]: indexing makes backward O(T^2) in memory traffic
        h = decay * v + xt
        s = spike(h - threshold, sg)
        v = _reset(h, s, threshold, reset, detach_reset)
        spikes.append(s)
    return torch.stack(spikes), v


def adaptive_lif(
    x: Tensor,
    v: Tensor,
    a: Tensor,
    *,
    decay: Scalar,
    threshold: Scalar,
    adapt_decay: float,
    adapt_scale: float,
    sg: Surrogate,
    reset: Reset = "subtract",
    detach_reset: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """LIF whose threshold rises by `adapt_scale` per recent spike (trace `a` decays by `adapt_decay`).

    theta_t = threshold + adapt_scale * a_{t-1};  a_t = adapt_decay * a_{t-1} + s_t.
    Returns (spikes, final membrane, final adaptation trace).
    """
    spikes = []
    for xt in x.unbind(0):
        theta = threshold + adapt_scale * a
        h = decay * v + xt
        s = spike(h - theta, sg)
        v = _reset(h, s, theta, reset, detach_reset)
        a = adapt_decay * a + s
        spikes.append(s)
    return torch.stack(spikes), v, a


def graded_lif(
    x: Tensor,
    v: Tensor,
    *,
    decay: Scalar,
    threshold: Tensor,
    levels: int,
    sg: Surrogate,
    reset: Reset = "subtract",
    detach_reset: bool = False,
) -> tuple[Tensor, Tensor]:
    """Multi-threshold neuron: emits k in {0..levels} per step (k threshold crossings at once).

    With reset by subtraction the membrane loses k * threshold, so charge is conserved as in IF.
    """
    counts = []
    for xt in x.unbind(0):
        h = decay * v + xt
        k = graded_spike(h, threshold, levels, sg)
        r = k.detach() if detach_reset else k
        v = h - r * threshold if reset == "subtract" else h * (r == 0).to(h.dtype)
        counts.append(k)
    return torch.stack(counts), v
