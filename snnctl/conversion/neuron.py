"""The neuron that replaces a ReLU-like op, mirroring the QCFS activation (snnctl.nn.qcfs) where the ANN had one.

`Converted` divides its input by a per-channel threshold theta, runs an IF neuron with threshold 1 and
reset by subtraction, and multiplies the spikes by theta again (threshold balancing by scaling, after
SpikingJelly's VoltageScaler), so the weights around it are never rescaled and residual adds, concat and
average pooling see "rate x theta" values they can sum unchanged. Its calibration knobs are buffers:
`shift` (a constant input current per step, bias correction) and `v0` (initial membrane potential,
added to the first step's input; both in units of theta).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from snnctl.nn.layers import SpikingActivation
from snnctl.nn.neurons import IF, GradedLIF, SpikingNeuron
from snnctl.nn.qcfs import qcfs


@dataclass(frozen=True)
class AnalogOp:
    """What the ANN computed where the neuron now stands: relu, clip to [0, high], or QCFS."""

    kind: str  # "relu" | "clip" | "qcfs"
    high: float | None = None
    levels: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def per_channel(value: Tensor, x: Tensor) -> Tensor:
    """Broadcast a [C] (or [1]) buffer along dimension 1 of x."""
    if value.numel() == 1 or x.ndim < 2:
        return value.reshape(()) if value.numel() == 1 else value
    return value.reshape(1, -1, *([1] * (x.ndim - 2)))


class SignedIF(SpikingNeuron):
    """An IF neuron (threshold 1, reset by subtraction) that takes a spike back: it emits -1 when its
    potential is below 0 while it has fired more spikes than it has taken back.

    A plain IF neuron's spike count follows the running maximum of its summed input, so spikes fired on
    an early transient stay counted; this one's net count follows clamp(floor(v0 + summed input), 0, t)
    (the signed neurons of Spiking-YOLO, used here for rates). Inference only: conversion never trains it.
    """

    def __init__(self) -> None:
        super().__init__(threshold=1.0, reset="subtract", v_init=0.0)
        self.register_buffer("decay", torch.ones(()))

    def run(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        v, count = state if state is not None else (torch.zeros_like(x[0]), torch.zeros_like(x[0]))
        out = []
        for xt in x.unbind(0):
            v = v + xt
            s = (v >= 1.0).to(x.dtype) - ((v < 0) & (count > 0)).to(x.dtype)
            v = v - s
            count = count + s
            out.append(s)
        return torch.stack(out), (v, count)


class Converted(nn.Module):
    """A threshold-scaled IF neuron (binary spikes), signed IF neuron (spikes of -1 and +1) or graded
    neuron (up to `levels` spikes per step)."""

    emits_scaled_spikes = True  # spikes times theta: the next layer's work is accumulates (metrics)

    def __init__(self, analog: AnalogOp, graded_levels: int | None = None, signed: bool = False) -> None:
        super().__init__()
        if signed and graded_levels is not None:
            raise ValueError("a converted neuron is signed or graded, not both")
        self.analog_op = analog
        self.graded_levels = graded_levels
        self.signed = signed
        if signed:
            neuron: nn.Module = SignedIF()
        elif graded_levels is None:
            neuron = IF(threshold=1.0, reset="subtract", v_init=0.0)
        else:
            neuron = GradedLIF(levels=graded_levels, decay=1.0, threshold=1.0, reset="subtract", v_init=0.0)
        self.act = SpikingActivation(neuron)
        self.register_buffer("theta", torch.ones(1))
        self.register_buffer("shift", torch.zeros(1))
        self.register_buffer("v0", torch.full((1,), 0.5))
        self.register_buffer("lam", torch.ones(()))  # QCFS ceiling of the ANN op (unused otherwise)
        self.analog = False  # True: compute the ANN op instead (calibration compares the two)

    @property
    def neuron(self) -> nn.Module:
        return self.act.neuron

    def run_analog(self, x: Tensor) -> Tensor:
        op = self.analog_op
        if op.kind == "qcfs":
            return qcfs(x, self.lam, int(op.levels or 1))
        if op.kind == "clip":
            return torch.clamp(x, 0, op.high)
        return torch.relu(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.analog:
            return self.run_analog(x)
        theta = per_channel(self.theta, x)
        z = x / theta + per_channel(self.shift, x)
        if self.act.carry_state and self.act.state is not None:  # streaming, past the first step
            return self.act(z) * theta
        T = self.act.T
        steps = z.reshape(T, z.shape[0] // T, *z.shape[1:])
        first = steps[0] + self.neuron.decay * per_channel(self.v0, steps[0])
        z = torch.cat([first.unsqueeze(0), steps[1:]]).reshape(z.shape)
        return self.act(z) * theta

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args: Any) -> None:
        # Thresholds are per channel once calibrated: take the saved shape, not the initial one-element buffer.
        for name in ("theta", "shift", "v0"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(saved))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        spikes = "signed (-1, +1)" if self.signed else \
            "binary" if self.graded_levels is None else f"graded (<= {self.graded_levels}/step)"
        return f"{self.analog_op.kind}, {spikes}, channels={self.theta.numel()}"


class RateMaxPool(nn.Module):
    """Max pooling of time-varying currents that converges to the max of their rates.

    Pooling each step's values separately overestimates (the mean of maxima exceeds the max of means
    when inputs fluctuate, as spike-driven currents do). Both modes keep each input's running sum S(t):

    - differenced (`maxpool = "diff"`, the default): each window passes max S(t) - max S(t-1). Summed
      over t this is exactly the max of the summed inputs, so the window's total is T x the max of the
      mean currents with no selection bias. The output is a current and may be negative.
    - gated (`maxpool = "rate"`, bundles converted before the differenced pool): each window passes, at
      step t, the value of the input whose running sum is largest (SNN Toolbox's fir_max applied to
      currents). The winner tends to win when its current value is high, so it over-estimates where a
      window's inputs are nearly tied, as they are on smooth 28x28 images.
    """

    needs_T = True

    def __init__(self, pool: nn.Module, differenced: bool = False) -> None:
        super().__init__()
        self.pool = pool
        self.differenced = differenced
        self.T = 1
        self.carry_state = False  # streaming: the running sums persist from call to call
        self.state: Tensor | None = None

    def _pool(self, x: Tensor, indices: bool = False) -> Any:
        p = self.pool
        pool_fn = {1: torch.nn.functional.max_pool1d, 2: torch.nn.functional.max_pool2d}[x.ndim - 2]
        return pool_fn(x, p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode, return_indices=indices)

    def forward(self, x: Tensor) -> Tensor:
        T = self.T
        steps = x.reshape(T, x.shape[0] // T, *x.shape[1:])
        before = self.state if self.carry_state else None  # the running sums up to the previous call
        running = steps.cumsum(0) + (0 if before is None else before)
        if self.carry_state:
            self.state = running[-1]
        if not self.differenced:
            _, idx = self._pool(running.reshape(x.shape), indices=True)
            return x.flatten(2).gather(2, idx.flatten(2)).view_as(idx).to(x.dtype)
        top = self._pool(running.reshape(x.shape))
        top = top.reshape(T, top.shape[0] // T, *top.shape[1:])
        previous = torch.zeros_like(top[:1]) if before is None else self._pool(before).unsqueeze(0)
        return torch.diff(top, dim=0, prepend=previous).reshape(-1, *top.shape[2:]).to(x.dtype)
