"""NIR graphs as snnctl models: a NIR graph becomes a `GraphNet` (zoo name `nir`), an SNN bundle.

The import discretises NIR's equations with the same explicit `dt` and scheme as the export (see
`extract`): an LIF becomes decay = 1 - dt/tau (euler) or exp(-dt/tau) (exact) with its input gain
and leak folded into a `scale` node before the neuron when they are not the identity. Nodes run in
topological order; several edges into one node are summed, as NIR defines.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

from snnctl.backends.extract import ExportOptions
from snnctl.errors import UserError
from snnctl.nn import SpikingActivation
from snnctl.nn.layers import Synapse

Spec = dict[str, Any]


def _uniform(values: np.ndarray, what: str, where: str) -> float:
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size == 0 or not np.allclose(flat, flat[0], rtol=1e-6, atol=0):
        raise UserError(f"node {where}: {what} differs between neurons",
                        hint="snnctl neurons take one value per layer; make it uniform before export")
    return float(flat[0])


def _step_fraction(tau_values: Any, opts: ExportOptions, what: str, where: str) -> float:
    """The fraction a of the way to equilibrium per step (decay = 1 - a) for time constant tau."""
    tau = _uniform(tau_values, what, where)
    if tau <= 0:
        raise UserError(f"node {where}: {what} must be positive, got {tau}")
    a = opts.dt / tau if opts.discretisation == "euler" else 1.0 - math.exp(-opts.dt / tau)
    if not 0.0 < a <= 1.0:
        raise UserError(f"node {where}: dt/{what} = {opts.dt / tau:.3g} is outside (0, 1]",
                        hint="pass the dt the graph was exported with (--dt)")
    return a


def _neuron(node: nir.NIRNode, opts: ExportOptions, where: str) -> tuple[float, float, float, np.ndarray]:
    """(decay, threshold, input gain, per-step leak input) of an IF, LIF or CubaLIF membrane."""
    if node.v_reset is not None and np.any(np.asarray(node.v_reset) != 0):
        raise UserError(f"node {where}: v_reset != 0 is not supported", hint="shift the threshold so v_reset is 0")
    theta = _uniform(node.v_threshold, "v_threshold", where)
    r = np.asarray(node.r, dtype=np.float64)
    if isinstance(node, nir.IF):
        return 1.0, theta, _uniform(r, "r", where), np.zeros_like(r)
    tau = node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau
    a = _step_fraction(tau, opts, "tau_mem" if isinstance(node, nir.CubaLIF) else "tau", where)
    return 1.0 - a, theta, _uniform(a * r, "input gain r*dt/tau", where), a * np.asarray(node.v_leak, np.float64)


def _shape_of(node: nir.NIRNode) -> list[int]:
    return [int(s) for s in np.asarray(node.v_threshold).shape]


def from_nir(graph: nir.NIRGraph, opts: ExportOptions) -> tuple[Spec, dict[str, Tensor]]:
    """A JSON-able spec (manifest `zoo.config`) and the tensors (safetensors) of a NIR graph."""
    opts.check()
    nodes: list[dict[str, Any]] = []
    state: dict[str, Tensor] = {}
    edges = [(str(a), str(b)) for a, b in graph.edges]
    rename: dict[str, str] = {}
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise UserError(f"the NIR graph has {len(inputs)} inputs; snnctl models take one")
    input_shape = [int(s) for s in np.asarray(next(iter(graph.nodes[inputs[0]].input_type.values())))]

    def t(x: Any) -> Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32).copy())

    for name in _topological(graph.nodes, edges):
        node = graph.nodes[name]
        key = name.replace(".", "_")
        rename[name] = key
        entry: dict[str, Any] = {"name": key, "inputs": [rename[a] for a, b in edges if b == name]}
        if isinstance(node, (nir.Input, nir.Output)):
            entry["type"] = "input" if isinstance(node, nir.Input) else "output"
        elif isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight)
            entry.update(type="affine", in_features=int(w.shape[1]), out_features=int(w.shape[0]))
            state[f"body.layers.{key}.weight"] = t(w)
            bias = node.bias if isinstance(node, nir.Affine) else np.zeros(w.shape[0])
            state[f"body.layers.{key}.bias"] = t(np.broadcast_to(bias, (w.shape[0],)))
        elif isinstance(node, nir.Conv2d):
            w = np.asarray(node.weight)
            if isinstance(node.padding, str):
                raise UserError(f"node {name}: string padding {node.padding!r} is not supported")
            entry.update(type="conv2d", in_channels=int(w.shape[1]) * int(node.groups), out_channels=int(w.shape[0]),
                         kernel_size=[int(k) for k in w.shape[2:]], stride=_ints(node.stride),
                         padding=_ints(node.padding), dilation=_ints(node.dilation), groups=int(node.groups))
            state[f"body.layers.{key}.weight"] = t(w)
            state[f"body.layers.{key}.bias"] = t(np.broadcast_to(node.bias, (w.shape[0],)))
        elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            entry.update(type="sumpool2d" if isinstance(node, nir.SumPool2d) else "avgpool2d",
                         kernel_size=_ints(node.kernel_size), stride=_ints(node.stride), padding=_ints(node.padding))
        elif isinstance(node, nir.Flatten):
            end = int(node.end_dim)
            entry.update(type="flatten", start_dim=int(node.start_dim) + 1, end_dim=end if end < 0 else end + 1)
        elif isinstance(node, nir.Scale):
            entry.update(type="scale", shape=list(np.asarray(node.scale).shape))
            state[f"body.layers.{key}.scale"] = t(node.scale)
            state[f"body.layers.{key}.shift"] = t(np.zeros_like(node.scale))
        elif isinstance(node, nir.LI):  # a leaky integrator: snnctl's synaptic-current layer
            if np.any(np.asarray(node.v_leak) != 0):
                raise UserError(f"node {name}: LI with v_leak != 0 is not supported")
            a = _step_fraction(node.tau, opts, "tau", name)
            shape = [int(v) for v in np.asarray(node.tau).shape]
            entry.update(type="synapse", shape=shape)
            state[f"body.layers.{key}.decay"] = torch.tensor(1.0 - a)
            state[f"body.layers.{key}.gain"] = t(np.broadcast_to(a * np.asarray(node.r, np.float64), shape))
        elif isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF)):
            decay, theta, gain, leak = _neuron(node, opts, name)
            shape = _shape_of(node)
            if isinstance(node, nir.CubaLIF):  # the synaptic current is a leaky integrator before the membrane
                a_syn = _step_fraction(node.tau_syn, opts, "tau_syn", name)
                syn = f"{key}__synapse"
                nodes.append({"name": syn, "inputs": entry["inputs"], "type": "synapse", "shape": shape})
                state[f"body.layers.{syn}.decay"] = torch.tensor(1.0 - a_syn)
                state[f"body.layers.{syn}.gain"] = t(np.broadcast_to(a_syn * np.asarray(node.w_in), shape))
                entry["inputs"] = [syn]
            gain = 1.0 if abs(gain - 1.0) < 1e-6 else gain  # float32 round-off in tau and r, not a gain
            if gain != 1.0 or np.any(leak != 0):
                pre = f"{key}__input"
                nodes.append({"name": pre, "inputs": entry["inputs"], "type": "scale", "shape": shape})
                state[f"body.layers.{pre}.scale"] = t(np.full(shape, gain))
                state[f"body.layers.{pre}.shift"] = t(np.broadcast_to(leak, shape))
                entry["inputs"] = [pre]
            entry.update(type="neuron", shape=shape)
            state[f"body.layers.{key}.neuron.threshold"] = torch.tensor(theta)
            state[f"body.layers.{key}.neuron.decay"] = torch.tensor(decay)
        else:
            raise UserError(f"node {name}: NIR {type(node).__name__} is not supported by snnctl yet",
                            hint="supported: Affine, Linear, Conv2d, AvgPool2d, SumPool2d, Flatten, Scale, IF, LIF, "
                                 "CubaLIF, LI")
        nodes.append(entry)
    return {"nodes": nodes, "input_shape": input_shape}, state


def _ints(v: Any) -> list[int]:
    arr = np.atleast_1d(np.asarray(v)).astype(int).tolist()
    return arr * 2 if len(arr) == 1 else arr


def _topological(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> list[str]:
    indegree = {n: 0 for n in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise UserError(f"edge {a} -> {b} names a node the graph does not have")
        indegree[b] += 1
    order, ready = [], [n for n, d in indegree.items() if d == 0]
    while ready:
        n = ready.pop(0)
        order.append(n)
        for a, b in edges:
            if a == n:
                indegree[b] -= 1
                if indegree[b] == 0:
                    ready.append(b)
    if len(order) != len(nodes):
        raise UserError("the NIR graph has a cycle (recurrence); snnctl imports feed-forward graphs only")
    return order


class Scale(nn.Module):
    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(shape))
        self.register_buffer("shift", torch.zeros(shape))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


class SumPool2d(nn.AvgPool2d):
    def forward(self, x: Tensor) -> Tensor:
        kh, kw = self.kernel_size  # type: ignore[misc]
        return super().forward(x) * (kh * kw)


def _layer(entry: dict[str, Any], act: Callable[[], nn.Module]) -> nn.Module | None:
    kind = entry["type"]
    if kind == "affine":
        return nn.Linear(entry["in_features"], entry["out_features"])
    if kind == "conv2d":
        return nn.Conv2d(entry["in_channels"], entry["out_channels"], tuple(entry["kernel_size"]),
                         tuple(entry["stride"]), tuple(entry["padding"]), tuple(entry["dilation"]), entry["groups"])
    if kind in ("avgpool2d", "sumpool2d"):
        cls = SumPool2d if kind == "sumpool2d" else nn.AvgPool2d
        return cls(tuple(entry["kernel_size"]), tuple(entry["stride"]), tuple(entry["padding"]))
    if kind == "flatten":
        return nn.Flatten(entry["start_dim"], entry["end_dim"])
    if kind == "scale":
        return Scale(entry["shape"])
    if kind == "synapse":
        return Synapse(entry["shape"])
    if kind == "neuron":
        neuron = act()
        if not isinstance(neuron, SpikingActivation):
            raise UserError("a NIR graph bundle must be built as an SNN (kind 'snn')")
        return neuron
    if kind in ("input", "output"):
        return None
    raise UserError(f"unknown graph node type '{kind}'")


class GraphNet(nn.Module):
    """Runs a spec's nodes in order, summing each node's inputs; time is folded into the batch."""

    def __init__(self, nodes: list[dict[str, Any]], act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.spec = nodes
        self.layers = nn.ModuleDict()
        for entry in nodes:
            layer = _layer(entry, act)
            if layer is not None:
                self.layers[entry["name"]] = layer

    def forward(self, x: Tensor) -> Tensor:
        values: dict[str, Tensor] = {}
        out = x
        for entry in self.spec:
            if entry["type"] == "input":
                values[entry["name"]] = x
                continue
            inputs = [values[i] for i in entry["inputs"]]
            total = inputs[0] if len(inputs) == 1 else torch.stack(inputs).sum(0)
            if entry["type"] == "output":
                out = total
                continue
            values[entry["name"]] = self.layers[entry["name"]](total)
        return out


def build(act: Callable[[], nn.Module], nodes: list[dict[str, Any]], input_shape: list[int]) -> nn.Module:
    """Zoo builder `nir`: the graph network a NIR import wrote into the bundle's manifest."""
    del input_shape  # recorded for users and checks; the layers carry their own shapes
    return GraphNet(nodes, act)
