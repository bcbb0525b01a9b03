"""Lower a NIR-imported graph network to a chain of populations: synapse -> neuron, the unit Lava
processes and Loihi cores work in.

Every run of linear nodes between two neuron layers becomes one synapse: a single Conv2d stays a
convolution; anything else (pooling, flatten, a conv after pooling, affine) is composed into one
dense matrix by pushing the identity through it, which is exact. The last run (no neuron after it)
is the readout: a non-spiking integrator. Branches (residual adds) cannot be a chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from snnctl.backends.graphnet import GraphNet
from snnctl.errors import UserError
from snnctl.nn import SpikingActivation

MAX_DENSE_ENTRIES = 64_000_000


@dataclass
class Population:
    """One synapse -> neuron stage. `weight` is (out, in) for dense, (C_out, C_in/g, kh, kw) for conv;
    `bias` is per output neuron (flattened); `decay`/`threshold` are None for the readout."""

    name: str
    kind: str  # "dense" | "conv"
    weight: np.ndarray
    bias: np.ndarray
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    decay: float | None
    threshold: float | None
    conv: dict[str, Any] | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def readout(self) -> bool:
        return self.decay is None

    def dense_matrix(self, weight: np.ndarray | None = None) -> np.ndarray:
        """The (out, in) matrix of this synapse (a conv unrolled), for `weight` or the float weights."""
        w = self.weight if weight is None else weight
        if self.kind == "dense":
            return w
        conv = nn.Conv2d(self.in_shape[0], self.out_shape[0], tuple(w.shape[2:]), bias=False, **self.conv)
        conv.weight.data = torch.as_tensor(w, dtype=torch.float64)
        conv = conv.double()
        n_in = int(np.prod(self.in_shape))
        if n_in * self.size > MAX_DENSE_ENTRIES:
            raise UserError(f"layer {self.name}: {n_in}x{self.size} is too large to unroll to a dense matrix")
        with torch.no_grad():
            eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *self.in_shape)
            return conv(eye).reshape(n_in, -1).T.numpy()

    def synapse(self, x: torch.Tensor, weight: np.ndarray | None = None) -> torch.Tensor:
        """Apply the synapse (no bias) to a batch `[B, in...]` in float64; exact on integer values."""
        w = torch.as_tensor(self.weight if weight is None else weight, dtype=torch.float64)
        if self.kind == "dense":
            return x.reshape(x.shape[0], -1).double() @ w.T
        return torch.nn.functional.conv2d(x.reshape(x.shape[0], *self.in_shape).double(), w, **self.conv).reshape(
            x.shape[0], -1)


def _module_node(net: GraphNet, entry: dict[str, Any]) -> nn.Module:
    return net.layers[entry["name"]]


def lower(net: nn.Module, input_shape: tuple[int, ...]) -> list[Population]:
    """The chain of populations of a GraphNet body (see module doc); branches are a user error."""
    body = net.body if hasattr(net, "body") else net
    if not isinstance(body, GraphNet):
        raise TypeError("lower() takes a GraphNet (a NIR import)")
    entries = [e for e in body.spec if e["type"] != "input"]
    previous = next(e["name"] for e in body.spec if e["type"] == "input")
    pops: list[Population] = []
    group: list[dict[str, Any]] = []
    shape = tuple(input_shape)
    for entry in entries:
        if entry["inputs"] != [previous]:
            raise UserError(f"layer {entry['name']} joins {len(entry['inputs'])} branches (a residual add); "
                            "Lava and Loihi chains are sequential",
                            hint="compile this model to nir or onnx, or use a network without skip connections")
        previous = entry["name"]
        if entry["type"] == "synapse":
            raise UserError(f"layer {entry['name']} is a synaptic current (a CubaLIF or LI); snnctl's Lava and "
                            "Loihi chains have plain LIF populations only", hint="compile this model to nir")
        if entry["type"] == "neuron" or entry["type"] == "output":
            if not group:
                raise UserError(f"layer {entry['name']} has no synapse before it",
                                hint="every neuron layer needs a linear or conv layer feeding it")
            neuron = _module_node(body, entry) if entry["type"] == "neuron" else None
            pop = _population(body, group, shape, neuron, entry["name"] if neuron is not None else "readout")
            pops.append(pop)
            shape = pop.out_shape
            group = []
        else:
            group.append(entry)
    return pops


def _population(body: GraphNet, group: list[dict[str, Any]], in_shape: tuple[int, ...],
                neuron: SpikingActivation | None, name: str) -> Population:
    modules = [_module_node(body, e) for e in group]
    chain = nn.Sequential(*modules).double().eval()
    with torch.no_grad():
        zero = torch.zeros(1, *in_shape, dtype=torch.float64)
        bias_map = chain(zero)
    out_shape = tuple(bias_map.shape[1:])
    decay = threshold = None
    if neuron is not None:
        decay, threshold = float(neuron.neuron.decay), float(neuron.neuron.threshold)
    bias = bias_map.reshape(-1).numpy()
    if len(modules) == 1 and isinstance(modules[0], nn.Conv2d):
        conv = modules[0]
        params = {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups}
        pop = Population(name, "conv", conv.weight.detach().double().numpy().copy(), bias, in_shape, out_shape,
                         decay, threshold, params)
    else:
        n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
        if n_in * n_out > MAX_DENSE_ENTRIES:
            raise UserError(f"layers {group[0]['name']}..{group[-1]['name']} compose to a {n_out}x{n_in} dense "
                            "synapse, too large", hint="put a neuron after each conv, or pool less")
        with torch.no_grad():
            eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
            w = (chain(eye) - bias_map).reshape(n_in, n_out).T.numpy().copy()
        pop = Population(name, "dense", w, bias, in_shape, out_shape, decay, threshold)
    for m in modules:
        m.float()
    return pop
