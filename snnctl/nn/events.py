"""Event-driven synapses for batch-1 streaming inference.

With binary spikes in, `W @ s` is the sum of the weight columns of the active inputs: reading k rows
of W^T instead of all of W. That beats the dense matrix-vector product only while few inputs are
active; `benchmarks/event_driven.py` measures the firing rate below which it wins on this machine
kind and records it in `benchmarks/results/event_driven.json`. `EventLinear` takes the event path
on its own whenever the input is one binary vector sparser than that for its size, and the dense path
otherwise, so outputs never depend on the choice beyond float rounding.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from snnctl.nn.kernels import clib
from snnctl.nn.layers import SpikingActivation

# Recorded by benchmarks/event_driven.py on the 2-core CI machine kind (results/event_driven.json):
# (weights in the layer, fraction of active inputs below which the event path beat the dense one at
# every rate measured). Small layers are dominated by per-call overhead, so the crossover grows with
# layer size. A layer uses the row of the largest measured size not above its own.
CROSSOVER = (
    (16384, 0.0),
    (65536, 0.02),
    (147456, 0.3),
    (262144, 0.5),
    (589824, 0.7),
    (1048576, 0.7),
    (4194304, 0.7),
)


def crossover_rate(n_in: int, n_out: int) -> float:
    """The firing rate below which a layer of this size takes the event path.

    SNNCTL_EVENT_CROSSOVER overrides the measured table for every layer (0 turns the path off).
    """
    value = os.environ.get("SNNCTL_EVENT_CROSSOVER")
    if value is not None:
        return float(value)
    rate = 0.0
    for weights, measured in CROSSOVER:  # sorted by size
        if weights <= n_in * n_out:
            rate = measured
    return rate


def event_linear_torch(x: Tensor, weight_t: Tensor, bias: Tensor | None) -> Tensor:
    """The event path in PyTorch ops (any device): gather the active rows of W^T and add them."""
    active = x.reshape(-1).nonzero().squeeze(1)
    out = weight_t.index_select(0, active).sum(0, keepdim=True)
    return out if bias is None else out + bias


class EventLinear(nn.Module):
    """A Linear layer that adds only the weight rows of active inputs for one binary spike vector.

    Shares its parameters with the wrapped layer (W^T is cached and refreshed when W changes).
    `events` and `dense` count which path each call took, for tests and for `snnctl bench`.
    """

    def __init__(self, linear: nn.Linear, crossover: float | None = None) -> None:
        super().__init__()
        self.linear = linear
        n_in, n_out = linear.in_features, linear.out_features
        rate = crossover_rate(n_in, n_out) if crossover is None else crossover
        self.max_active = int(rate * n_in)
        self.events = 0
        self.dense = 0
        self._cache: tuple[Tensor, int, Tensor, int, int] | None = None  # weight, version, W^T, ptrs
        self._scratch = torch.empty(n_in, dtype=torch.int64)

    def _transposed(self) -> tuple[Tensor, int, int]:
        weight, bias = self.linear.weight, self.linear.bias
        cache = self._cache
        if cache is None or cache[0] is not weight or cache[1] != weight._version:
            weight_t = weight.detach().t().contiguous()
            bias_ptr = bias.detach().data_ptr() if bias is not None else 0
            cache = self._cache = (weight, weight._version, weight_t, weight_t.data_ptr(), bias_ptr)
        return cache[2], cache[3], cache[4]

    def forward(self, x: Tensor) -> Tensor:
        if self.max_active > 0 and x.ndim == 2 and x.shape[0] == 1 and not torch.is_grad_enabled():
            out = self._event(x)
            if out is not None:
                self.events += 1
                return out
        self.dense += 1
        return F.linear(x, self.linear.weight, self.linear.bias)

    def _event(self, x: Tensor) -> Tensor | None:
        """y for one binary vector with at most `max_active` ones, or None (take the dense path)."""
        lib = clib()
        weight_t, weight_ptr, bias_ptr = self._transposed()
        if lib is None or x.device.type != "cpu" or x.dtype != torch.float32 or weight_t.dtype != torch.float32:
            if x.device != weight_t.device or x.dtype != weight_t.dtype:
                return None
            active = int(x.count_nonzero())
            if active > self.max_active or not bool(((x == 0) | (x == 1)).all()):
                return None
            return event_linear_torch(x, weight_t, self.linear.bias)
        x = x.contiguous()
        n_out = weight_t.shape[1]
        out = torch.empty(1, n_out)
        k = lib.event_linear(
            x.data_ptr(), x.shape[1], weight_ptr, n_out, bias_ptr or None, out.data_ptr(), self.max_active,
            self._scratch.data_ptr(),
        )
        return None if k < 0 else out


def _shared_copy(module: nn.Module) -> nn.Module:
    """A structural copy of `module` whose parameters and buffers are the original tensors."""
    memo: dict[int, Any] = {id(t): t for t in module.parameters()}
    memo |= {id(t): t for t in module.buffers()}
    return copy.deepcopy(module, memo)


class Streamer:
    """Run an SNN one time step at a time at batch 1, carrying neuron state between steps.

    Every Linear layer becomes an `EventLinear` (same weights), so layers fed by sparse binary spikes
    take the event path automatically. `step(x_t)` takes the input of one step, `[1, ...]`, already
    encoded (the frame itself for direct encoding), and returns that step's logits; `reset()` starts a
    new sequence.
    """

    def __init__(self, network: nn.Module, crossover: float | None = None) -> None:
        body = getattr(network, "body", network)
        self.body = _shared_copy(body).eval()
        self.event_layers: list[EventLinear] = []
        for parent in list(self.body.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    layer = EventLinear(child, crossover)
                    setattr(parent, name, layer)
                    self.event_layers.append(layer)
        # Neurons and other modules that keep time (needs_T, e.g. conversion's RateMaxPool) carry state.
        self.neurons = [m for m in self.body.modules()
                        if isinstance(m, SpikingActivation) or getattr(m, "needs_T", False)]
        for act in self.neurons:
            act.T = 1
            act.carry_state = True
        self.reset()

    def reset(self) -> None:
        for act in self.neurons:
            act.state = None

    @torch.no_grad()
    def step(self, x_t: Tensor) -> Tensor:
        if x_t.shape[0] != 1:
            raise ValueError(f"streaming runs at batch 1: expected input [1, ...], got {tuple(x_t.shape)}")
        return self.body(x_t)

    def run(self, seq: Tensor) -> Tensor:
        """Every step of `[T, 1, ...]` in turn; returns per-step logits `[T, 1, classes]`."""
        return torch.stack([self.step(x_t) for x_t in seq])

    def path_counts(self) -> dict[str, int]:
        return {
            "event": sum(layer.events for layer in self.event_layers),
            "dense": sum(layer.dense for layer in self.event_layers),
        }
